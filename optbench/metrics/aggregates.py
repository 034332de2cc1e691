"""Aggregate metrics over training runs with stratified-bootstrap intervals, as rliable defines them.

These are the estimators of rliable (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"; ``rliable.metrics`` and ``rliable.library``), re-implemented on numpy/scipy with the
same definitions and the same random stream, vectorized over bootstrap resamples:

* a **score matrix** is ``[runs, tasks]`` (``scores[n, m]``: the score of run ``n`` on task
  ``m``; a run's score is the mean over its evaluation episodes), optionally with trailing axes
  (e.g. evaluation steps) that are resampled and reduced independently, as rliable's
  ``StratifiedBootstrap`` does for ``[runs, tasks, steps]`` arrays;
* :func:`aggregate_mean`: the mean over runs of each task, then the mean over tasks
  (``metrics.aggregate_mean``);
* :func:`aggregate_iqm`: the interquartile mean, ``scipy.stats.trim_mean(scores, 0.25,
  axis=None)`` over all runs and tasks (``metrics.aggregate_iqm``). It cuts
  ``floor(0.25 · n)`` scores from each end of the ``n = runs · tasks`` scores, so with fewer
  than 4 scores it **is** the mean;
* :func:`probability_of_improvement`: ``P(X > Y)`` per task, the Mann–Whitney ``U`` of X over
  Y divided by ``n_x · n_y`` (ties count one half), averaged over tasks
  (``metrics.probability_of_improvement``);
* :func:`interval_estimate` and :func:`improvement_interval`: the point estimate and the
  percentile interval (``np.percentile``, linear interpolation, as ``arch``'s
  ``conf_int(method="percentile")``) of ``reps`` stratified-bootstrap resamples: runs are
  resampled with replacement **within each task** (``library.StratifiedBootstrap``, tasks are
  not resampled); for the probability of improvement, X's and Y's runs are resampled
  independently (``library.StratifiedIndependentBootstrap``).

Why not call rliable itself: rliable 1.2 needs ``arch < 8``, and ``arch`` 7 does not import
with pandas 3 (``pandas.util._decorators.deprecate_kwarg`` changed its signature), while
``arch`` 8 dropped the ``random_state`` argument rliable passes; this module keeps the analysis
free of that stack. rliable draws its resamples from numpy's global legacy generator
(``np.random.choice``); here a ``np.random.RandomState(seed)`` draws the same indices in the
same order, so after ``np.random.seed(seed)`` rliable gives the same intervals bit for bit up to
floating-point summation order (tests/test_learning_curves.py checks this whenever rliable
imports).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.stats

from optbench.metrics.bootstrap import Interval

RLIABLE_REPS = 50_000  # rliable's default number of bootstrap resamples
LEVEL = 0.95

Aggregate = Callable[[np.ndarray], np.ndarray]
"""An aggregate maps resampled scores ``[reps, runs, tasks, *rest]`` to ``[reps, *rest]``."""


def _as_scores(scores: np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"scores must be [runs, tasks, ...] with at least one run and task, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("scores must be finite")
    return x


def batched_mean(x: np.ndarray) -> np.ndarray:
    """``aggregate_mean`` of every resample: ``[reps, runs, tasks, *rest] -> [reps, *rest]``."""
    return x.mean(axis=1).mean(axis=1)


def batched_iqm(x: np.ndarray) -> np.ndarray:
    """``aggregate_iqm`` of every resample: the 25 % trimmed mean of all runs and tasks."""
    flat = np.moveaxis(x.reshape(x.shape[0], -1, *x.shape[3:]) if x.ndim > 3 else x.reshape(x.shape[0], -1), 1, -1)
    return scipy.stats.trim_mean(flat, 0.25, axis=-1)


AGGREGATES: dict[str, Aggregate] = {"mean": batched_mean, "iqm": batched_iqm}


def aggregate_mean(scores: np.ndarray) -> np.ndarray:
    """Mean over runs per task, then over tasks (``[runs, tasks, *rest] -> [*rest]``)."""
    return batched_mean(_as_scores(scores)[None])[0]


def aggregate_iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean over all runs and tasks (``[runs, tasks, *rest] -> [*rest]``)."""
    return batched_iqm(_as_scores(scores)[None])[0]


def _batched_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``P(X > Y)`` of resamples ``x [reps, n_x, tasks]``, ``y [reps, n_y, tasks]`` -> ``[reps]``."""
    gt = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))
    eq = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return (gt + 0.5 * eq).mean(axis=-1)


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """``P(X_m > Y_m)`` averaged over tasks ``m``, for score matrices ``[runs_x, tasks]`` and
    ``[runs_y, tasks]``: the probability that a random run of X scores above a random run of Y
    (ties one half). 0.5 means no difference; it says how often, not by how much."""
    x, y = _as_scores(scores_x), _as_scores(scores_y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"probability of improvement needs [runs, tasks] matrices with the same tasks, got "
                         f"{list(x.shape)} and {list(y.shape)}")
    return float(_batched_improvement(x[None], y[None])[0])


def _percentile_interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - level) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def _check(reps: int, level: float) -> None:
    if reps < 1:
        raise ValueError(f"bootstrap resamples must be >= 1, got {reps}")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


def interval_estimate(scores: np.ndarray, aggregate: str | Aggregate = "iqm", *, reps: int = RLIABLE_REPS,
                      level: float = LEVEL, seed: int = 0, chunk_elements: int = 4_000_000
                      ) -> Interval | list[Interval]:
    """Point estimate and stratified-bootstrap percentile interval of ``aggregate`` of ``scores``.

    ``scores`` is ``[runs, tasks]`` (one :class:`Interval`) or ``[runs, tasks, L]`` (a list of
    ``L`` pointwise intervals, e.g. one per evaluation step; each resample draws runs for every
    task and step independently, as rliable does). ``aggregate``: ``"iqm"``, ``"mean"`` or a
    function of ``[reps, runs, tasks, *rest] -> [reps, *rest]``. Resamples are drawn in chunks of
    at most ``chunk_elements`` indices (the same stream as one draw).
    """
    x = _as_scores(scores)
    if x.ndim > 3:
        raise ValueError(f"scores must be [runs, tasks] or [runs, tasks, steps], got shape {list(x.shape)}")
    _check(reps, level)
    agg = AGGREGATES[aggregate] if isinstance(aggregate, str) else aggregate
    estimate = np.asarray(agg(x[None])[0], dtype=np.float64)
    rs = np.random.RandomState(seed)
    runs = x.shape[0]
    strata = np.ogrid[tuple(slice(s) for s in x.shape[1:])]  # task (and step) of every resampled entry
    per = max(1, chunk_elements // x.size)
    values, done = [], 0
    while done < reps:
        k = min(per, reps - done)
        idx = rs.randint(0, runs, size=(k, *x.shape))  # what np.random.choice(runs, shape) draws, k times
        values.append(np.asarray(agg(x[(idx, *strata)]), dtype=np.float64).reshape(k, *estimate.shape))
        done += k
    low, high = _percentile_interval(np.concatenate(values), level)
    if estimate.ndim == 0:
        return Interval(float(estimate), float(low), float(high), level)
    return [Interval(float(e), float(lo), float(hi), level) for e, lo, hi in zip(estimate, low, high)]


def improvement_interval(scores_x: np.ndarray, scores_y: np.ndarray, *, reps: int = RLIABLE_REPS,
                         level: float = LEVEL, seed: int = 0) -> Interval:
    """:func:`probability_of_improvement` of X over Y with its percentile interval; each resample
    redraws X's runs and then Y's runs (within tasks), independently."""
    x, y = _as_scores(scores_x), _as_scores(scores_y)
    estimate = probability_of_improvement(x, y)
    _check(reps, level)
    rs = np.random.RandomState(seed)
    tx, ty = np.arange(x.shape[1])[None], np.arange(y.shape[1])[None]
    ix = np.empty((reps, *x.shape), dtype=np.int64)
    iy = np.empty((reps, *y.shape), dtype=np.int64)
    for r in range(reps):  # X's indices, then Y's, per resample: rliable's order (different bounds: no single draw)
        ix[r] = rs.randint(0, x.shape[0], size=x.shape)
        iy[r] = rs.randint(0, y.shape[0], size=y.shape)
    values = _batched_improvement(x[ix, tx], y[iy, ty])
    low, high = _percentile_interval(values, level)
    return Interval(estimate, float(low), float(high), level)


__all__ = ["AGGREGATES", "LEVEL", "RLIABLE_REPS", "aggregate_iqm", "aggregate_mean", "batched_iqm", "batched_mean",
           "improvement_interval", "interval_estimate", "probability_of_improvement"]
