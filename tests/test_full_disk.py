"""A full disk, for real (issue 22 item 1): a small tmpfs is mounted for each test and filled
until the command meets "No space left on device" in the middle of a run (its cells), a tune,
a training checkpoint, an export and an import. Each must stop with a one-line error and a
non-zero exit, leave every earlier cell, checkpoint and package whole and loadable (and no
temporary file), and, once space is back (the filler removed), the same command resumes and
completes, with the results of a run that never met a full disk.

Mounting needs root (CI and the development machine run as root); elsewhere the tests skip
and say why. tmpfs allocates whole pages, so sizes below are counted in 4 KiB pages."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from optbench.agents.checkpoint import load_checkpoint, previous_path
from optbench.agents.package import load_package
from optbench.cli import main
from optbench.fileio import is_temporary

TASK = "InvertedPendulum-v5"
PAGE = os.sysconf("SC_PAGE_SIZE")


class SmallDisk:
    """A tmpfs mounted at ``path`` for one test, and a filler file that takes its free space."""

    def __init__(self, path: Path, size_kib: int):
        self.path = path
        path.mkdir(parents=True)
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], check=True,
                           capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            pytest.skip(f"cannot mount a tmpfs for the full-disk tests (needs root and mount(8)): {detail.strip()}")
        self.filler = path / "filler"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Take all free space but ``leave`` bytes (rounded down to whole pages)."""
        self.unfill()
        size = self.free() - leave // PAGE * PAGE
        assert size > 0, (self.free(), leave)
        with open(self.filler, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, size)

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    def umount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    disks: list[SmallDisk] = []

    def make(size_kib: int = 16384) -> SmallDisk:
        disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size_kib))
        return disks[-1]

    yield make
    for d in disks:
        d.umount()


def full_disk_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc != 0, err
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert "No space left on device" in err and "re-run the same command" in err, err
    return err


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temporary(p.name) or p.name.endswith((".partial", ".old"))]


def pages(path: Path) -> int:
    """Bytes ``path`` (a file or a directory tree) takes on a tmpfs."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(-(-p.stat().st_size // PAGE) * PAGE for p in files)


# ------------------------------------------------------------------------------ run and tune
OBJ = ('[[objectives]]\nname = "{name}"\nsource = "analytic"\nprofile = "quadratic"\nstate_dim = 3\naction_dim = 2\n'
       'alpha = {alpha}\n')
SUITE = ('name = "tiny"\noptimizers = ["adam", "cem"]\n[settings]\nstates = 2\niterations = 3\nseeds = [0, 1, 2]\n'
         'score_samples = 16\n' + OBJ.format(name="q1", alpha=0.1) + OBJ.format(name="q2", alpha=0.2))
PACKAGE = Path(__file__).resolve().parents[1] / "suites/mujoco-states/packages/hopper-direct"
TUNE = (f'name = "tiny-tune"\noptimizers = ["adam"]\n[settings]\nstates = 4\nseeds = [0, 1]\nscore_samples = 16\n'
        f'[[objectives]]\nname = "hopper"\nsource = "package"\npackage = "{PACKAGE}"\n'
        '[tuning]\niterations = 3\ngrids = [{ label = "adam (tuned)", spec = "adam(samples=4)", '
        'lr = [0.001, 0.01, 0.1] }, { label = "cem (tuned)", spec = "cem(population=8,elites=2)", '
        'smoothing = [0.0, 0.5] }]\n')


def _suite(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "suite.toml").write_text(text)
    return directory


def _scores(run: Path) -> dict[str, list]:
    return {p.name: json.loads(p.read_text())["scores"] for p in sorted((run / "cells").glob("*.json"))}


@pytest.mark.parametrize("command", ["run", "tune"])
def test_a_full_disk_stops_a_run_keeps_its_cells_and_resumes(tmp_path, capsys, small_disk, command):
    suite = _suite(tmp_path / "suite", SUITE if command == "run" else TUNE)
    plots = ["--no-plots"] if command == "run" else []
    args = lambda out: [command, "--suite", str(suite), "--out", str(out), *plots]  # noqa: E731
    assert main(args(tmp_path / "ref")) == 0
    reference = _scores(tmp_path / "ref")
    disk = small_disk()
    # room for the lock, run.json, the objectives and about half of the cells (a page each)
    disk.fill(leave=(4 + len(reference) // 2) * PAGE)
    out = disk.path / "run"
    capsys.readouterr()
    err = full_disk_error(capsys, main(args(out)))
    stored = _scores(out)
    assert 0 < len(stored) < len(reference), (err, len(stored))
    assert all(stored[name] == reference[name] for name in stored)  # every stored cell whole and right
    assert not temporaries(out) and not (out / ".lock").exists()
    disk.unfill()
    assert main(args(out)) == 0
    assert _scores(out) == reference
    if command == "tune":
        assert json.loads((suite / "tuning.json").read_text())["grids"]


# ------------------------------------------------------------------------------ training
TRAIN = ["--random-steps", "1000000", "--batch-size", "16", "--hidden", "64,64", "--checkpoint-every", "100",
         "--eval-every", "1000000000", "--quiet"]


@pytest.mark.slow
def test_a_full_disk_stops_training_at_a_checkpoint_keeps_the_last_ones_and_resumes(tmp_path, capsys, small_disk):
    train = lambda out: main(["train", "--task", TASK, "--steps", "500", "--out", str(out), *TRAIN])  # noqa: E731
    assert train(tmp_path / "ref") == 0
    size = (tmp_path / "ref" / "checkpoint.safetensors").stat().st_size
    disk = small_disk()
    # a checkpoint is written beside the latest and the previous one: the third does not fit
    disk.fill(leave=int(2.6 * size) + 16 * PAGE)
    out = disk.path / "run"
    capsys.readouterr()
    err = full_disk_error(capsys, train(out))
    assert "checkpoint.safetensors" in err, err
    latest, prev = load_checkpoint(out)[1], load_checkpoint(previous_path(out / "checkpoint.safetensors"))[1]
    assert 0 < prev["step"] < latest["step"] < 500
    assert not temporaries(out) and not (out / ".lock").exists()
    disk.unfill()
    assert train(out) == 0
    ref, done = load_checkpoint(tmp_path / "ref"), load_checkpoint(out)
    assert done[1]["step"] == 500 and sorted(ref[0]) == sorted(done[0])
    assert all(torch.equal(ref[0][k], done[0][k]) for k in ref[0])  # as if the disk had never been full


# ------------------------------------------------------------------------------ export and import
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("agent") / "run"
    assert main(["train", "--task", TASK, "--steps", "300", "--out", str(out), *TRAIN]) == 0
    return out


def _package_on_a_full_disk(capsys, disk, write) -> None:
    """``write(out)`` a first package, fill the disk so that a second one does not fit, and
    check the failure, the first package, and the second write once space is back."""
    assert write(disk.path / "first") == 0
    disk.fill(leave=pages(disk.path / "first") // 2)
    capsys.readouterr()
    full_disk_error(capsys, write(disk.path / "second"))
    assert not (disk.path / "second").exists() and not temporaries(disk.path)
    load_package(disk.path / "first")  # every checksum verified
    disk.unfill()
    assert write(disk.path / "second") == 0
    load_package(disk.path / "second")


@pytest.mark.slow
def test_a_full_disk_stops_an_export_and_keeps_the_earlier_package(checkpoint, capsys, small_disk):
    _package_on_a_full_disk(capsys, small_disk(), lambda out: main(
        ["export", str(checkpoint), "--out", str(out), "--states", "64", "--heldout", "16", "--episodes", "2"]))


@pytest.mark.slow
def test_a_full_disk_stops_an_import_and_keeps_the_earlier_package(tmp_path, capsys, small_disk):
    import gymnasium as gym
    from torch import nn

    space = gym.make(TASK).action_space
    s, a, h = 4, 1, 32
    torch.manual_seed(0)
    actor = {"fc1": nn.Linear(s, h), "fc2": nn.Linear(h, h), "fc_mean": nn.Linear(h, a), "fc_logstd": nn.Linear(h, a)}
    actor_sd = {f"{m}.{k}": v for m, layer in actor.items() for k, v in layer.state_dict().items()}
    actor_sd["action_scale"] = torch.tensor((space.high - space.low) / 2.0, dtype=torch.float32)
    actor_sd["action_bias"] = torch.tensor((space.high + space.low) / 2.0, dtype=torch.float32)
    q = lambda: {f"{m}.{k}": v for m, layer in {"fc1": nn.Linear(s + a, h), "fc2": nn.Linear(h, h),  # noqa: E731
                                              "fc3": nn.Linear(h, 1)}.items() for k, v in layer.state_dict().items()}
    model = tmp_path / "sac.cleanrl_model"
    torch.save((actor_sd, q(), q()), model)
    _package_on_a_full_disk(capsys, small_disk(), lambda out: main(
        ["import", "cleanrl", str(model), "--task", TASK, "--alpha", "0.2", "--out", str(out), "--states", "64",
         "--heldout", "16", "--episodes", "2"]))


def test_the_small_disk_is_really_full(small_disk):
    """The fixture itself: a write past the filler fails with ENOSPC (not a quota of ours)."""
    disk = small_disk(256)
    disk.fill(leave=0)
    with pytest.raises(OSError) as exc:
        (disk.path / "x").write_bytes(b"x" * PAGE)
    assert exc.value.errno == 28
    disk.unfill()
    (disk.path / "x").write_bytes(b"x" * PAGE)
    (disk.path / "x").unlink()
