"""Summaries of stored traces: normalized scores, iterations to a target, costs.

All statistics are per (objective, optimizer), pooled over states and seeds. The reference
``J_ref`` of a state is its known optimum (scored on the same draws as every optimizer) when
the objective has one, otherwise the best scored ``J`` any optimizer reached at any budget
in the run. ``J_start`` is the scored ``J`` of the common start ``μ = 0, σ = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np


@dataclass
class CellGroup:
    """All seeds of one optimizer on one objective, as arrays."""

    objective: str
    optimizer: str
    iterations: np.ndarray  # [T]
    scores: np.ndarray  # [R, T, B] (R seeds)
    seconds: np.ndarray  # [R, budget]
    q_evals: np.ndarray  # [R, budget]
    grad_evals: np.ndarray  # [R, budget]
    final_params: np.ndarray  # [R, B, 2A]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        return int(self.iterations[-1])

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
        groups[(obj, opt)] = CellGroup(
            obj, opt, np.asarray(cs[0]["iterations"]), np.asarray([c["scores"] for c in cs], dtype=np.float64),
            np.asarray([c["seconds"] for c in cs]), np.asarray([c["q_evals"] for c in cs]),
            np.asarray([c["grad_evals"] for c in cs]), np.asarray([c["final_params"] for c in cs]),
            {k: cs[0].get(k) for k in ("spec", "settings", "amortized", "stochastic")} | {"seeds": [c["seed"] for c in cs]},
        )
    return groups


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


def iterations_to_target(group: CellGroup, start: np.ndarray, ref: np.ndarray, target: float) -> np.ndarray:
    """First scored iteration at which each (seed, state) run reaches ``target`` of the
    normalized score; ``inf`` where it never does within the budget. Shape ``[R, B]``."""
    norm = normalized(group.scores, start, ref)  # [R,T,B]
    hit = norm >= target
    first = np.where(hit.any(1), group.iterations[hit.argmax(1)], np.inf)
    return first.astype(float)


@dataclass
class OptimizerSummary:
    optimizer: str
    budget: int
    mean_j_at: dict[int, float]
    start_j: float
    final_j: float
    final_norm: float
    iters_to: dict[float, tuple[float, float]]  # target -> (median iterations over runs, share reached)
    seconds_per_iter: float  # mean over iterations after the first (warm-up) and seeds
    q_evals_per_iter: float
    grad_evals_per_iter: float


def summarize(group: CellGroup, start: np.ndarray, ref: np.ndarray, budgets: Iterable[int],
              targets: Iterable[float] = (0.9, 0.99)) -> OptimizerSummary:
    at = {t: float(v.mean()) for t in budgets if (v := group.at(t)) is not None}
    final = group.scores[:, -1]
    iters_to = {}
    for target in targets:
        its = iterations_to_target(group, start, ref, target).ravel()
        iters_to[target] = (float(np.median(its)), float(np.isfinite(its).mean()))
    n_states = group.scores.shape[-1]
    steady = group.seconds[:, 1:] if group.seconds.shape[1] > 1 else group.seconds  # first iteration: warm-up
    return OptimizerSummary(
        group.optimizer, group.budget, at, float(start.mean()), float(final.mean()),
        normalized_of_means(final, start, ref), iters_to,
        float(steady.mean()), float(group.q_evals.mean() / n_states), float(group.grad_evals.mean() / n_states),
    )
