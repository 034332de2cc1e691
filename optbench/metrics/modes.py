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
pays the per-iteration overhead once (:func:`optbench.runner.experiments.run_replicas`, run by
``optbench analyze``; this module only computes the statistics from the stored runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

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
    condensed = squareform(np.asarray(dist, dtype=np.float64), checks=False)
    raw = fcluster(linkage(condensed, method="complete"), t=threshold, criterion="distance")
    _, labels = np.unique(raw, return_inverse=True)
    return labels


def mode_coverage(final_params: np.ndarray, scores: np.ndarray, *,
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


__all__ = ["DEFAULT_RUNS", "DEFAULT_THRESHOLD", "ModeCoverage", "cluster_runs", "mode_coverage",
           "pairwise_action_distance"]
