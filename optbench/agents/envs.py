"""Gymnasium task construction (MuJoCo v5 tasks, or any Box-action task)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class TaskError(ValueError):
    """An unknown or unsupported task."""


def task_kwargs(task: str) -> dict:
    """Per-task keyword arguments: Ant without contact forces in the observation (seed 000)."""
    if task.split("-")[0] == "Ant":
        return {"include_cfrc_ext_in_observation": False}
    return {}


def make_env(task: str) -> gym.Env:
    """``gym.make(task)`` with the suite's options; a one-line :class:`TaskError` otherwise."""
    try:
        env = gym.make(task, **task_kwargs(task))
    except Exception as exc:  # gymnasium raises several error types for bad ids / missing deps
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TaskError(f"unknown or unavailable task {task!r}: {msg}") from None
    if not isinstance(env.action_space, gym.spaces.Box) or not isinstance(env.observation_space, gym.spaces.Box):
        env.close()
        raise TaskError(f"task {task!r} needs Box observation and action spaces")
    if len(env.observation_space.shape) != 1 or len(env.action_space.shape) != 1:
        env.close()
        raise TaskError(f"task {task!r} needs flat observation and action vectors")
    if not (np.all(np.isfinite(env.action_space.low)) and np.all(np.isfinite(env.action_space.high))):
        env.close()
        raise TaskError(f"task {task!r} has an unbounded action space")
    return env


def env_dims(env: gym.Env) -> tuple[int, int]:
    return int(env.observation_space.shape[0]), int(env.action_space.shape[0])


class ActionScaler:
    """Maps policy actions in ``[-1, 1]^A`` to the task's box."""

    def __init__(self, env: gym.Env):
        self.low = env.action_space.low.astype(np.float64)
        self.high = env.action_space.high.astype(np.float64)

    def __call__(self, action: np.ndarray) -> np.ndarray:
        a = np.clip(action, -1.0, 1.0)
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)
