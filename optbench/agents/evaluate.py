"""Deterministic evaluation episodes (actions ``tanh μ``), optionally recording the visited
states with their MuJoCo ``qpos``/``qvel`` (for objective packages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from optbench.agents.envs import ActionScaler, make_env


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]
    states: list[np.ndarray] = field(default_factory=list)
    qpos: list[np.ndarray] = field(default_factory=list)
    qvel: list[np.ndarray] = field(default_factory=list)
    episode_index: list[int] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.returns)) if self.returns else float("nan")


def run_episodes(policy: Callable[[np.ndarray], np.ndarray], task: str, episodes: int, seed: int,
                 record_states: bool = False, env=None) -> EvalResult:
    """Run ``episodes`` episodes of ``policy(obs) -> action in [-1, 1]^A``; episode ``i`` is reset with ``seed + i``."""
    own = env is None
    env = make_env(task) if own else env
    scale = ActionScaler(env)
    res = EvalResult([], [])
    base = env.unwrapped
    has_state = hasattr(base, "data") and hasattr(base.data, "qpos")
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            done, ret, length = False, 0.0, 0
            while not done:
                if record_states:
                    res.states.append(np.asarray(obs, np.float32).copy())
                    res.episode_index.append(i)
                    if has_state:
                        res.qpos.append(base.data.qpos.copy())
                        res.qvel.append(base.data.qvel.copy())
                obs, r, term, trunc, _ = env.step(scale(policy(obs)))
                ret += float(r)
                length += 1
                done = term or trunc
            res.returns.append(ret)
            res.lengths.append(length)
    finally:
        if own:
            env.close()
    return res
