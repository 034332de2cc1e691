"""Amortization gap (seed 000 Fig. 6, App. A.3): how much a local optimizer still finds from
an optimizer's final estimate.

From every final ``λ`` (each state, each seed), run Adam on ``λ`` (``lr = 5e-3``, 100 steps,
10 reparameterized samples per gradient: the paper's gap estimate; all settable) and report
the **scored** improvement ``gap = J(λ_Adam) − J(λ)``, both scored on the objective's fixed
draws. Per state the gap is averaged over seeds; the summary is the mean over states with a
bootstrap interval over states. ``normalized`` divides by ``J_ref − J_start`` of the state
(the share of the start-to-reference distance still left on the table).

An optimizer that already sits at a local optimum has a gap ≈ 0 (Adam's own noise can make
it slightly negative); a gap is only a lower bound on the distance to the optimum, since
Adam stops at the local optimum of the basin it starts in.

This module holds the result and its statistics; the experiment that computes it (running Adam)
is :func:`optbench.runner.experiments.amortization_gap`, run by ``optbench analyze``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optbench.metrics.bootstrap import Interval, bootstrap

GAP_LR = 5e-3
GAP_STEPS = 100
GAP_SAMPLES = 10


@dataclass
class GapResult:
    """Scored ``J`` before and after the Adam refinement, ``[R, B]`` (seeds, states)."""

    optimizer: str
    before: np.ndarray
    after: np.ndarray
    lr: float = GAP_LR
    steps: int = GAP_STEPS
    samples: int = GAP_SAMPLES

    @property
    def gap(self) -> np.ndarray:
        """Per-state gap, mean over seeds: ``[B]``."""
        return (self.after - self.before).mean(0)

    def interval(self, **kw) -> Interval:
        return bootstrap(self.gap, "mean", **kw)

    def normalized_interval(self, start: np.ndarray, ref: np.ndarray, **kw) -> Interval:
        scale = np.asarray(ref) - np.asarray(start)
        scale = np.where(np.abs(scale) < 1e-12, np.nan, scale)
        return bootstrap(self.gap / scale, "mean", **kw)


__all__ = ["GAP_LR", "GAP_SAMPLES", "GAP_STEPS", "GapResult"]
