"""Plots of a stored run: normalized scored J against each cost axis (iterations, wall clock,
Q-evaluations per state, network FLOPs per state)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optbench.metrics.summary import UNIT_NAMES, group_cells, normalized, reference_values  # noqa: E402

# file name suffix -> cost unit of the x axis
AXES = {"iteration": "iterations", "time": "seconds", "q_evals": "q_evals", "flops": "flops"}
from optbench.runner.store import ResultsStore  # noqa: E402


def plot_run(store: ResultsStore, out_dir: Path | None = None) -> list[Path]:
    """Write ``j_vs_iteration.png``, ``j_vs_time.png``, ``j_vs_q_evals.png`` and (when the cells
    recorded FLOPs) ``j_vs_flops.png``: one panel per objective, one line per optimizer (median over
    states of the seed-averaged normalized J, band = IQR), at the mean cost over seeds of each scored
    iteration. Costs of 0 (the start, a direct estimate's Q-evaluations) sit at the left edge."""
    out_dir = Path(out_dir or store.root)
    groups = group_cells(store.cells())
    labels = [o["label"] for o in store.run_info["config"]["optimizers"]]
    colors = {lab: plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")(i) for i, lab in enumerate(labels)}
    records = store.objectives()
    objectives = [records[n] for n in store.run_info["config"]["objectives"]
                  if n in records and any(k[0] == n for k in groups)]
    paths = []
    for kind, unit in AXES.items():
        shown = [o for o in objectives if any(g.has_unit(unit) for k, g in groups.items() if k[0] == o["name"])]
        if not shown:  # e.g. FLOPs: not recorded (older cells) or no network (analytic objectives)
            continue
        n = len(shown)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
        for ax, obj in zip(axes.flat, shown):
            mine = [groups[(obj["name"], lab)] for lab in labels if (obj["name"], lab) in groups]
            start = np.asarray(obj["start_scores"])
            ref, known = reference_values(obj, mine)
            xs = {g.optimizer: g.scored_costs(unit) for g in mine if g.has_unit(unit)}
            positive = np.concatenate([x[x > 0] for x in xs.values()] + [np.empty(0)])
            left = 0.7 if unit == "iterations" or not len(positive) else float(positive.min()) / 2  # costs of 0
            for g in mine:
                if g.optimizer not in xs:
                    continue
                norm = normalized(g.scores, start, ref).mean(0)  # [T,B] seed-averaged
                lo, med, hi = np.nanpercentile(norm, [25, 50, 75], axis=1)
                x = np.maximum(xs[g.optimizer], left)
                ax.plot(x, med, color=colors[g.optimizer], label=g.optimizer, lw=1.6)
                ax.fill_between(x, lo, hi, color=colors[g.optimizer], alpha=0.15, lw=0)
                if g.budget == 1:  # one-shot (direct): its estimate holds; draw it across the axis
                    ax.axhline(med[-1], color=colors[g.optimizer], lw=1.0, ls=":")
            ax.set_xscale("log")
            ax.set_title(f"{obj['name']} (J_ref: {'optimum' if known else 'best found'})", fontsize=10)
            ax.set_xlabel(UNIT_NAMES[unit] + (" (warm-up excluded)" if unit == "seconds" else ""))
            ax.set_ylabel("normalized J")
            ax.axhline(1.0, color="k", lw=0.6, ls="--")
            ax.set_ylim(bottom=max(-0.5, ax.get_ylim()[0]), top=min(1.3, ax.get_ylim()[1] + 0.05))
            ax.grid(alpha=0.3, which="both", lw=0.4)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        legend = {}
        for ax in axes.flat:
            for h, name in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(name, h)
        handles, names = list(legend.values()), list(legend)
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8, frameon=False)
        fig.suptitle(f"{store.run_info['config']['suite']}: scored J normalized per state, (J−J_start)/(J_ref−J_start); "
                     "median and IQR over states", fontsize=10)
        fig.tight_layout(rect=(0, 0.04 + 0.025 * math.ceil(len(names) / 4), 1, 0.96))
        path = out_dir / f"j_vs_{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
