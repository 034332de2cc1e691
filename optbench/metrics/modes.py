"""Mode coverage (seed 000 Fig. 2, Fig. 18, App. B.5): do repeated runs of an optimizer at a
state end in the same policy or in different local optima?

For each state, ``R`` runs of an optimizer (different random streams, optionally different
starts) give final estimates ``λ_r = (μ_r, log σ_r)``. We compare their mean actions
``tanh(μ_r) ∈ [−1, 1]^|A|``:

* **mean distance**: the mean pairwise L2 distance ``‖tanh μ_r − tanh μ_q‖`` over the
  ``R(R−1)/2`` pairs, as a fraction of the largest possible distance ``2√|A|``;
* **modes**: the runs clustered by a distance threshold (complete linkage: every two runs of
  a cluster are within ``threshold · 2√|A|`` of each other; default ``threshold = 0.1``);
  each cluster's value is the mean scored ``J`` of its runs, and clusters are ranked by it;
* **best share**: the share of runs that end in the best-valued cluster.

A deterministic optimizer that ignores its start (``direct``) is run once and its estimate
repeated, so its distance is exactly 0 and it has exactly one mode, by construction.

The ``R`` runs are made in one batched run on a *replicated* objective: the states repeated
``R`` times (replica ``r`` of state ``b`` is row ``r·B + b``), each replica scored on its
state's draws. Rows draw independent noise from the run's generator, so replicas are ``R``
independent runs; batching them costs the same Q-evaluations as ``R`` separate runs but
pays the per-iteration overhead once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import PolicyOptimizer, run_optimizer

DEFAULT_RUNS = 10
DEFAULT_THRESHOLD = 0.1


@dataclass
class ModeCoverage:
    """Mode statistics of one optimizer on one objective (``B`` states, ``R`` runs each)."""

    optimizer: str
    threshold: float  # as a fraction of 2√|A|
    mean_distance: np.ndarray  # [B], fraction of 2√|A|
    n_modes: np.ndarray  # [B] int
    best_share: np.ndarray  # [B]
    labels: np.ndarray  # [B, R] cluster of each run, 0 = best-valued cluster
    mode_values: list[np.ndarray] = field(default_factory=list)  # per state: mean scored J per cluster, best first
    scores: np.ndarray | None = None  # [R, B] scored J of each run

    @property
    def runs(self) -> int:
        return self.labels.shape[1]


def pairwise_action_distance(mu: np.ndarray) -> np.ndarray:
    """``[R, B, A]`` pre-tanh means -> ``[B, R, R]`` L2 distances between ``tanh(μ)``."""
    a = np.tanh(np.asarray(mu, dtype=np.float64)).transpose(1, 0, 2)  # [B,R,A]
    return np.linalg.norm(a[:, :, None, :] - a[:, None, :, :], axis=-1)


def cluster_runs(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Complete-linkage clusters of ``R`` runs from their ``[R, R]`` distance matrix, cut at
    ``threshold`` (absolute distance): labels ``[R]`` in ``0..k-1`` (order of first appearance)."""
    R = len(dist)
    if R == 1:
        return np.zeros(1, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    condensed = squareform(np.asarray(dist, dtype=np.float64), checks=False)
    raw = fcluster(linkage(condensed, method="complete"), t=threshold, criterion="distance")
    _, labels = np.unique(raw, return_inverse=True)
    return labels


def mode_coverage(final_params: np.ndarray | Tensor, scores: np.ndarray | Tensor, *,
                  threshold: float = DEFAULT_THRESHOLD, optimizer: str = "") -> ModeCoverage:
    """Mode statistics from ``R`` runs' final estimates ``[R, B, 2|A|]`` and scored ``J`` ``[R, B]``."""
    params = np.asarray(final_params, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if params.ndim != 3 or scores.shape != params.shape[:2]:
        raise ValueError(f"need final params [R, B, 2|A|] and scores [R, B], got {params.shape} and {scores.shape}")
    R, B, P = params.shape
    A = P // 2
    dmax = 2 * math.sqrt(A)
    dist = pairwise_action_distance(params[..., :A])  # [B,R,R]
    iu = np.triu_indices(R, 1)
    mean_distance = dist[:, iu[0], iu[1]].mean(1) / dmax if R > 1 else np.zeros(B)
    labels = np.zeros((B, R), dtype=int)
    n_modes = np.zeros(B, dtype=int)
    best_share = np.zeros(B)
    values = []
    for b in range(B):
        raw = cluster_runs(dist[b], threshold * dmax)
        k = raw.max() + 1
        v = np.array([scores[raw == c, b].mean() for c in range(k)])
        order = np.argsort(-v, kind="stable")
        rank = np.empty(k, dtype=int)
        rank[order] = np.arange(k)
        labels[b] = rank[raw]
        n_modes[b] = k
        best_share[b] = float((labels[b] == 0).mean())
        values.append(v[order])
    return ModeCoverage(optimizer, threshold, mean_distance, n_modes, best_share, labels, values, scores)


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


__all__ = ["DEFAULT_RUNS", "DEFAULT_THRESHOLD", "ModeCoverage", "cluster_runs", "mode_coverage",
           "pairwise_action_distance", "random_starts", "replicate_objective", "run_replicas"]
