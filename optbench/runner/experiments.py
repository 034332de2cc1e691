"""The experiments behind the analyses: computations that run an optimizer or evaluate a Q-function.

``optbench analyze`` (:mod:`optbench.runner.analysis`) calls them and stores what they return;
the metrics they produce are plain data (:mod:`optbench.metrics.gap`, :mod:`~optbench.metrics.modes`,
:mod:`~optbench.metrics.exploitation`), and the report only reads those stored numbers.

* :func:`amortization_gap`: Adam from every stored final estimate (seed 000 Fig. 6, App. A.3);
* :func:`run_replicas`: ``R`` independent runs per state on a replicated objective (mode coverage,
  seed 000 Fig. 2, Fig. 18);
* :func:`exploitation_stats` and :func:`rollout_check`: ensemble disagreement and saturation on
  the scoring draws, and the Monte Carlo value check in the restored MuJoCo simulator;
* :func:`record_trajectory` and :func:`landscape_grid`: every iterate of a re-run, and the scored
  ``J`` over a grid of two action means (seed 000 Fig. 1, 2, 14), with the choice of state,
  dimensions and ranges (:func:`choose_state`, :func:`choose_dims`, :func:`grid_limits`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from optbench.agents.envs import ActionScaler, make_env
from optbench.metrics.exploitation import SATURATION, ExploitationStats, RolloutCheck, RolloutUnavailable
from optbench.metrics.gap import GAP_LR, GAP_SAMPLES, GAP_STEPS, GapResult
from optbench.objectives.distributions import LOG2, sample_tanh_gaussian, split_params
from optbench.objectives.policy_objective import PolicyObjective
from optbench.objectives.q_functions import pessimistic_value
from optbench.optimizers.base import Iterate, OptimizerError, PolicyOptimizer, make_optimizer
from optbench.runner.drive import run_optimizer

MAX_ABS_MU = 6.0


# -------------------------------------------------------------------------------- amortization gap
def amortization_gap(objective: PolicyObjective, params: Tensor | np.ndarray, *, lr: float = GAP_LR,
                     steps: int = GAP_STEPS, samples: int = GAP_SAMPLES, seed: int = 0,
                     optimizer: str = "") -> GapResult:
    """Gap of final estimates ``params`` ``[B, 2|A|]`` or ``[R, B, 2|A|]`` (one per seed) on ``objective``.

    All ``R·B`` refinements run in one batched Adam run (each row its own Adam state and noise).
    """
    p = torch.as_tensor(np.asarray(params), dtype=objective.states.dtype)
    if p.dim() == 2:
        p = p.unsqueeze(0)
    if p.dim() != 3 or p.shape[1:] != (objective.batch_size, objective.param_dim):
        raise ValueError(f"params must be [R, {objective.batch_size}, {objective.param_dim}], got {list(p.shape)}")
    R, B, _ = p.shape
    rep = replicate_objective(objective, R) if R > 1 else objective
    adam = make_optimizer(f"adam(lr={lr},samples={samples})")
    trace = run_optimizer(adam, rep, steps, seed=seed, start=p.reshape(R * B, -1).to(objective.device),
                          score_at=[steps])
    before = trace.scores[0].view(R, B).double().numpy()
    after = trace.scores[-1].view(R, B).double().numpy()
    return GapResult(optimizer, before, after, lr, steps, samples)



# ----------------------------------------------------------------------------------- mode coverage
def replicate_objective(objective: PolicyObjective, runs: int) -> PolicyObjective:
    """The objective with every state repeated ``runs`` times (row ``r·B + b``), each replica
    scored on its state's draws; its cost ledger is its own."""
    alpha = objective.alpha.repeat(runs) if objective.alpha.dim() else objective.alpha
    return PolicyObjective(objective.q, objective.states.repeat(runs, 1), alpha, beta=objective.beta,
                           name=objective.name, score_noise=objective.score_noise.repeat(runs, 1, 1))


def random_starts(objective: PolicyObjective, runs: int, seed: int = 0, spread: float = 0.9,
                  std: float = 1.0) -> Tensor:
    """``[R, B, 2|A|]`` starts with mean actions ``tanh μ ~ U(−spread, spread)`` and ``σ = std``."""
    g = torch.Generator().manual_seed(seed)
    B, A = objective.batch_size, objective.action_dim
    a = (2 * torch.rand(runs, B, A, generator=g, dtype=torch.float64) - 1) * spread
    log_std = torch.full((runs, B, A), math.log(std), dtype=torch.float64)
    return torch.cat([torch.atanh(a), log_std], -1).to(objective.states.dtype)


def run_replicas(optimizer: PolicyOptimizer, objective: PolicyObjective, iterations: int, runs: int, *,
                 seed: int = 0, starts: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``runs`` independent runs of ``optimizer`` at every state (see module docstring).

    ``starts`` ``[R, B, 2|A|]`` (default: the common start ``μ = 0, σ = 1``). Returns the final
    estimates ``[R, B, 2|A|]`` and their scored ``J`` ``[R, B]``. A non-stochastic optimizer
    with common starts, or an amortized one without (``direct``), runs once.
    """
    B = objective.batch_size
    ignores_start = optimizer.amortized and not optimizer.stochastic
    if not optimizer.stochastic and (starts is None or ignores_start):
        trace = run_optimizer(optimizer, objective, iterations, seed=seed, score_at=[iterations])
        return (trace.final_params.unsqueeze(0).expand(runs, -1, -1).clone(),
                trace.scores[-1].unsqueeze(0).expand(runs, -1).clone())
    rep = replicate_objective(objective, runs)
    start = None if starts is None else starts.reshape(runs * B, -1)
    trace = run_optimizer(optimizer, rep, iterations, seed=seed, start=start, score_at=[iterations])
    return trace.final_params.view(runs, B, -1), trace.scores[-1].view(runs, B)



# ----------------------------------------------------------------------------- exploitation checks
@torch.no_grad()
def exploitation_stats(objective: PolicyObjective, params: Tensor | np.ndarray, samples: int | None = None,
                       chunk_states: int = 64) -> ExploitationStats:
    """Disagreement and saturation of the policies ``params [B, 2|A|]`` on the scoring draws
    (the first ``samples`` of them, default all)."""
    lam = torch.as_tensor(np.asarray(params), dtype=objective.states.dtype, device=objective.device)
    B = objective.batch_size
    mu, log_std = split_params(lam)
    dis, qh, sat = [], [], []
    for lo in range(0, B, chunk_states):
        hi = min(B, lo + chunk_states)
        eps = objective.score_noise[lo:hi]
        eps = eps if samples is None else eps[:, :samples]
        actions, _ = sample_tanh_gaussian(mu[lo:hi].unsqueeze(1), log_std[lo:hi].unsqueeze(1), eps)  # [b,n,A]
        q = objective.q(objective.states[lo:hi], actions)  # [E,b,n]
        E = q.shape[0]
        if E > 1:
            pair = (q.unsqueeze(0) - q.unsqueeze(1)).abs()  # [E,E,b,n]
            d = pair.sum((0, 1)) / (E * (E - 1))
        else:
            d = torch.zeros_like(q[0])
        dis.append(d.mean(-1))
        qh.append(pessimistic_value(q, objective.beta).mean(-1))
        sat.append((actions.abs() > SATURATION).double().mean((-1, -2)))
    mean_sat = (torch.tanh(mu).abs() > SATURATION).double().mean(-1)
    f = lambda xs: torch.cat(xs).double().cpu().numpy()  # noqa: E731
    return ExploitationStats(f(dis), f(qh), f(sat), mean_sat.cpu().numpy())


def _soft_value(package, obs: Tensor, alpha: float, beta: float, samples: int, gen: torch.Generator) -> float:
    lam = package.direct(obs.unsqueeze(0))
    mu, log_std = split_params(lam)
    eps = torch.randn(1, samples, mu.shape[-1], generator=gen)
    a, logp = sample_tanh_gaussian(mu.unsqueeze(1), log_std.unsqueeze(1), eps)
    q = pessimistic_value(package.q(obs.unsqueeze(0), a), beta)
    return float((q - alpha * (logp + mu.shape[-1] * LOG2)).mean())


@torch.no_grad()
def rollout_check(package, split: str, params: Tensor | np.ndarray, state_index: list[int] | np.ndarray, *,
                  beta: float = 1.0, rollouts: int = 4, horizon: int = 200, seed: int = 0,
                  value_samples: int = 64) -> RolloutCheck:
    """Monte Carlo value check (module docstring) at ``state_index`` of ``split``.

    ``params [B, 2|A|]`` are the final policies of the objective's states, in the package's
    state order. Needs gymnasium/MuJoCo, the package's direct network and stored
    ``{split}_qpos``/``{split}_qvel``; raises :class:`RolloutUnavailable` otherwise.
    """
    qpos_key, qvel_key = f"{split}_qpos", f"{split}_qvel"
    if qpos_key not in package.state_info or qvel_key not in package.state_info:
        raise RolloutUnavailable(f"package {package.path} stores no MuJoCo state for split {split!r}")
    if package.direct is None:
        raise RolloutUnavailable(f"package {package.path} has no direct network to roll out")
    params = torch.as_tensor(np.asarray(params), dtype=torch.float32)
    states = package.states[split]
    alpha, gamma, A = package.alpha, float(package.meta.get("gamma", 0.99)), package.action_dim
    env = make_env(package.task)
    base = env.unwrapped
    if not hasattr(base, "set_state"):
        env.close()
        raise RolloutUnavailable(f"task {package.task} cannot restore a simulator state")
    scale = ActionScaler(env)
    gen = torch.Generator().manual_seed(seed)
    idx = np.asarray(state_index, dtype=int)
    q_hat, rets, errs = [], [], []
    try:
        for k, i in enumerate(idx):
            s0 = states[i]
            mu0, _ = split_params(params[i])
            a0 = torch.tanh(mu0)
            q_hat.append(float(pessimistic_value(package.q(s0.unsqueeze(0), a0.view(1, 1, -1)), beta)))
            row, err = [], 0.0
            for m in range(rollouts):
                env.reset(seed=seed + 1000 * k + m)
                base.set_state(package.state_info[qpos_key][i].numpy(), package.state_info[qvel_key][i].numpy())
                obs = np.asarray(base._get_obs(), dtype=np.float64)
                err = max(err, float(np.abs(obs - s0.double().numpy()).max()))
                obs, r, term, trunc, _ = env.step(scale(a0.numpy()))
                G, disc = float(r), gamma
                t = 1
                while not term and t < horizon:
                    o = torch.as_tensor(obs, dtype=torch.float32)
                    mu, log_std = split_params(package.direct(o.unsqueeze(0)))
                    a, logp = sample_tanh_gaussian(mu, log_std, torch.randn(mu.shape, generator=gen))
                    obs, r, term, trunc, _ = env.step(scale(a[0].numpy()))
                    G += disc * (float(r) - alpha * (float(logp[0]) + A * LOG2))
                    disc *= gamma
                    t += 1
                if not term:
                    o = torch.as_tensor(obs, dtype=torch.float32)
                    G += disc * _soft_value(package, o, alpha, beta, value_samples, gen)
                row.append(G)
            rets.append(row)
            errs.append(err)
    finally:
        env.close()
    return RolloutCheck(idx, np.asarray(q_hat), np.asarray(rets), np.asarray(errs), horizon, gamma)



# -------------------------------------------------------------------------------------- landscapes
def record_trajectory(optimizer: PolicyOptimizer, objective: PolicyObjective, iterations: int, *, seed: int = 0,
                      start: Tensor | None = None) -> Tensor:
    """Every iterate ``λ`` of a run, ``[iterations + 1, B, 2|A|]`` (row 0: the start).

    Drives ``optimizer.iterate`` exactly as :func:`optbench.runner.drive.run_optimizer`
    does (same generator seeding and start), without timing or scoring, so on the same
    objective and seed it retraces the stored run.
    """
    generator = torch.Generator(device=objective.device).manual_seed(seed)
    start = objective.initial_params() if start is None else start.to(objective.device)
    path = [start.detach().cpu().clone()]
    steps = optimizer.iterate(objective, start.clone(), iterations, generator)
    with torch.inference_mode(False):
        for t in range(iterations):
            try:
                out = next(steps)
            except StopIteration:
                raise OptimizerError(f"{optimizer.label()} stopped after {t} of {iterations} iterations") from None
            params = (out.params if isinstance(out, Iterate) else out).detach()
            path.append(params.cpu().clone())
    steps.close()
    return torch.stack(path)


def choose_state(finals: np.ndarray) -> int:
    """The state where optimizers' final mean actions disagree most: ``finals [L, B, 2|A|]``."""
    L, B, P = finals.shape
    if L < 2:
        return 0
    a = np.tanh(finals[..., : P // 2])  # [L,B,A]
    d = np.linalg.norm(a[:, None] - a[None, :], axis=-1).sum((0, 1))  # [B]
    return int(np.argmax(d))


def choose_dims(finals: np.ndarray) -> tuple[int, int]:
    """The two action dimensions whose final mean actions vary most across ``finals [L, 2|A|]``
    (ties: the lowest indices)."""
    P = finals.shape[-1]
    A = P // 2
    if A < 2:
        raise ValueError("a landscape needs at least two action dimensions")
    spread = np.tanh(finals[:, :A]).std(0) if len(finals) > 1 else np.zeros(A)
    order = np.argsort(-spread, kind="stable")
    i, j = sorted(int(k) for k in order[:2])
    return i, j


def grid_limits(points: list[np.ndarray], dims: tuple[int, int], *, margin: float = 0.5, half_width: float = 1.5,
                max_abs: float = MAX_ABS_MU) -> tuple[tuple[float, float], tuple[float, float]]:
    """Ranges of the two means that show every point of ``points`` (arrays ``[..., 2|A|]``:
    estimates and trajectories) with a margin, at least ``±half_width`` around 0, and at
    most ``±max_abs`` (beyond, ``tanh μ`` is 1 to float precision)."""
    out = []
    for d in dims:
        vals = np.concatenate([np.asarray(p, dtype=np.float64)[..., d].ravel() for p in points]) if points else np.zeros(1)
        vals = vals[np.isfinite(vals)]
        lo = min(-half_width, float(vals.min()) - margin) if len(vals) else -half_width
        hi = max(half_width, float(vals.max()) + margin) if len(vals) else half_width
        out.append((max(lo, -max_abs), min(hi, max_abs)))
    return out[0], out[1]


@torch.no_grad()
def landscape_grid(objective: PolicyObjective, state: int, base: Tensor | np.ndarray, dims: tuple[int, int], *,
                   xlim: tuple[float, float] = (-3.0, 3.0), ylim: tuple[float, float] = (-3.0, 3.0),
                   resolution: int = 41, chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scored ``J`` at one state over a ``resolution²`` grid of the means ``μ[i] ∈ xlim``,
    ``μ[j] ∈ ylim`` (``dims = (i, j)``), every other coordinate of ``λ`` at ``base``.

    Returns ``(xs [resolution], ys [resolution], J [resolution (y), resolution (x)])``.
    """
    A = objective.action_dim
    i, j = dims
    if not (0 <= i < A and 0 <= j < A and i != j):
        raise ValueError(f"landscape dims must be two different action dimensions in 0..{A - 1}, got {dims}")
    sub = objective.subset([state])
    base = torch.as_tensor(np.asarray(base), dtype=objective.states.dtype, device=objective.device).reshape(-1)
    xs, ys = np.linspace(*xlim, resolution), np.linspace(*ylim, resolution)
    gi, gj = np.meshgrid(xs, ys)  # [res_y, res_x]
    lam = base.expand(resolution * resolution, -1).clone()
    lam[:, i] = torch.as_tensor(gi.ravel(), dtype=lam.dtype, device=lam.device)
    lam[:, j] = torch.as_tensor(gj.ravel(), dtype=lam.dtype, device=lam.device)
    values = [sub.score(lam[lo:lo + chunk].unsqueeze(0))[0] for lo in range(0, len(lam), chunk)]
    return xs, ys, torch.cat(values).cpu().double().numpy().reshape(resolution, resolution)


__all__ = ["MAX_ABS_MU", "amortization_gap", "choose_dims", "choose_state", "exploitation_stats", "grid_limits",
           "landscape_grid", "random_starts", "record_trajectory", "replicate_objective", "rollout_check", "run_replicas"]
