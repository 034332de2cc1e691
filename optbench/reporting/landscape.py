"""Landscape plots (seed 000 Fig. 1, 2, 14): the scored ``J`` over a grid of two action means,
with optimizers' trajectories and final estimates drawn on it.

For one state and two action dimensions ``(i, j)``, the background is the scored ``J`` (the
objective's fixed draws) of policies whose means ``μ_i, μ_j`` run over a grid while every
other coordinate of ``λ`` (the other means and all log standard deviations) is held at a
base estimate (by default the best final estimate of the run at that state). The grid is in
pre-tanh ``μ`` (the parameters the optimizers move), wide enough to show every drawn
estimate (:func:`grid_limits`); the opposite axes label the mean action ``tanh μ``. A grid in
``tanh μ`` would squeeze saturated estimates (``|tanh μ| → 1``, common for trained agents)
into its edge, where the slice no longer shows their value.

Trajectories are projections of the full ``λ`` path onto the two means (the other
coordinates move too, so a path is not confined to the drawn slice). Stored runs keep only
final estimates; :func:`record_trajectory` re-runs an optimizer to record every iterate
(opt-in, stored nowhere, default results unchanged).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from optbench.objectives.policy_objective import PolicyObjective  # noqa: E402
from optbench.optimizers.base import Iterate, OptimizerError, PolicyOptimizer  # noqa: E402

MAX_ABS_MU = 6.0


def record_trajectory(optimizer: PolicyOptimizer, objective: PolicyObjective, iterations: int, *, seed: int = 0,
                      start: Tensor | None = None) -> Tensor:
    """Every iterate ``λ`` of a run, ``[iterations + 1, B, 2|A|]`` (row 0: the start).

    Drives ``optimizer.iterate`` exactly as :func:`optbench.optimizers.base.run_optimizer`
    does (same generator seeding and start), without timing or scoring, so on the same
    objective and seed it retraces the stored run.
    """
    generator = torch.Generator(device=objective.device).manual_seed(seed)
    start = objective.initial_params() if start is None else start.to(objective.device)
    path = [start.detach().cpu().clone()]
    steps = optimizer.iterate(objective, start.clone(), iterations, generator)
    with torch.inference_mode(False):
        for t in range(iterations):
            try:
                out = next(steps)
            except StopIteration:
                raise OptimizerError(f"{optimizer.label()} stopped after {t} of {iterations} iterations") from None
            params = (out.params if isinstance(out, Iterate) else out).detach()
            path.append(params.cpu().clone())
    steps.close()
    return torch.stack(path)


def choose_state(finals: np.ndarray) -> int:
    """The state where optimizers' final mean actions disagree most: ``finals [L, B, 2|A|]``."""
    L, B, P = finals.shape
    if L < 2:
        return 0
    a = np.tanh(finals[..., : P // 2])  # [L,B,A]
    d = np.linalg.norm(a[:, None] - a[None, :], axis=-1).sum((0, 1))  # [B]
    return int(np.argmax(d))


def choose_dims(finals: np.ndarray) -> tuple[int, int]:
    """The two action dimensions whose final mean actions vary most across ``finals [L, 2|A|]``
    (ties: the lowest indices)."""
    P = finals.shape[-1]
    A = P // 2
    if A < 2:
        raise ValueError("a landscape needs at least two action dimensions")
    spread = np.tanh(finals[:, :A]).std(0) if len(finals) > 1 else np.zeros(A)
    order = np.argsort(-spread, kind="stable")
    i, j = sorted(int(k) for k in order[:2])
    return i, j


def grid_limits(points: list[np.ndarray], dims: tuple[int, int], *, margin: float = 0.5, half_width: float = 1.5,
                max_abs: float = MAX_ABS_MU) -> tuple[tuple[float, float], tuple[float, float]]:
    """Ranges of the two means that show every point of ``points`` (arrays ``[..., 2|A|]``:
    estimates and trajectories) with a margin, at least ``±half_width`` around 0, and at
    most ``±max_abs`` (beyond, ``tanh μ`` is 1 to float precision)."""
    out = []
    for d in dims:
        vals = np.concatenate([np.asarray(p, dtype=np.float64)[..., d].ravel() for p in points]) if points else np.zeros(1)
        vals = vals[np.isfinite(vals)]
        lo = min(-half_width, float(vals.min()) - margin) if len(vals) else -half_width
        hi = max(half_width, float(vals.max()) + margin) if len(vals) else half_width
        out.append((max(lo, -max_abs), min(hi, max_abs)))
    return out[0], out[1]


@torch.no_grad()
def landscape_grid(objective: PolicyObjective, state: int, base: Tensor | np.ndarray, dims: tuple[int, int], *,
                   xlim: tuple[float, float] = (-3.0, 3.0), ylim: tuple[float, float] = (-3.0, 3.0),
                   resolution: int = 41, chunk: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scored ``J`` at one state over a ``resolution²`` grid of the means ``μ[i] ∈ xlim``,
    ``μ[j] ∈ ylim`` (``dims = (i, j)``), every other coordinate of ``λ`` at ``base``.

    Returns ``(xs [resolution], ys [resolution], J [resolution (y), resolution (x)])``.
    """
    A = objective.action_dim
    i, j = dims
    if not (0 <= i < A and 0 <= j < A and i != j):
        raise ValueError(f"landscape dims must be two different action dimensions in 0..{A - 1}, got {dims}")
    sub = objective.subset([state])
    base = torch.as_tensor(np.asarray(base), dtype=objective.states.dtype, device=objective.device).reshape(-1)
    xs, ys = np.linspace(*xlim, resolution), np.linspace(*ylim, resolution)
    gi, gj = np.meshgrid(xs, ys)  # [res_y, res_x]
    lam = base.expand(resolution * resolution, -1).clone()
    lam[:, i] = torch.as_tensor(gi.ravel(), dtype=lam.dtype, device=lam.device)
    lam[:, j] = torch.as_tensor(gj.ravel(), dtype=lam.dtype, device=lam.device)
    values = [sub.score(lam[lo:lo + chunk].unsqueeze(0))[0] for lo in range(0, len(lam), chunk)]
    return xs, ys, torch.cat(values).cpu().double().numpy().reshape(resolution, resolution)


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


__all__ = ["MAX_ABS_MU", "choose_dims", "choose_state", "grid_limits", "landscape_figure", "landscape_grid",
           "plot_landscape", "record_trajectory"]
