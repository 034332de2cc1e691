"""Checkpoints, packages and training directories (issue 23): metadata covered by checksums
(format 2) while version-1 files still load, one trainer per directory, resume messages and
the checkpoint interval of short runs, file-system errors while checkpointing."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import torch

from optbench.agents.checkpoint import VERSION, CheckpointError, load_checkpoint
from optbench.agents.package import SEALED_VERSION, PackageError, load_package, seal_document
from optbench.agents.sac import SACConfig
from optbench.agents.trainer import Trainer, checkpoint_interval
from optbench.cli import main
from optbench.locks import LockError

ROOT = Path(__file__).resolve().parents[1]
V1_CHECKPOINTS = sorted((ROOT / "tests" / "data" / "sac_compat").glob("*.safetensors"))
PACKAGES = ROOT / "suites" / "mujoco-states" / "packages"
TASK = "InvertedPendulum-v5"
FORK = multiprocessing.get_context("fork")
# Random actions only (no updates): training steps cost only the environment.
RANDOM_ONLY = dict(random_steps=10**6, batch_size=16, hidden=(16, 16), eval_every=10**9, eval_episodes=1, log_every=100,
                   models=False)
TRAIN_CLI = ["--random-steps", "1000000", "--batch-size", "16", "--hidden", "16,16", "--eval-every", "1000000000",
             "--eval-episodes", "1", "--no-models", "--quiet"]


def one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ checksummed metadata
def test_version_1_checkpoints_still_load_and_resume_as_version_2(tmp_path):
    assert V1_CHECKPOINTS and VERSION == 2
    for path in V1_CHECKPOINTS:
        tensors, meta = load_checkpoint(path)
        assert meta["format_version"] == 1 and "meta_digest" not in meta and tensors
    out = tmp_path / "run"
    out.mkdir()
    direct = next(p for p in V1_CHECKPOINTS if p.name.endswith("-direct.safetensors"))
    shutil.copy(direct, out / "checkpoint.safetensors")
    _, old = load_checkpoint(out, with_tensors=False)
    lines: list[str] = []
    trainer = Trainer(SACConfig(task=TASK, steps=old["step"] + 20, **{**RANDOM_ONLY, "random_steps": 200}), out,
                      progress=False, echo=lines.append)
    assert trainer.resumed_from == old["step"]
    trainer.train()
    assert any(f"resuming {TASK}/direct from step {old['step']}" in line for line in lines), lines
    _, meta = load_checkpoint(out)
    assert meta["format_version"] == 2 and meta["step"] == old["step"] + 20 and meta["meta_digest"]


def test_edited_checkpoint_metadata_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", TASK, "--steps", "60", "--out", str(out), *TRAIN_CLI]) == 0
    ckpt = out / "checkpoint.safetensors"
    data = ckpt.read_bytes()
    assert data.count(b"InvertedPendulum-v5") >= 1  # the task and the configuration's task, in the header
    ckpt.write_bytes(data.replace(b"InvertedPendulum-v5", b"InvertedPendulum-v4"))
    with pytest.raises(CheckpointError, match="metadata checksum mismatch"):
        load_checkpoint(ckpt, with_tensors=False)
    capsys.readouterr()
    err = one_line_error(capsys, main(["evaluate", str(out), "--episodes", "1"]))
    assert "metadata checksum mismatch" in err
    err = one_line_error(capsys, main(["train", "--task", TASK, "--steps", "80", "--out", str(out), *TRAIN_CLI]))
    assert "metadata checksum mismatch" in err


def _package_copy(tmp_path: Path, name: str = "hopper-direct") -> Path:
    dst = tmp_path / name
    shutil.copytree(PACKAGES / name, dst)
    return dst


def _edit(pkg: Path, change) -> None:
    doc = json.loads((pkg / "package.json").read_text())
    change(doc)
    (pkg / "package.json").write_text(json.dumps(doc))


def test_version_1_packages_load_and_an_edited_version_2_package_is_refused(tmp_path):
    for pkg in sorted(PACKAGES.iterdir()) + sorted((ROOT / "suites" / "transfer" / "packages").iterdir()):
        assert load_package(pkg).meta["format_version"] == 1
    pkg = _package_copy(tmp_path)
    doc = json.loads((pkg / "package.json").read_text())
    (pkg / "package.json").write_text(json.dumps(seal_document(doc)))
    loaded = load_package(pkg)
    assert loaded.meta["format_version"] == SEALED_VERSION and loaded.alpha == doc["alpha"]
    _edit(pkg, lambda d: d.update(alpha=d["alpha"] * 2))
    with pytest.raises(PackageError, match="was modified"):
        load_package(pkg)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(files=sorted(d["files"])), "field 'files' must be a JSON object"),
    (lambda d: d["architectures"]["q"].pop("hidden"), "missing field 'architectures.q.hidden'"),
    (lambda d: d["architectures"]["direct"].pop("hidden"), "missing field 'architectures.direct.hidden'"),
    (lambda d: d.update(state_dim=3.5), "field 'state_dim' must be a positive integer, got 3.5"),
    (lambda d: d.update(action_dim=0), "field 'action_dim' must be a positive integer, got 0"),
    (lambda d: d.update(alpha=float("nan")), "field 'alpha' must be a finite number >= 0"),
    (lambda d: d["files"].update({"../q.safetensors": d["files"]["q.safetensors"]}), "not a file of the package"),
])
def test_malformed_package_fields_are_blamed_on_the_package(tmp_path, capsys, change, message):
    pkg = _package_copy(tmp_path)
    _edit(pkg, change)
    with pytest.raises(PackageError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_package(pkg)
    suite = tmp_path / "suite"  # through a suite: the package's file and field, before anything is written
    suite.mkdir()
    (suite / "suite.toml").write_text(f'name = "p"\noptimizers = ["adam"]\n[[objectives]]\nname = "hopper"\n'
                                      f'source = "package"\npackage = "{pkg}"\n')
    err = one_line_error(capsys, main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--no-plots"]))
    assert str(pkg / "package.json") in err and message in err and "is missing field" not in err, err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ one trainer per directory
def _train_race(barrier, argv: list[str], log: str) -> None:
    sys.stdout = open(log + ".out", "w")
    sys.stderr = open(log, "w")
    torch.set_num_threads(1)
    barrier.wait()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc or 0))


@pytest.mark.slow
def test_racing_trainers_on_one_directory(tmp_path):
    """The same `optbench train` started twice together on one --out, several times: the
    second is refused in one line naming the holder (or, if the first was done, resumes
    with nothing to do); the logs never hold a row twice."""
    refused = 0
    for trial in range(6):
        out = tmp_path / f"run{trial}"
        argv = ["train", "--task", TASK, "--steps", "400", "--out", str(out), *TRAIN_CLI]
        barrier = FORK.Barrier(2)
        logs = [str(tmp_path / f"log{trial}-{i}") for i in range(2)]
        procs = [FORK.Process(target=_train_race, args=(barrier, argv, log), daemon=True) for log in logs]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        codes = sorted(p.exitcode for p in procs)
        assert codes in ([0, 0], [0, 2]), codes
        for log in logs:
            err = Path(log).read_text().strip()
            if err:
                assert err.startswith("error:") and "\n" not in err and "is being written by pid" in err, err
                refused += 1
        steps = [row.split(",")[0] for row in (out / "episodes.csv").read_text().splitlines()[1:]]
        assert steps and len(steps) == len(set(steps)), "duplicated episode rows"
        assert not (out / ".lock").exists()
    assert refused >= 1, "the trainers never overlapped; the race was not exercised"


def _hold_trainer(out: str, ready) -> None:
    trainer = Trainer(SACConfig(task=TASK, steps=50, **RANDOM_ONLY), out, progress=False, echo=lambda *a: None)
    ready.set()
    signal.pause()
    trainer.close()


def test_trainer_refuses_a_held_directory_and_takes_over_a_killed_ones_lock(tmp_path):
    out = tmp_path / "run"
    ready = FORK.Event()
    holder = FORK.Process(target=_hold_trainer, args=(str(out), ready), daemon=True)
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockError, match=f"is being written by pid {holder.pid} on host"):
            Trainer(SACConfig(task=TASK, steps=50, **RANDOM_ONLY), out, progress=False)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    lines: list[str] = []
    trainer = Trainer(SACConfig(task=TASK, steps=50, **RANDOM_ONLY), out, progress=False, echo=lines.append)
    assert any(f"left by pid {holder.pid}" in line and "ended without releasing it" in line for line in lines), lines
    trainer.train()
    assert not (out / ".lock").exists()


# ------------------------------------------------------------------------------ resume messages, interval
def test_training_says_whether_it_resumes(tmp_path):
    lines: list[str] = []
    cfg = lambda: SACConfig(task=TASK, steps=3000, **RANDOM_ONLY)  # noqa: E731  checkpoints every 1000 steps
    first = Trainer(cfg(), tmp_path, progress=False, echo=lines.append)
    first.train(stop_after=600)  # killed before the first checkpoint
    assert not (tmp_path / "checkpoint.safetensors").exists()
    assert lines == [f"starting {TASK}/direct from step 0 ({tmp_path}; checkpoint every 1000 steps)"]
    lines.clear()
    second = Trainer(cfg(), tmp_path, progress=False, echo=lines.append)
    second.train(stop_after=1300)
    assert len(lines) == 1 and "nothing to resume from" in lines[0] and "starting" in lines[0], lines
    _, meta = load_checkpoint(tmp_path, with_tensors=False)
    assert 1000 <= meta["step"] < 1300
    lines.clear()
    third = Trainer(cfg(), tmp_path, progress=False, echo=lines.append)
    third.close()
    third = Trainer(cfg(), tmp_path, progress=False, echo=lines.append)
    third.train(stop_after=10)
    assert lines[-1].startswith(f"resuming {TASK}/direct from step {meta['step']} of 3000"), lines


def test_checkpoint_interval_scales_down_for_short_runs():
    assert checkpoint_interval(SACConfig(steps=1_000_000)) == 10_000
    assert checkpoint_interval(SACConfig(steps=100_000)) == 5_000
    assert checkpoint_interval(SACConfig(steps=20_000)) == 1_000
    assert checkpoint_interval(SACConfig(steps=3_000)) == 1_000
    assert checkpoint_interval(SACConfig(steps=20_000, checkpoint_every=300)) == 300


@pytest.mark.slow
def test_checkpoint_interval_changes_nothing_the_run_computes(tmp_path):
    small = dict(random_steps=100, batch_size=16, hidden=(16, 16), eval_every=10**9, eval_episodes=1, log_every=50,
                 models=False)
    nets = []
    for every in (40, 10**6):
        t = Trainer(SACConfig(task=TASK, steps=260, checkpoint_every=every, **small), tmp_path / str(every),
                    progress=False, echo=lambda *a: None)
        t.train()
        nets.append([p.detach().clone() for p in t.agent.q.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*nets))


def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error_and_keeps_the_last_one(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", TASK, "--steps", "60", "--out", str(out), *TRAIN_CLI]) == 0
    (out / "checkpoint.prev.safetensors").mkdir()  # the rotation cannot keep the previous checkpoint
    (out / "checkpoint.prev.safetensors" / "x").write_text("x")
    capsys.readouterr()
    err = one_line_error(capsys, main(["train", "--task", TASK, "--steps", "90", "--out", str(out), *TRAIN_CLI]))
    assert "checkpoint.prev.safetensors" in err
    _, meta = load_checkpoint(out)
    assert meta["step"] == 60 and not (out / ".lock").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left
    shutil.rmtree(out / "checkpoint.prev.safetensors")
    assert main(["train", "--task", TASK, "--steps", "90", "--out", str(out), *TRAIN_CLI]) == 0
    assert load_checkpoint(out, with_tensors=False)[1]["step"] == 90
