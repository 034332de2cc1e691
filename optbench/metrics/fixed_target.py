"""Fixed-target (COCO-style) and anytime statistics of stored traces.

Conventions (per objective):

* ``J_ref`` per state is the known optimum scored on the common draws when the objective
  has one, else the best scored ``J`` any optimizer of the run reached at any budget
  (:func:`optbench.metrics.summary.reference_values`). ``J_start`` is the scored ``J`` of the
  common start ``μ = 0, σ = 1``.
* A target is a fraction ``f`` of the way from ``J_start`` to ``J_ref``: it is reached when
  the normalized score ``(J − J_start)/(J_ref − J_start) ≥ f``. Where ``J_ref = J_start``
  (nothing improved on the start) a target is reached when ``J ≥ J_ref``.
* A run is one (seed, state) pair. Its **runtime** to a target is the first *scored*
  iteration at which the target is reached (``inf`` if never within the budget), measured
  in iterations, in wall-clock seconds of the lockstep run (all states of the objective
  together, as the optimizer really ran: ``cumsum(seconds)`` up to that iteration), and in
  Q-evaluations per state (the run's ledger divided by the number of states). Runs scored
  on a log schedule resolve runtimes only to the scored iterations: a target first met
  between two scored iterations is attributed to the later one (an upper bound).
* **aRT** (average runtime, COCO): the summed runtime of all runs, unsuccessful runs
  counting their whole budget, divided by the number of successful runs (``inf`` if none).
* **ECDF**: for a runtime budget ``x``, the share of (seed, state, target) triples whose
  target was reached within ``x``.

Every summary comes with a percentile bootstrap interval over states
(:mod:`optbench.metrics.bootstrap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from optbench.metrics.bootstrap import Interval, bootstrap
from optbench.metrics.summary import CellGroup, normalized

ECDF_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TABLE_TARGETS = (0.5, 0.9, 0.99)
UNITS = ("iterations", "seconds", "q_evals")


@dataclass
class Runtimes:
    """Runtimes of one optimizer on one objective to each of ``targets``.

    Arrays are ``[B, R, K]`` (states, seeds, targets), ``inf`` where a run never reached the
    target; ``budget`` holds each run's whole cost ``[B, R]`` per unit.
    """

    optimizer: str
    targets: np.ndarray
    runtime: dict[str, np.ndarray]
    budget: dict[str, np.ndarray]
    final_norm: np.ndarray  # [B, R] normalized J at the final iteration

    @property
    def states(self) -> int:
        return self.final_norm.shape[0]

    def reached(self) -> np.ndarray:
        """``[B, R, K]`` bool: reached within the budget."""
        return np.isfinite(self.runtime["iterations"])


def reached_mask(scores: np.ndarray, start: np.ndarray, ref: np.ndarray, target: float) -> np.ndarray:
    """Where the scores (last axis: states) reach ``target`` (see module docstring)."""
    norm = normalized(scores, start, ref)
    degenerate = np.abs(ref - start) < 1e-12
    with np.errstate(invalid="ignore"):
        return np.where(degenerate, scores >= ref, norm >= target)


def runtimes(group: CellGroup, start: np.ndarray, ref: np.ndarray,
             targets: Iterable[float] = ECDF_TARGETS) -> Runtimes:
    """Runtime of every (state, seed) run of ``group`` to each target, in every unit."""
    targets = np.asarray(list(targets), dtype=np.float64)
    R, T, B = group.scores.shape
    cum_s = np.concatenate([np.zeros((R, 1)), np.cumsum(group.seconds, axis=1)], axis=1)  # [R, budget+1]
    cum_q = np.concatenate([np.zeros((R, 1)), np.cumsum(group.q_evals, axis=1)], axis=1) / B
    its = group.iterations.astype(int)
    out = {u: np.full((B, R, len(targets)), np.inf) for u in UNITS}
    for k, f in enumerate(targets):
        hit = reached_mask(group.scores, start, ref, f)  # [R,T,B]
        ever = hit.any(1)  # [R,B]
        first = hit.argmax(1)  # [R,B] scored index
        t = its[first]  # [R,B] iteration
        rows = np.arange(R)[:, None]
        out["iterations"][:, :, k] = np.where(ever, t, np.inf).T
        out["seconds"][:, :, k] = np.where(ever, cum_s[rows, t], np.inf).T
        out["q_evals"][:, :, k] = np.where(ever, cum_q[rows, t], np.inf).T
    budget = {"iterations": np.full((B, R), float(group.budget)),
              "seconds": np.broadcast_to(cum_s[:, -1], (B, R)).copy(),
              "q_evals": np.broadcast_to(cum_q[:, -1], (B, R)).copy()}
    final = normalized(group.scores[:, -1], start, ref).T  # [B,R]
    return Runtimes(group.optimizer, targets, out, budget, final)


def average_runtime(runtime: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """COCO aRT over all but the first (resample) axis: ``runtime``/``budget`` are
    ``[n_boot, ...]``; unsuccessful runs count their budget. ``inf`` without a success."""
    ok = np.isfinite(runtime)
    n_boot = runtime.shape[0]
    total = np.where(ok, runtime, budget).reshape(n_boot, -1).sum(1)
    succ = ok.reshape(n_boot, -1).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(succ > 0, total / np.maximum(succ, 1), np.inf)


def art_interval(rt: Runtimes, target_index: int, unit: str = "iterations", **kw) -> Interval:
    """aRT to one target with a bootstrap interval over states."""
    x = np.stack([rt.runtime[unit][:, :, target_index], rt.budget[unit]], axis=-1)  # [B,R,2]
    return bootstrap(x, lambda s: average_runtime(s[..., 0], s[..., 1]), **kw)


def success_interval(rt: Runtimes, target_index: int, **kw) -> Interval:
    """Share of runs that reached one target, with a bootstrap interval over states."""
    return bootstrap(rt.reached()[:, :, target_index].astype(float), "mean", **kw)


def final_norm_interval(rt: Runtimes, **kw) -> Interval:
    """Mean normalized final J over states and seeds, with a bootstrap interval over states."""
    return bootstrap(rt.final_norm, "mean", **kw)


def anytime_interval(group: CellGroup, start: np.ndarray, ref: np.ndarray, t: int, **kw) -> Interval | None:
    """Mean normalized J at iteration ``t`` (last scored iteration ≤ t), interval over states;
    None beyond the budget."""
    at = group.at(t)
    if at is None:
        return None
    return bootstrap(normalized(at, start, ref).T, "mean", **kw)


def ecdf(runtime: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Share of entries of ``runtime`` (any shape; ``inf`` = never) that are ``≤ x`` for each ``x`` of ``grid``."""
    r = np.sort(np.asarray(runtime, dtype=np.float64).ravel())
    if len(r) == 0:
        return np.zeros(len(grid))
    return np.searchsorted(r, np.asarray(grid, dtype=np.float64), side="right") / len(r)


def ecdf_steps(runtime: np.ndarray, upto: float) -> tuple[np.ndarray, np.ndarray]:
    """Step-function points ``(x, share)`` of the ECDF of ``runtime``, for ``x ≤ upto``.

    ``x`` are the distinct finite runtimes (plus ``upto`` to extend the last step)."""
    r = np.asarray(runtime, dtype=np.float64).ravel()
    xs = np.unique(r[np.isfinite(r) & (r <= upto)])
    xs = np.append(xs, upto) if len(xs) == 0 or xs[-1] < upto else xs
    return xs, ecdf(r, xs)


__all__ = ["ECDF_TARGETS", "TABLE_TARGETS", "UNITS", "Runtimes", "anytime_interval", "art_interval",
           "average_runtime", "ecdf", "ecdf_steps", "final_norm_interval", "reached_mask", "runtimes",
           "success_interval"]
