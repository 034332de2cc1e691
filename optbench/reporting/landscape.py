"""Landscape plots (seed 000 Fig. 1, 2, 14): the scored ``J`` over a grid of two action means,
with optimizers' trajectories and final estimates drawn on it.

For one state and two action dimensions ``(i, j)``, the background is the scored ``J`` (the
objective's fixed draws) of policies whose means ``μ_i, μ_j`` run over a grid while every
other coordinate of ``λ`` (the other means and all log standard deviations) is held at a
base estimate (by default the best final estimate of the run at that state). The grid is in
pre-tanh ``μ`` (the parameters the optimizers move), wide enough to show every drawn
estimate (:func:`optbench.runner.experiments.grid_limits`); the opposite axes label the mean action ``tanh μ``. A grid in
``tanh μ`` would squeeze saturated estimates (``|tanh μ| → 1``, common for trained agents)
into its edge, where the slice no longer shows their value.

Trajectories are projections of the full ``λ`` path onto the two means (the other
coordinates move too, so a path is not confined to the drawn slice). Stored cells keep only
final estimates; ``optbench analyze`` re-runs each optimizer on the chosen state
(:func:`optbench.runner.experiments.record_trajectory`) and stores the grid and the paths
with the run; this module only draws what was stored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_landscape(ax, xs: np.ndarray, ys: np.ndarray, values: np.ndarray, dims: tuple[int, int], *,
                   trajectories: Mapping[str, np.ndarray] | None = None, finals: Mapping[str, np.ndarray] | None = None,
                   direct: np.ndarray | None = None, modes: np.ndarray | None = None,
                   colors: Mapping[str, object] | None = None, title: str = "") -> None:
    """Draw one landscape panel: background ``values``, trajectories ``{label: [T+1, 2|A|]}``
    (line, start dot, end ring), stored final estimates ``{label: [2|A|]}`` (filled marker),
    the direct estimate (star) and known local optima (black plus). Points beyond the grid
    are drawn at its edge."""
    i, j = dims
    lo, hi = np.nanpercentile(values, [5, 100])
    im = ax.imshow(values, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis",
                   vmin=lo, vmax=hi, aspect="auto", interpolation="bilinear")
    ax.contour(xs, ys, values, levels=np.linspace(lo, hi, 9), colors="white", linewidths=0.4, alpha=0.5)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="scored J")
    colors = dict(colors or {})

    def xy(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.clip(p[..., i], xs[0], xs[-1]), np.clip(p[..., j], ys[0], ys[-1])

    for label, path in (trajectories or {}).items():
        x, y = xy(np.asarray(path))
        c = colors.get(label)
        ax.plot(x, y, "-", color=c, lw=1.1, alpha=0.9)
        ax.plot(x[:1], y[:1], "o", color=c, ms=3)
        ax.plot(x[-1:], y[-1:], "o", mfc="none", mec=c, ms=8, mew=1.4)
    for label, p in (finals or {}).items():
        x, y = xy(np.asarray(p))
        ax.plot(x, y, "o", color=colors.get(label), ms=5.5, mec="k", mew=0.5, label=label)
    if modes is not None and len(modes):
        x, y = xy(np.asarray(modes))
        ax.plot(x, y, "+", color="k", ms=9, mew=1.6, label="local optima (known)")
    if direct is not None:
        x, y = xy(np.asarray(direct))
        ax.plot(x, y, "*", color="white", ms=15, mec="k", mew=0.9, label="direct estimate")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel(f"mean μ[{i}] (pre-tanh)")
    ax.set_ylabel(f"mean μ[{j}] (pre-tanh)")
    top = ax.secondary_xaxis("top", functions=(lambda m: m, lambda m: m))
    ticks = [t for t in (-4, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 4) if xs[0] <= t <= xs[-1]]
    top.set_ticks(ticks, labels=[f"{np.tanh(t):.2g}" for t in ticks], fontsize=6)
    top.set_xlabel(f"mean action tanh μ[{i}]", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)


def landscape_figure(path: Path, xs: np.ndarray, ys: np.ndarray, values: np.ndarray, dims: tuple[int, int], *,
                     title: str, caption: str = "", **kwargs) -> Path:
    """A one-panel landscape figure written to ``path`` (see :func:`plot_landscape`)."""
    fig, ax = plt.subplots(figsize=(6.8, 5.6))
    plot_landscape(ax, xs, ys, values, dims, title=title, **kwargs)
    handles, names = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=7, frameon=False)
    if caption:
        fig.text(0.01, 0.995, caption, fontsize=7, va="top")
    rows = math.ceil(len(names) / 4) if handles else 0
    fig.tight_layout(rect=(0, 0.03 + 0.03 * rows, 1, 0.97 if caption else 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["landscape_figure", "plot_landscape"]
