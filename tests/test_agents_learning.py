"""Learning in CI time: direct and iterative SAC agents on InvertedPendulum-v5 clearly beat a
uniform-random policy within a few thousand steps (small networks, fixed seeds)."""

import numpy as np
import pytest
import torch

from optbench.agents.evaluate import run_episodes
from optbench.agents.sac import SACConfig
from optbench.agents.trainer import Trainer

TASK = "InvertedPendulum-v5"


@pytest.fixture(scope="module")
def random_return():
    rng = np.random.default_rng(0)
    res = run_episodes(lambda o: rng.uniform(-1, 1, 1), TASK, 20, seed=100)
    return res.mean


def _train(tmp_path, policy, steps, **kw):
    torch.set_num_threads(1)
    cfg = SACConfig(task=TASK, policy=policy, steps=steps, seed=0, random_steps=500, batch_size=64,
                    hidden=(64, 64), model_pretrain_updates=20, eval_every=10**9, checkpoint_every=10**9,
                    log_every=500, **kw)
    trainer = Trainer(cfg, tmp_path / policy, progress=False)
    trainer.train()
    return trainer


def test_random_policy_is_poor(random_return):
    assert random_return < 15


@pytest.mark.slow
def test_direct_agent_learns(tmp_path, random_return):
    trainer = _train(tmp_path, "direct", 2500)
    ev = trainer.eval_history[-1]
    assert ev["step"] == 2500
    print(f"{trainer.cfg.policy}: eval {ev['mean']:.1f} vs random {random_return:.1f}")
    assert ev["mean"] > 5 * random_return, (ev, random_return)


@pytest.mark.slow
def test_iterative_agent_learns(tmp_path, random_return):
    trainer = _train(tmp_path, "iterative", 2000, iterations=3)
    ev = trainer.eval_history[-1]
    print(f"{trainer.cfg.policy}: eval {ev['mean']:.1f} vs random {random_return:.1f}")
    assert ev["mean"] > 5 * random_return, (ev, random_return)
    assert trainer.agent.distilled is not None  # models on: the distilled rollout network is trained
