"""Checkpoints and resume: a killed run continues where it stopped (step counter, replay, RNG),
and a resumed run is identical to an uninterrupted one."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from optbench.agents.checkpoint import load_checkpoint
from optbench.agents.sac import SACConfig
from optbench.agents.trainer import Trainer

TASK = "InvertedPendulum-v5"
SMALL = dict(random_steps=200, batch_size=32, hidden=(32, 32), model_pretrain_updates=10, eval_every=10**9,
             log_every=100)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    cfg = lambda: SACConfig(task=TASK, steps=700, checkpoint_every=250, **SMALL)  # noqa: E731
    full = Trainer(cfg(), tmp_path / "full", progress=False)
    full.train()
    part = Trainer(cfg(), tmp_path / "part", progress=False)
    part.train(stop_after=520)  # abandoned like a killed run: last checkpoint at the first episode end >= 500
    _, meta = load_checkpoint(tmp_path / "part", with_tensors=False)
    assert 500 <= meta["step"] < 520 and meta["episode_boundary"]
    resumed = Trainer(cfg(), tmp_path / "part", progress=False)
    assert resumed.step == meta["step"] and len(resumed.replay) == meta["step"]
    resumed.train()
    assert resumed.step == full.step == 700 and resumed.episodes == full.episodes
    for a, b in zip(full.agent.q.parameters(), resumed.agent.q.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(full.agent.actor.parameters(), resumed.agent.actor.parameters()):
        assert torch.equal(a, b)
    assert np.array_equal(full.replay.obs[:700], resumed.replay.obs[:700])
    # the training log holds no duplicate or orphan rows from the abandoned segment
    steps = [int(r["step"]) for r in resumed.log.episodes.read()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == full.episodes


@pytest.mark.slow
def test_sigkill_and_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "optbench.cli", "train", "--task", TASK, "--steps", "100000",
           "--seed", "3", "--random-steps", "200", "--batch-size", "32", "--hidden", "32,32",
           "--model-pretrain-updates", "10", "--checkpoint-every", "300", "--eval-every", "100000",
           "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = out / "checkpoint.safetensors"
    deadline = time.time() + 120
    try:
        while not ckpt.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint written in time"
            time.sleep(0.2)
        time.sleep(0.5)  # let it train past the checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    tensors, meta = load_checkpoint(ckpt)
    step = meta["step"]
    assert step >= 300 and meta["replay"]["size"] == step
    assert not any(p.name.endswith(".tmp") for p in out.iterdir()) or ckpt.exists()

    cfg = SACConfig(task=TASK, steps=100000, seed=3, checkpoint_every=300, eval_every=100000, **{
        k: v for k, v in SMALL.items() if k not in ("eval_every",)})
    trainer = Trainer(cfg, out, progress=False)
    assert trainer.resumed_from == step
    assert trainer.step == step and len(trainer.replay) == step and trainer.replay.total == step
    assert torch.equal(torch.get_rng_state(), tensors["rng/torch"])  # torch RNG continues
    assert trainer.rng.bit_generator.state == meta["rng_numpy"]  # numpy RNG continues
    assert trainer.agent.updates == meta["agent"]["updates"]
    trainer.train(stop_after=50)
    assert trainer.step == step + 50 and len(trainer.replay) == step + 50
