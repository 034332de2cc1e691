"""Fixed-target (COCO-style) and anytime statistics of stored traces.

Conventions (per objective):

* ``J_ref`` per state is the known optimum scored on the common draws when the objective
  has one, else the best scored ``J`` any optimizer of the run reached at any budget
  (:func:`optbench.metrics.summary.reference_values`). ``J_start`` is the scored ``J`` of the
  common start ``μ = 0, σ = 1``.
* A target is a fraction ``f`` of the way from ``J_start`` to ``J_ref``: it is reached when
  the normalized score ``(J − J_start)/(J_ref − J_start) ≥ f``. Where ``J_ref = J_start``
  (nothing improved on the start) a target is reached when ``J ≥ J_ref``.
* A run is one (seed, state) pair. Its **runtime** to a target is the iteration at which the
  target is first reached (``inf`` if never within the budget): between the last scored
  iteration below the target and the first at or above it, placed by linear interpolation of
  ``J`` in log(iteration) and rounded up (:func:`optbench.metrics.summary.first_crossing`;
  with ``interpolate=False``, the first scored iteration, an upper bound on a log schedule).
  It is measured in iterations, in wall-clock seconds of the lockstep run (all states of the
  objective together, as the optimizer really ran, warm-up excluded: the cumulative seconds up
  to that iteration), in Q-evaluations per state (the run's ledger divided by the number of
  states) and in network FLOPs per state (when the cells recorded them); a start the optimizer
  computed itself (a warm start) counts its cost.
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
from optbench.metrics.summary import CellGroup, iterations_to_target, normalized

ECDF_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TABLE_TARGETS = (0.5, 0.9, 0.99)
UNITS = ("iterations", "seconds", "q_evals", "flops")  # "flops" only where the cells recorded them


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


def runtimes(group: CellGroup, start: np.ndarray, ref: np.ndarray,
             targets: Iterable[float] = ECDF_TARGETS, interpolate: bool = True) -> Runtimes:
    """Runtime of every (state, seed) run of ``group`` to each target, in every recorded unit."""
    targets = np.asarray(list(targets), dtype=np.float64)
    R, T, B = group.scores.shape
    units = [u for u in UNITS if group.has_unit(u)]
    its = np.stack([iterations_to_target(group, start, ref, f, interpolate) for f in targets], axis=-1)  # [R,B,K]
    out = {u: np.moveaxis(group.run_costs(u, its), 0, 1) for u in units}  # [B,R,K]
    last = np.full((R,), float(group.budget))
    budget = {u: np.broadcast_to(group.run_costs(u, last), (B, R)).copy() for u in units}
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
           "average_runtime", "ecdf", "ecdf_steps", "final_norm_interval", "runtimes",
           "success_interval"]
