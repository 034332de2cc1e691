"""Prediction errors of a package's learned dynamics and reward models on held-out transitions.

The package's direct policy (deterministic, ``a = tanh μ(s)``) is rolled out in the real
gymnasium environment from fresh reset seeds (default :data:`HELDOUT_SEED`, far from the
seeds of training, evaluation and state export), so the transitions are not training data.
For each horizon ``h`` the dynamics model is rolled out **open loop** for ``h`` steps from
every real state ``s_t`` that has ``h`` real successors in its episode, fed the real actions
``a_t..a_{t+h−1}``, and its prediction ``ŝ_{t+h}`` is compared with the real ``s_{t+h}``
(rollouts never cross an episode end). Reported per horizon:

* ``state_rmse``: RMSE of ``ŝ_{t+h} − s_{t+h}`` over all starts and state dimensions;
* ``state_nrmse``: the same with every dimension divided by its standard deviation over the
  observed states (``sqrt(mean_d MSE_d / var_d)``), comparable across tasks; 1 is the error
  of predicting every dimension's mean;
* ``state_nrmse_worst``: the worst dimension's normalized RMSE;
* ``persistence_nrmse``: ``state_nrmse`` of the trivial prediction ``ŝ_{t+h} = s_t`` (a model
  worth using is well below it);
* ``reward_rmse``, ``reward_rel`` (``‖r̂ − r‖ / ‖r‖``) and ``reward_nrmse`` (RMSE / std of
  ``r``) of the reward model's ``r̂(ŝ_{t+h−1}, a_{t+h−1})`` along the same open-loop rollout
  against the real ``r_{t+h−1}`` (``h = 1``: the one-step reward error on real states).

Model inputs are the policy-space actions in ``[−1, 1]^|A|`` (what the trainer stores), in float32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from optbench.agents.envs import ActionScaler, make_env
from optbench.agents.package import PackageError, load_package

HELDOUT_SEED = 777_000_001
STD_FLOOR = 1e-6  # dimensions whose observed std is below this are divided by it instead


@dataclass
class HorizonError:
    horizon: int
    starts: int
    state_rmse: float
    state_nrmse: float
    state_nrmse_worst: float
    persistence_nrmse: float
    reward_rmse: float
    reward_rel: float
    reward_nrmse: float


@dataclass
class ModelErrorReport:
    package: str
    task: str
    agent: str
    episodes: int
    transitions: int
    seed: int
    max_steps: int | None
    mean_return: float
    horizons: list[HorizonError] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Episode:
    states: np.ndarray  # [T + 1, S] (the last is the state after the final transition)
    actions: np.ndarray  # [T, A] in [-1, 1]
    rewards: np.ndarray  # [T]


def _rollout(package, episodes: int, seed: int, max_steps: int | None) -> list[_Episode]:
    env = make_env(package.task)
    scale = ActionScaler(env)
    policy = package.direct
    out = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            states, actions, rewards = [np.asarray(obs, np.float32)], [], []
            done = False
            while not done and (max_steps is None or len(actions) < max_steps):
                with torch.no_grad():
                    mu = policy.mu_log_std(torch.as_tensor(states[-1]).unsqueeze(0))[0]
                a = torch.tanh(mu)[0].numpy().astype(np.float64)
                obs, r, term, trunc, _ = env.step(scale(a))
                actions.append(np.clip(a, -1.0, 1.0).astype(np.float32))
                rewards.append(float(r))
                states.append(np.asarray(obs, np.float32))
                done = term or trunc
            out.append(_Episode(np.stack(states), np.stack(actions), np.asarray(rewards, np.float64)))
    finally:
        env.close()
    return out


@torch.no_grad()
def model_errors(package, episodes: int = 5, horizons: Sequence[int] = (1, 2, 5), seed: int = HELDOUT_SEED,
                 max_steps: int | None = None) -> ModelErrorReport:
    """Dynamics and reward model errors of ``package`` (an :class:`~optbench.agents.package.AgentPackage`
    or its path) on ``episodes`` fresh episodes of its direct policy (see the module docstring).

    ``max_steps`` cuts every episode after that many steps (quick checks). Raises
    :class:`~optbench.agents.package.PackageError` if the package has no models or no direct
    network, ``ValueError`` on bad arguments or when no episode is long enough for a horizon.
    """
    if not hasattr(package, "dynamics"):
        package = load_package(package)
    if package.dynamics is None or package.reward is None:
        raise PackageError(f"package {package.path} has no dynamics/reward models (trained with --no-models)")
    if package.direct is None:
        raise PackageError(f"package {package.path} has no direct policy network to roll out")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"horizons must be integers >= 1, got {list(horizons)}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")

    eps_data = _rollout(package, episodes, seed, max_steps)
    dyn, rew = package.dynamics, package.reward
    all_states = np.concatenate([e.states for e in eps_data])
    std = np.maximum(all_states.std(0), STD_FLOOR)  # per-dimension std of the observed states
    report = ModelErrorReport(str(package.path), package.task, package.name, episodes,
                              sum(len(e.rewards) for e in eps_data), seed, max_steps,
                              float(np.mean([e.rewards.sum() for e in eps_data])))
    for h in horizons:
        pred_s, true_s, start_s, pred_r, true_r = [], [], [], [], []
        for e in eps_data:
            T = len(e.actions)
            n = T - h + 1  # starts t = 0..T−h have real s_{t+h} in this episode
            if n < 1:
                continue
            s = torch.as_tensor(e.states[:n])  # [n, S], all starts rolled out together
            for j in range(h):
                a = torch.as_tensor(e.actions[j:j + n])
                r_hat = rew(s, a)
                s = dyn(s, a)
            pred_s.append(s.double().numpy())
            true_s.append(e.states[h:h + n].astype(np.float64))
            start_s.append(e.states[:n].astype(np.float64))
            pred_r.append(r_hat.double().numpy())
            true_r.append(e.rewards[h - 1:h - 1 + n])
        if not pred_s:
            raise ValueError(f"no episode has {h} steps (longest: {max(len(e.actions) for e in eps_data)}); "
                             f"use shorter horizons or more steps")
        ps, ts, s0 = np.concatenate(pred_s), np.concatenate(true_s), np.concatenate(start_s)
        pr, tr = np.concatenate(pred_r), np.concatenate(true_r)
        mse_d = ((ps - ts) ** 2).mean(0)
        nmse_d = mse_d / std ** 2
        r_err = pr - tr
        r_rms = math.sqrt(float((tr ** 2).mean()))
        r_std = float(tr.std())
        report.horizons.append(HorizonError(
            horizon=h, starts=len(ps), state_rmse=math.sqrt(float(mse_d.mean())),
            state_nrmse=math.sqrt(float(nmse_d.mean())), state_nrmse_worst=math.sqrt(float(nmse_d.max())),
            persistence_nrmse=math.sqrt(float((((s0 - ts) ** 2).mean(0) / std ** 2).mean())),
            reward_rmse=math.sqrt(float((r_err ** 2).mean())),
            reward_rel=math.sqrt(float((r_err ** 2).mean())) / r_rms if r_rms > 0 else float("inf"),
            reward_nrmse=math.sqrt(float((r_err ** 2).mean())) / r_std if r_std > 0 else float("inf")))
    return report


__all__ = ["HELDOUT_SEED", "HorizonError", "ModelErrorReport", "model_errors"]
