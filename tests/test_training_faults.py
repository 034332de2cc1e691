"""Training under faults (issue 22 items 2 and 4): a NaN/inf loss stops the trainer with the last
good checkpoint intact; a corrupt latest checkpoint falls back to the previous one, never to a
fresh start; ``optbench train-grid`` killed with SIGKILL again and again (at random moments,
while a checkpoint is being written, while it evaluates) ends with the checkpoints, snapshots
and logs of an uninterrupted run.

Everything is real: tiny agents trained on InvertedPendulum-v5, the real command line in
subprocesses, real signals. Nothing of the trainer is mocked; a loss is made NaN by a huge
learning rate, or by an infinite weight written into the agent of a resumed trainer."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optbench.agents.checkpoint import corrupt_path, load_checkpoint, previous_path
from optbench.agents.sac import SACConfig
from optbench.agents.trainer import Trainer, TrainingDiverged
from optbench.agents.training_log import EPISODE_FIELDS, EVAL_FIELDS, LOG_FIELDS, CsvFile
from optbench.backends import onednn
from optbench.cli import main
from optbench.fileio import is_temporary

ROOT = Path(__file__).resolve().parents[1]
TASK = "InvertedPendulum-v5"
SMALL = dict(random_steps=200, batch_size=32, hidden=(32, 32), model_pretrain_updates=10, eval_every=10**9,
             log_every=100)
NONDETERMINISTIC_META = ("wall_time", "meta_digest")  # the clock, and the digest that covers it


def one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Two checkpoint (or snapshot) files hold the same tensors, bit for bit, and the same
    metadata but for the wall clock."""
    ta, ma = load_checkpoint(a)
    tb, mb = load_checkpoint(b)
    assert sorted(ta) == sorted(tb), (a, b)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), (a, b, k)
    strip = lambda m: {k: v for k, v in m.items() if k not in NONDETERMINISTIC_META}  # noqa: E731
    assert strip(ma) == strip(mb), (a, b)


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temporary(p.name)]


# ------------------------------------------------------------------------------ NaN losses
@pytest.mark.slow
def test_a_nan_loss_stops_training_with_the_last_checkpoint_intact(tmp_path):
    out = tmp_path / "run"
    cfg = lambda: SACConfig(task=TASK, steps=600, checkpoint_every=150, **SMALL)  # noqa: E731
    Trainer(cfg(), out, progress=False).train(stop_after=420)  # a killed run: checkpoints at ~150 and ~300
    before = (out / "checkpoint.safetensors").read_bytes(), previous_path(out / "checkpoint.safetensors").read_bytes()
    _, meta = load_checkpoint(out)
    resumed = Trainer(cfg(), out, progress=False)
    with torch.no_grad():  # a critic weight that overflowed: every Q, and so the critic's loss, is inf/NaN
        next(resumed.agent.q.parameters()).view(-1)[0] = math.inf
    with pytest.raises(TrainingDiverged) as exc:
        resumed.train()
    message = str(exc.value)
    step, update = meta["step"] + 1, meta["agent"]["updates"] + 1
    assert f"q_loss is nan at update {update} (environment step {step})" in message, message
    assert f"the last checkpoint ({out / 'checkpoint.safetensors'}, step {meta['step']}) is kept" in message
    assert "\n" not in message
    after = (out / "checkpoint.safetensors").read_bytes(), previous_path(out / "checkpoint.safetensors").read_bytes()
    assert after == before  # nothing was written after the NaN
    assert not (out / ".lock").exists() and not temporaries(out)
    assert load_checkpoint(out)[1]["step"] == meta["step"]


@pytest.mark.slow
def test_a_huge_learning_rate_stops_the_command_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--task", TASK, "--steps", "600", "--random-steps", "200", "--batch-size", "32", "--hidden",
               "32,32", "--no-models", "--checkpoint-every", "100", "--eval-every", "1000000", "--lr", "1e12",
               "--out", str(out), "--quiet"])
    err = one_line_error(capsys, rc)
    assert "training diverged:" in err and " at update " in err and "environment step" in err, err
    ckpt = load_checkpoint(out)[1]
    assert 100 <= ckpt["step"] < 200 + 1 and f"step {ckpt['step']}) is kept" in err  # updates start at step 200
    # re-running the same command resumes from that checkpoint and diverges again at the same update
    again = one_line_error(capsys, main(["train", "--task", TASK, "--steps", "600", "--random-steps", "200",
                                         "--batch-size", "32", "--hidden", "32,32", "--no-models", "--checkpoint-every",
                                         "100", "--eval-every", "1000000", "--lr", "1e12", "--out", str(out),
                                         "--quiet"]))
    assert again == err


# ------------------------------------------------------------------------------ corrupt checkpoints
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    Trainer(SACConfig(task=TASK, steps=600, checkpoint_every=150, **SMALL), out, progress=False).train()
    return out


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensor data (the replay buffer)
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("corrupt", [_truncate, _flip_a_bit], ids=["truncated", "bit-flipped"])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted, corrupt, monkeypatch):
    out = tmp_path / "run"
    cfg = lambda: SACConfig(task=TASK, steps=600, checkpoint_every=150, **SMALL)  # noqa: E731
    Trainer(cfg(), out, progress=False).train(stop_after=470)  # killed: latest at ~450, previous at ~300
    latest, prev = out / "checkpoint.safetensors", previous_path(out / "checkpoint.safetensors")
    prev_step = load_checkpoint(prev)[1]["step"]
    assert prev_step < load_checkpoint(latest)[1]["step"]
    corrupt(latest)
    if onednn.kernel_available():  # the resumed segment's start-up choice differs from the earlier segments'
        monkeypatch.setattr(onednn, "ENABLED", not onednn.ENABLED)
    lines: list[str] = []
    resumed = Trainer(cfg(), out, progress=False, echo=lines.append)
    warning = next(line for line in lines if line.startswith("warning:"))
    assert "corrupt" in warning or "not a readable" in warning, warning
    assert f"falling back to the previous checkpoint {prev.name} (step {prev_step})" in warning
    assert resumed.step == prev_step != 0 and corrupt_path(latest).exists()
    if onednn.kernel_available():
        assert any("oneDNN products" in line for line in lines), lines
    resumed.train()
    assert_same_checkpoint(latest, uninterrupted / "checkpoint.safetensors")
    assert CsvFile(out / "episodes.csv", EPISODE_FIELDS).read() == CsvFile(uninterrupted / "episodes.csv",
                                                                             EPISODE_FIELDS).read()


@pytest.mark.slow
def test_two_corrupt_checkpoints_are_an_error_never_a_fresh_start(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--task", TASK, "--steps", "400", "--random-steps", "1000000", "--batch-size", "16", "--hidden",
            "16,16", "--no-models", "--checkpoint-every", "100", "--eval-every", "1000000000", "--out", str(out),
            "--quiet"]
    main(args[:4] + ["300"] + args[5:])  # random steps only: checkpoints at ~100, ~200, 300
    latest, prev = out / "checkpoint.safetensors", previous_path(out / "checkpoint.safetensors")
    _truncate(latest)
    _flip_a_bit(prev)
    capsys.readouterr()
    err = one_line_error(capsys, main(args))
    assert "checkpoint.safetensors" in err and "so is the previous checkpoint" in err, err
    assert latest.exists() and prev.exists() and not (out / ".lock").exists()
    assert [r["step"] for r in CsvFile(out / "episodes.csv", EPISODE_FIELDS).read()]  # the logs are kept too


# ------------------------------------------------------------------------------ train-grid under SIGKILL
GRID_STEPS = 600
GRID_ARGS = ["train-grid", "--tasks", TASK, "--seeds", "0,1", "--steps", str(GRID_STEPS), "--random-steps", "200",
             "--batch-size", "32", "--hidden", "32,32", "--model-pretrain-updates", "10", "--checkpoint-every", "150",
             "--eval-every", "200", "--eval-episodes", "3", "--log-every", "100", "--executor", "inprocess"]
AGENTS = [f"{TASK}-direct-s{seed}" for seed in (0, 1)]


def _grid_env() -> dict[str, str]:
    # the same products in every process (the start-up probe times them, and would choose by the load)
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPTBENCH_BACKENDS": "all"}


def _start_grid(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "optbench.cli", *GRID_ARGS, "--out", str(out)], env=_grid_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _checkpoint_temporaries(out: Path) -> list[Path]:
    found = []
    for agent in AGENTS:
        try:
            found += [Path(e.path) for e in os.scandir(out / agent) if is_temporary(e.name) and "checkpoint" in e.name]
        except FileNotFoundError:
            pass
    return found


def _kill_while_writing_a_checkpoint(proc: subprocess.Popen, out: Path, deadline: float) -> bool:
    """SIGKILL the moment a checkpoint's temporary file appears; whether one was left behind
    (the kill landed inside the write)."""
    while time.time() < deadline and proc.poll() is None:
        if _checkpoint_temporaries(out):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    _kill_group(proc)
    return bool(_checkpoint_temporaries(out))


def _kill_while_evaluating(proc: subprocess.Popen, out: Path, deadline: float) -> bool:
    """SIGKILL when the progress output says an evaluation began (at a step ``N``); whether the
    kill landed inside it: an agent logged the interval before ``N`` but holds no evaluation at
    ``N`` (its result is recorded when the evaluation ends, before the log row at ``N``)."""
    for line in proc.stdout:
        if "| evaluating" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            _kill_group(proc)
            step = int(line.split()[1].split("/")[0])
            for agent in AGENTS:
                logged = {int(float(r["step"])) for r in CsvFile(out / agent / "log.csv", LOG_FIELDS).read()}
                evaluated = {int(float(r["step"])) for r in CsvFile(out / agent / "evals.csv", EVAL_FIELDS).read()}
                if step - 100 in logged and step not in evaluated:
                    return True
            return False
        if time.time() > deadline:
            break
    _kill_group(proc)
    return False


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_grid_killed_again_and_again_ends_as_an_uninterrupted_run(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    done = subprocess.run([sys.executable, "-m", "optbench.cli", *GRID_ARGS, "--out", str(ref), "--quiet"],
                          env=_grid_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rng = random.Random(22)
    hits = {"checkpoint write": 0, "evaluation": 0, "random": 0}
    log: list[tuple[str, bool, int]] = []
    for mode in ["checkpoint write", "evaluation", "random"] * 4:  # each kill loses at most one interval
        proc = _start_grid(out)
        deadline = time.time() + 300
        if mode == "checkpoint write":
            hit = _kill_while_writing_a_checkpoint(proc, out, deadline)
        elif mode == "evaluation":
            hit = _kill_while_evaluating(proc, out, deadline)
        else:
            try:
                proc.wait(timeout=rng.uniform(1.0, 6.0))  # in start-up, training, writing, evaluating
            except subprocess.TimeoutExpired:
                pass
            hit = proc.poll() is None
            _kill_group(proc)
        log.append((mode, bool(hit), proc.returncode))
        if proc.returncode == 0:
            break  # finished before the kill
        hits[mode] += hit
    assert hits["checkpoint write"] >= 1 and hits["evaluation"] >= 1 and hits["random"] >= 1, log
    proc = _start_grid(out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    for agent in AGENTS:
        a, b = out / agent, ref / agent
        assert_same_checkpoint(a / "checkpoint.safetensors", b / "checkpoint.safetensors")
        assert load_checkpoint(a, with_tensors=False)[1]["step"] == GRID_STEPS
        snaps = sorted(p.name for p in (a / "snapshots").iterdir())
        assert snaps == sorted(p.name for p in (b / "snapshots").iterdir()) and snaps  # none lost, none extra
        for name in snaps:
            assert_same_checkpoint(a / "snapshots" / name, b / "snapshots" / name)
        for name, fields in (("episodes.csv", EPISODE_FIELDS), ("evals.csv", EVAL_FIELDS)):
            assert CsvFile(a / name, fields).read() == CsvFile(b / name, fields).read(), (agent, name)
        steps = [r["step"] for r in CsvFile(a / "log.csv", LOG_FIELDS).read()]  # loss means differ after a resume
        assert steps == [r["step"] for r in CsvFile(b / "log.csv", LOG_FIELDS).read()] and steps
        assert not temporaries(a) and not (a / ".lock").exists()
    assert (out / "grid.json").exists() and not (out / ".lock").exists()
