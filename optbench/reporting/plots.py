"""Plots of a stored run: normalized scored J against iterations and against wall clock."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optbench.metrics.summary import group_cells, normalized, reference_values  # noqa: E402
from optbench.runner.store import ResultsStore  # noqa: E402


def plot_run(store: ResultsStore, out_dir: Path | None = None) -> list[Path]:
    """Write ``j_vs_iteration.png`` and ``j_vs_time.png``: one panel per objective, one line
    per optimizer (median over states of the seed-averaged normalized J, band = IQR)."""
    out_dir = Path(out_dir or store.root)
    groups = group_cells(store.cells())
    labels = [o["label"] for o in store.run_info["config"]["optimizers"]]
    colors = {lab: plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")(i) for i, lab in enumerate(labels)}
    records = store.objectives()
    objectives = [records[n] for n in store.run_info["config"]["objectives"]
                  if n in records and any(k[0] == n for k in groups)]
    paths = []
    for kind in ("iteration", "time"):
        n = len(objectives)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
        for ax, obj in zip(axes.flat, objectives):
            mine = [groups[(obj["name"], lab)] for lab in labels if (obj["name"], lab) in groups]
            start = np.asarray(obj["start_scores"])
            ref, known = reference_values(obj, mine)
            for g in mine:
                norm = normalized(g.scores, start, ref).mean(0)  # [T,B] seed-averaged
                lo, med, hi = np.nanpercentile(norm, [25, 50, 75], axis=1)
                if kind == "iteration":
                    x = np.maximum(g.iterations, 0.7)  # iteration 0 drawn at the left edge of the log axis
                else:
                    cum = np.concatenate([[0.0], np.cumsum(g.seconds.mean(0))])
                    x = np.maximum(cum[g.iterations], 1e-4)
                ax.plot(x, med, color=colors[g.optimizer], label=g.optimizer, lw=1.6)
                ax.fill_between(x, lo, hi, color=colors[g.optimizer], alpha=0.15, lw=0)
                if g.budget == 1:  # one-shot (direct): its estimate holds; draw it across the axis
                    ax.axhline(med[-1], color=colors[g.optimizer], lw=1.0, ls=":")
            ax.set_xscale("log")
            ax.set_title(f"{obj['name']} (J_ref: {'optimum' if known else 'best found'})", fontsize=10)
            ax.set_xlabel("iteration" if kind == "iteration" else "wall clock, all states [s]")
            ax.set_ylabel("normalized J")
            ax.axhline(1.0, color="k", lw=0.6, ls="--")
            ax.set_ylim(bottom=max(-0.5, ax.get_ylim()[0]), top=min(1.3, ax.get_ylim()[1] + 0.05))
            ax.grid(alpha=0.3, which="both", lw=0.4)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8, frameon=False)
        fig.suptitle(f"{store.run_info['config']['suite']}: scored J normalized per state, (J−J_start)/(J_ref−J_start); "
                     "median and IQR over states", fontsize=10)
        fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(names) / 4), 1, 0.96))
        path = out_dir / f"j_vs_{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
