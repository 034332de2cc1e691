"""Percentile bootstrap confidence intervals over states.

Every summary statistic in the analysis tables is a function of per-state quantities (one
row per state; extra axes, e.g. seeds or targets, ride along with their state). Its
uncertainty comes from which states were sampled, so the bootstrap resamples **states**
(rows) with replacement and recomputes the statistic on each resample; the interval is
the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled statistics (the
percentile interval). Quantiles are order statistics (no interpolation), so statistics
that can be infinite (an aRT with no successful run in a resample) give well-defined
bounds.

The resampling is seeded (``seed``), so a report is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
"""A statistic maps ``x [n_boot, n, ...]`` (``n_boot`` resamples of the ``n`` states) to ``[n_boot]``."""

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate (the statistic on the sample itself) and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def fmt(self, digits: int = 3, scale: float = 1.0, percent: bool = False) -> str:
        """``"0.812 [0.79, 0.83]"``; ``percent`` formats shares as ``"85% [80, 90]"``."""
        e, lo, hi = (v * scale for v in (self.estimate, self.low, self.high))
        if percent:
            return f"{_num(100 * e, 3)}% [{_num(100 * lo, 3)}, {_num(100 * hi, 3)}]"
        return f"{_num(e, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"


def _num(x: float, digits: int) -> str:
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{max(1, digits - 1)}e}"
    return f"{x:.{digits}g}"


def mean_statistic(x: np.ndarray) -> np.ndarray:
    """Mean over everything but the resample axis, ignoring NaN."""
    flat = x.reshape(x.shape[0], -1)
    with np.errstate(invalid="ignore"), _quiet():
        return np.nanmean(flat, axis=1)


class _quiet:
    """Silence numpy's all-NaN-slice warnings (the statistic is NaN there, as it should be)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def order_quantile(values: np.ndarray, q: float) -> float:
    """The ``q`` quantile as an order statistic (no interpolation; NaNs dropped, infs kept)."""
    v = np.sort(values[~np.isnan(values)])
    if len(v) == 0:
        return float("nan")
    k = min(len(v) - 1, max(0, int(math.ceil(q * len(v))) - 1))
    return float(v[k])


def bootstrap(x: np.ndarray, statistic: Statistic | str = "mean", *, resamples: int = DEFAULT_RESAMPLES,
              level: float = DEFAULT_LEVEL, seed: int = 0, max_elements: int = 20_000_000) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the rows (states) of ``x``.

    ``x`` is ``[n, ...]``; ``statistic`` is ``"mean"`` (NaN-ignoring mean of all entries) or a
    function of ``[n_boot, n, ...] -> [n_boot]``. Resamples are processed in chunks of at
    most ``max_elements`` array elements.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap needs at least one state")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    stat = mean_statistic if statistic == "mean" else statistic
    assert callable(stat)
    with _quiet():
        estimate = float(stat(x[None])[0])
    n = len(x)
    rng = np.random.default_rng(seed)
    per = max(1, int(max_elements // max(1, x.size)))
    out = []
    done = 0
    while done < resamples:
        k = min(per, resamples - done)
        idx = rng.integers(0, n, size=(k, n))
        with _quiet():
            out.append(np.asarray(stat(x[idx]), dtype=np.float64).reshape(k))
        done += k
    values = np.concatenate(out)
    alpha = (1 - level) / 2
    return Interval(estimate, order_quantile(values, alpha), order_quantile(values, 1 - alpha), level)


def bootstrap_difference(a: np.ndarray, b: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES,
                         level: float = DEFAULT_LEVEL, seed: int = 0) -> Interval:
    """Interval of ``mean(b) − mean(a)`` for two independent samples of states (unpaired:
    each sample resampled on its own). For the same states use :func:`bootstrap` of ``b − a``."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("bootstrap needs at least one state in each sample")
    rng = np.random.default_rng(seed)
    with _quiet():
        ma = np.nanmean(a[rng.integers(0, len(a), size=(resamples, len(a)))].reshape(resamples, -1), axis=1)
        mb = np.nanmean(b[rng.integers(0, len(b), size=(resamples, len(b)))].reshape(resamples, -1), axis=1)
        estimate = float(np.nanmean(b) - np.nanmean(a))
    d = mb - ma
    alpha = (1 - level) / 2
    return Interval(estimate, order_quantile(d, alpha), order_quantile(d, 1 - alpha), level)


def bootstrap_mean(x: np.ndarray, **kwargs) -> Interval:
    """Bootstrap interval of the mean over states of ``x [n]`` (or of all entries of ``[n, ...]``)."""
    return bootstrap(x, "mean", **kwargs)


__all__ = ["DEFAULT_LEVEL", "DEFAULT_RESAMPLES", "Interval", "bootstrap", "bootstrap_difference", "bootstrap_mean", "mean_statistic",
           "order_quantile"]
