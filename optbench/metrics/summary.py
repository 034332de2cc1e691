"""Summaries of stored traces: normalized scores, iterations to a target, costs.

All statistics are per (objective, optimizer), pooled over states and seeds. The reference
``J_ref`` of a state is its known optimum (scored on the same draws as every optimizer) when
the objective has one, otherwise the best scored ``J`` any optimizer reached at any budget
in the run. ``J_start`` is the scored ``J`` of the common start ``μ = 0, σ = 1``.

Cost axes (:data:`COST_UNITS`): iterations; Q-evaluations, gradient evaluations and network
FLOPs per state (the run's ledger divided by its states; FLOPs from the networks' shapes,
:mod:`optbench.objectives.cost`); wall-clock seconds of the lockstep run (all states
together). Costs are known at every iteration (scores only at the scored ones), so the cost
to reach a ``J`` is the cost at the iteration where the ``J`` curve first reaches it
(:func:`first_crossing`). Wall clock is taken after an untimed warm-up iteration
(:data:`optbench.runner.drive.TIMING`); cells stored before that (no ``timing`` field) paid a
process's one-time warm-up in their first iteration, which is then charged the mean of the
iterations after it ("timing from the second iteration"). Cells stored before FLOPs were
recorded have no FLOP axis: it is shown as unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


COST_UNITS = ("iterations", "q_evals", "grad_evals", "flops", "seconds")
UNIT_NAMES = {"iterations": "iterations", "q_evals": "Q-evaluations per state",
              "grad_evals": "gradient evaluations per state", "flops": "network FLOPs per state",
              "seconds": "wall clock of the lockstep run [s]"}
LEGACY_TIMING = "first iteration charged the mean of the later ones (stored before the warm-up iteration)"


@dataclass
class CellGroup:
    """All seeds of one optimizer on one objective, as arrays.

    ``flops`` is ``None`` for cells stored before FLOPs were recorded (or on a Q-function whose
    shape is unknown); ``start_cost`` holds, per unit, the cost of each seed's start ``[R]`` (an
    optimizer that makes its own start: a warm start); ``timing`` how the wall clock was taken
    (``None``: stored before the warm-up iteration); ``params_at`` the kept estimates ``[R, B, 2A]``
    by iteration (a learned optimizer's trained budget).
    """

    objective: str
    optimizer: str
    iterations: np.ndarray  # [T]
    scores: np.ndarray  # [R, T, B] (R seeds)
    seconds: np.ndarray  # [R, budget]
    q_evals: np.ndarray  # [R, budget]
    grad_evals: np.ndarray  # [R, budget]
    final_params: np.ndarray  # [R, B, 2A]
    meta: dict[str, Any] = field(default_factory=dict)
    flops: np.ndarray | None = None  # [R, budget]
    start_cost: dict[str, np.ndarray | None] = field(default_factory=dict)  # unit -> [R]
    timing: str | None = None
    params_at: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        return int(self.iterations[-1])

    @property
    def states(self) -> int:
        return int(self.scores.shape[-1])

    def steady_seconds(self) -> np.ndarray:
        """Wall clock per iteration ``[R, budget]`` with warm-up excluded (see the module docstring)."""
        s = np.asarray(self.seconds, dtype=np.float64)
        if self.timing is None and s.shape[1] > 1:
            s = s.copy()
            s[:, 0] = s[:, 1:].mean(1)
        return s

    def has_unit(self, unit: str) -> bool:
        return unit != "flops" or self.flops is not None

    def per_iteration(self, unit: str) -> np.ndarray | None:
        """Cost of each iteration ``[R, budget]`` in ``unit`` (counts per state); ``None`` if not recorded."""
        if unit not in COST_UNITS:
            raise ValueError(f"unknown cost unit {unit!r}; known: {', '.join(COST_UNITS)}")
        if unit == "iterations":
            return np.ones_like(self.seconds, dtype=np.float64)
        if unit == "seconds":
            return self.steady_seconds()
        raw = {"q_evals": self.q_evals, "grad_evals": self.grad_evals, "flops": self.flops}[unit]
        return None if raw is None else np.asarray(raw, dtype=np.float64) / self.states

    def cumulative(self, unit: str) -> np.ndarray | None:
        """Cost spent by the end of each iteration, ``[R, budget + 1]`` (column 0: the start's cost;
        counts per state, seconds for all states together); ``None`` if ``unit`` was not recorded."""
        per = self.per_iteration(unit)
        if per is None:
            return None
        start = self.start_cost.get(unit) if unit != "iterations" else None
        start = np.zeros(per.shape[0]) if start is None else np.asarray(start, dtype=np.float64)
        if unit in ("q_evals", "grad_evals", "flops"):
            start = start / self.states
        return np.concatenate([start[:, None], start[:, None] + np.cumsum(per, axis=1)], axis=1)

    def cost_at(self, unit: str, t: np.ndarray | float) -> np.ndarray | float | None:
        """Mean over seeds of the cost by the end of (integer) iteration ``t``; ``inf`` where ``t`` is
        ``inf`` (never reached). ``t`` may be an array of any shape. ``None`` if not recorded."""
        cum = self.cumulative(unit)
        if cum is None:
            return None
        mean = cum.mean(0)
        t = np.asarray(t, dtype=np.float64)
        finite = np.isfinite(t)
        idx = np.clip(np.where(finite, t, 0), 0, self.budget).astype(int)
        out = np.where(finite, mean[idx], np.inf)
        return float(out) if out.ndim == 0 else out

    def run_costs(self, unit: str, t: np.ndarray) -> np.ndarray | None:
        """Each seed's own cost by the end of iteration ``t`` (``[R, ...]``, leading axis the seeds;
        ``inf`` stays ``inf``); ``None`` if ``unit`` was not recorded."""
        cum = self.cumulative(unit)
        if cum is None:
            return None
        t = np.asarray(t, dtype=np.float64)
        finite = np.isfinite(t)
        idx = np.clip(np.where(finite, t, 0), 0, self.budget).astype(int)
        rows = np.arange(cum.shape[0]).reshape((-1,) + (1,) * (t.ndim - 1))
        return np.where(finite, cum[rows, idx], np.inf)

    def scored_costs(self, unit: str) -> np.ndarray | None:
        """Mean over seeds of the cost at each scored iteration ``[T]`` (the x axis of J against cost)."""
        return self.cost_at(unit, self.iterations)

    def at(self, t: int) -> np.ndarray | None:
        """Scores ``[R, B]`` at iteration ``t`` (the last scored iteration ≤ t), None beyond the budget."""
        if t > self.budget:
            return None
        k = int(np.searchsorted(self.iterations, t, side="right") - 1)
        return self.scores[:, k]


def group_cells(cells: Iterable[dict[str, Any]]) -> dict[tuple[str, str], CellGroup]:
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        by_key.setdefault((c["objective"], c["optimizer"]), []).append(c)
    groups = {}
    for (obj, opt), cs in by_key.items():
        cs.sort(key=lambda c: c["seed"])
        flops = None if any(c.get("flops") is None for c in cs) else np.asarray([c["flops"] for c in cs], dtype=np.float64)
        start_cost: dict[str, np.ndarray | None] = {}
        for unit in ("seconds", "q_evals", "grad_evals", "flops"):
            values = [(c.get("start_cost") or {}).get(unit, 0.0 if "start_cost" not in c else None) for c in cs]
            start_cost[unit] = None if any(v is None for v in values) else np.asarray(values, dtype=np.float64)
        kept = set.intersection(*(set((c.get("params_at") or {})) for c in cs))
        params_at = {int(k): np.asarray([c["params_at"][k] for c in cs]) for k in kept}
        groups[(obj, opt)] = CellGroup(
            obj, opt, np.asarray(cs[0]["iterations"]), np.asarray([c["scores"] for c in cs], dtype=np.float64),
            np.asarray([c["seconds"] for c in cs]), np.asarray([c["q_evals"] for c in cs]),
            np.asarray([c["grad_evals"] for c in cs]), np.asarray([c["final_params"] for c in cs]),
            {k: cs[0].get(k) for k in ("spec", "settings", "amortized", "stochastic")} | {"seeds": [c["seed"] for c in cs]},
            flops, start_cost, cs[0].get("timing"), params_at,
        )
    return groups


def first_crossing(iterations: np.ndarray, values: np.ndarray, level: np.ndarray | float,
                   hit: np.ndarray | None = None, interpolate: bool = True) -> np.ndarray:
    """The first iteration at which a scored curve reaches ``level``; ``inf`` where it never does.

    ``values`` is ``[..., T]`` (the scored points ``iterations [T]`` on the last axis), ``level``
    broadcasts against ``values[..., 0]``; ``hit`` (same shape as ``values``) overrides where the
    level counts as reached. Without ``interpolate`` the answer is the first *scored* iteration at or
    above the level, an upper bound on a log-spaced schedule (up to the ratio of consecutive scored
    iterations, 26 % on the ``"log"`` schedule). With it, the crossing between the last scored point
    below and the first at or above the level is placed by linear interpolation of ``J`` in
    ``log(iteration)`` (in the iteration itself from iteration 0) and rounded up to a whole
    iteration; where consecutive iterations were both scored, nothing is interpolated.
    """
    iterations = np.asarray(iterations, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    level = np.broadcast_to(np.asarray(level, dtype=np.float64), values.shape[:-1])
    if hit is None:
        with np.errstate(invalid="ignore"):
            hit = values >= level[..., None]
    ever = hit.any(-1)
    i = hit.argmax(-1)
    t1 = iterations[i]
    out = t1.copy()
    if interpolate:
        prev = np.maximum(i - 1, 0)
        t0 = iterations[prev]
        v0 = np.take_along_axis(values, prev[..., None], -1)[..., 0]
        v1 = np.take_along_axis(values, i[..., None], -1)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((level - v0) / (v1 - v0), 0.0, 1.0)
            frac = np.where(np.isfinite(frac), frac, 1.0)
            log_t = np.exp(np.log(np.maximum(t0, 1e-300)) + frac * (np.log(np.maximum(t1, 1e-300)) - np.log(np.maximum(t0, 1e-300))))
            t = np.where(t0 > 0, log_t, t0 + frac * (t1 - t0))
        t = np.clip(np.ceil(t - 1e-9), t0 + 1, t1)
        out = np.where((i > 0) & (t1 - t0 > 1), t, t1)
    return np.where(ever, out, np.inf)


def grid_resolution(iterations: np.ndarray) -> str:
    """How finely a trace was scored, for table captions: e.g. "every iteration to 10, then
    consecutive scored iterations ≤ 26 % apart"."""
    its = np.asarray(iterations, dtype=np.float64)
    gaps = np.diff(its)
    if len(gaps) == 0 or (gaps == 1).all():
        return "every iteration scored"
    dense = int(its[np.argmax(gaps > 1)]) if (gaps > 1).any() else int(its[-1])
    ratio = float(np.max(its[1:][gaps > 1] / np.maximum(its[:-1][gaps > 1], 1)))
    return f"scored at every iteration to {dense}, then at most {ratio - 1:.0%} apart"


def reference_values(objective: dict[str, Any], groups: list[CellGroup]) -> tuple[np.ndarray, bool]:
    """``J_ref`` per state and whether it is a known optimum."""
    if "optimum" in objective:
        return np.asarray(objective["optimum"]["scored"]), True
    best = np.max([g.scores.max(axis=(0, 1)) for g in groups], axis=0)
    return best, False


def normalized(scores: np.ndarray, start: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``(J − J_start) / (J_ref − J_start)`` per state (last axis); 1 = reached the reference."""
    gap = ref - start
    gap = np.where(np.abs(gap) < 1e-12, np.nan, gap)
    return (scores - start) / gap


def normalized_of_means(scores: np.ndarray, start: np.ndarray, ref: np.ndarray) -> float:
    """``(mean J − mean J_start) / (mean J_ref − mean J_start)`` over states (and seeds).

    The summary's one number per optimizer: the mean of per-state ratios would be dominated by
    the few states where ``J_ref − J_start`` is tiny (a state the start already nearly solves),
    and could even have the opposite sign of the mean gain."""
    gap = float(np.mean(ref) - np.mean(start))
    return float((np.mean(scores) - np.mean(start)) / gap) if abs(gap) > 1e-12 else float("nan")


def iterations_to_target(group: CellGroup, start: np.ndarray, ref: np.ndarray, target: float,
                         interpolate: bool = True) -> np.ndarray:
    """Iteration at which each (seed, state) run first reaches ``target`` of the normalized score
    (:func:`first_crossing`); ``inf`` where it never does within the budget. Shape ``[R, B]``.
    Where ``J_ref = J_start`` the target is reached when ``J ≥ J_ref``."""
    norm = np.moveaxis(normalized(group.scores, start, ref), 1, -1)  # [R,B,T]
    raw = np.moveaxis(group.scores, 1, -1)
    degenerate = (np.abs(ref - start) < 1e-12)[None, :, None]
    with np.errstate(invalid="ignore"):
        hit = np.where(degenerate, raw >= ref[None, :, None], norm >= target)
    values = np.where(degenerate, raw - ref[None, :, None], norm)
    level = np.where(degenerate[..., 0], 0.0, target)
    return first_crossing(group.iterations, values, level, hit, interpolate)


@dataclass
class OptimizerSummary:
    optimizer: str
    budget: int
    mean_j_at: dict[int, float]
    start_j: float
    final_j: float
    final_norm: float
    iters_to: dict[float, tuple[float, float]]  # target -> (median iterations over runs, share reached)
    seconds_per_iter: float  # mean over iterations (warm-up excluded) and seeds
    q_evals_per_iter: float
    grad_evals_per_iter: float
    cost_to: dict[str, dict[float, float | None]] = field(default_factory=dict)  # unit -> target -> median cost
    flops_per_iter: float | None = None


def summarize(group: CellGroup, start: np.ndarray, ref: np.ndarray, budgets: Iterable[int],
              targets: Iterable[float] = (0.9, 0.99)) -> OptimizerSummary:
    at = {t: float(v.mean()) for t in budgets if (v := group.at(t)) is not None}
    final = group.scores[:, -1]
    iters_to: dict[float, tuple[float, float]] = {}
    cost_to: dict[str, dict[float, float | None]] = {"q_evals": {}, "flops": {}}
    for target in targets:
        its = iterations_to_target(group, start, ref, target)  # [R, B]
        iters_to[target] = (float(np.median(its)), float(np.isfinite(its).mean()))
        for unit in cost_to:
            cost = group.run_costs(unit, its)
            cost_to[unit][target] = None if cost is None else float(np.median(cost))
    n_states = group.states
    flops = None if group.flops is None else float(group.flops.mean() / n_states)
    return OptimizerSummary(
        group.optimizer, group.budget, at, float(start.mean()), float(final.mean()),
        normalized_of_means(final, start, ref), iters_to,
        float(group.steady_seconds().mean()), float(group.q_evals.mean() / n_states),
        float(group.grad_evals.mean() / n_states), cost_to, flops,
    )
