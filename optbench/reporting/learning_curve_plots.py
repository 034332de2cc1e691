"""``optbench curves analyze``'s output: the learning-curve tables (Markdown for a README to quote,
JSON for machines) and plots, from :func:`optbench.metrics.learning_curves.analyze`.

An output directory holds::

    learning_curves.md     every table, with the conventions, seed and episode counts stated
    learning_curves.json   the same numbers (and per-step curves) for machine reading
    curves_<task>.png      return against environment steps per configuration, IQM and mean
                           with their pointwise 95 % bands (two panels)
    final_<task>.png       final return per configuration: IQM and mean with intervals, seeds as dots
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optbench.metrics.learning_curves import config_order, label_of  # noqa: E402
from optbench.runner.store import atomic_write_json  # noqa: E402

MD_NAME = "learning_curves.md"
JSON_NAME = "learning_curves.json"


def _n(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if 1e-3 <= abs(x) < 1e6 else f"{x:.2e}"


def _ci(d: dict[str, float], digits: int = 4) -> str:
    return f"{_n(d['estimate'], digits)} [{_n(d['low'], digits)}, {_n(d['high'], digits)}]"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    return (["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows] + [""])


def _safe(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task)


def _colors(labels: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _grid_text(steps: list[int]) -> str:
    d = sorted({b - a for a, b in zip(steps, steps[1:])})
    every = f"every {d[0]}" if len(d) == 1 else "irregular"
    return f"{len(steps)} evaluations, steps {steps[0]}..{steps[-1]} ({every})"


def plot_curves(task: str, res: dict[str, Any], path: Path, level: float) -> Path:
    """Return against steps per configuration: IQM (left) and mean (right), pointwise bands."""
    configs = res["configurations"]
    colors = _colors([c["label"] for c in configs])
    steps = np.asarray(res["steps"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, stat in zip(axes, ("iqm", "mean")):
        for c in configs:
            est = np.array([p["estimate"] for p in c["curve"][stat]])
            lo = np.array([p["low"] for p in c["curve"][stat]])
            hi = np.array([p["high"] for p in c["curve"][stat]])
            ax.plot(steps, est, color=colors[c["label"]], lw=1.6, label=f"{c['label']} ({c['n_seeds']} seeds)")
            ax.fill_between(steps, lo, hi, color=colors[c["label"]], alpha=0.2, lw=0)
        ax.set_xlabel("environment steps")
        ax.set_title(f"{'IQM' if stat == 'iqm' else 'mean'} across seeds, {level:.0%} bootstrap band", fontsize=9)
        ax.grid(alpha=0.3, lw=0.4)
    axes[0].set_ylabel(f"return (mean of {res['episodes']} evaluation episodes)")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(task, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_final(task: str, res: dict[str, Any], path: Path, level: float) -> Path:
    """Final return per configuration: IQM and mean with intervals, each seed a dot."""
    configs = res["configurations"]
    colors = _colors([c["label"] for c in configs])
    fig, ax = plt.subplots(figsize=(1.6 * len(configs) + 2.5, 3.8))
    for i, c in enumerate(configs):
        for off, stat, marker in ((-0.12, "iqm", "o"), (0.12, "mean", "s")):
            d = c["final"][stat]
            ax.errorbar([i + off], [d["estimate"]], yerr=[[d["estimate"] - d["low"]], [d["high"] - d["estimate"]]],
                        fmt=marker, color=colors[c["label"]], capsize=4, ms=6,
                        label=("IQM" if stat == "iqm" else "mean") if i == 0 else None)
        vals = list(c["final"]["per_seed"].values())
        ax.plot([i] * len(vals), vals, "x", color="k", ms=5, alpha=0.6, label="seeds" if i == 0 else None)
    ax.set_xticks(range(len(configs)), [c["label"] for c in configs])
    ax.set_ylabel("return")
    ax.set_title(f"{task}: return at step {res['final_step']} ({level:.0%} bootstrap intervals over seeds)", fontsize=9)
    ax.grid(alpha=0.3, axis="y", lw=0.4)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def gap_tables(gap_docs: list[dict]) -> tuple[list[str], dict[str, Any]]:
    """The amortization gap per configuration and snapshot step (mean over the seeds measured;
    each seed's own interval is over states and is in the gap files)."""
    md: list[str] = []
    data: dict[str, Any] = {}
    by_task: dict[str, list[dict]] = {}
    for d in gap_docs:
        by_task.setdefault(d["task"], []).append(d)
    for task in sorted(by_task):
        docs = by_task[task]
        protos = {json.dumps(d["protocol"], sort_keys=True) for d in docs}
        cells: dict[tuple[str, int], list[float]] = {}
        order = {}
        for d in docs:
            lab = label_of(d["policy"], int(d["iterations"]))
            order[lab] = config_order(d["policy"], int(d["iterations"]))
            for r in d["results"]:
                cells.setdefault((lab, int(r["step"])), []).append(float(r["gap"]["estimate"]))
        labels = sorted(order, key=order.get)
        steps = sorted({s for _, s in cells})
        p = json.loads(next(iter(protos)))
        md += [f"### Amortization gap over training: {task}", "",
               f"*Scored J gained by Adam (lr {p['gap_lr']:g}, {p['gap_steps']} steps, {p['gap_samples']} samples) "
               f"from the agent's own optimizer at its trained budget (direct: 1 forward pass; iterative-K: K "
               f"iterations), on {p['states']} states of the snapshot's own deterministic policy; mean over the seeds "
               f"measured (n in parentheses); per-seed intervals over states are in the gap files.*"
               + ("" if len(protos) == 1 else " **The gap files of this task use different protocols.**"), ""]
        rows = []
        for s in steps:
            row = [str(s)]
            for lab in labels:
                v = cells.get((lab, s))
                row.append(f"{_n(float(np.mean(v)))} (n={len(v)})" if v else "—")
            rows.append(row)
        md += _table(["step"] + labels, rows)
        data[task] = {"steps": steps, "configurations": {lab: {str(s): cells.get((lab, s)) for s in steps}
                                                          for lab in labels}, "protocols": sorted(protos)}
    return md, data


def write_analysis(doc: dict, analysis: dict[str, Any], out_dir: str | Path, *, source: str = "", command: str = "",
                   gap_docs: list[dict] | None = None) -> Path:
    """Write the Markdown tables, the JSON numbers and the plots; returns the Markdown path."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    st = analysis["settings"]
    level = st["level"]
    pct = f"{level:.0%}"
    md = ["# Learning curves", "",
          f"Generated by `{command or 'optbench curves analyze'}`" + (f" from `{source}`" if source else "")
          + f" ({len(doc['records'])} agents).", "",
          "**Conventions.** A run is one agent seed; its score at an evaluation step is the mean return of its "
          "deterministic evaluation episodes, which are the same episodes (common reset seeds) for every agent. "
          "Each (task, policy, iterations) configuration is aggregated over its seeds: mean, and IQM (rliable's "
          "interquartile mean, the 25 % trimmed mean over seeds: it cuts floor(n/4) seeds from each end, so with "
          "fewer than 4 seeds it equals the mean). Intervals: stratified bootstrap over seeds (rliable's "
          f"definition; {st['reps']} resamples, percentile method, {pct}, seed {st['seed']}); curve bands are "
          "pointwise. P(X > Y) is rliable's probability of improvement: the chance that a random seed of X ends "
          "above a random seed of Y (ties count half), with its bootstrap interval (X's and Y's seeds resampled "
          "independently). Returns of different tasks are not pooled.", ""]
    restricted = doc.get("restricted")
    if restricted:
        md += [f"**Restricted to the common evaluation grid**: steps left out of "
               f"{', '.join(f'{k} ({len(v)})' for k, v in restricted.get('dropped', {}).items()) or 'no run'}.", ""]
    pngs = []
    for task, res in analysis["tasks"].items():
        configs = res["configurations"]
        seeds = ", ".join(f"{c['label']} {c['n_seeds']}" for c in configs)
        md += [f"## {task}", "",
               f"Seeds per configuration: {seeds}. Evaluation: {res['episodes']} deterministic episodes per "
               f"evaluation, {_grid_text(res['steps'])}.", ""]
        if any(c["iqm_is_mean"] for c in configs):
            md += [f"*With fewer than 4 seeds ({', '.join(c['label'] for c in configs if c['iqm_is_mean'])}) the IQM "
                   "is the mean, and a bootstrap over so few seeds gives intervals that are no wider than the range "
                   "of the seeds: read them as descriptive.*", ""]
        if res["setting_differences"]:
            diffs = "; ".join(f"{k}: " + ", ".join(f"{lab} {json.dumps(v)}" for lab, v in vals.items())
                              for k, vals in res["setting_differences"].items())
            md += [f"Training settings that differ between configurations besides policy and iterations: {diffs}.", ""]
        md += [f"### Final return at step {res['final_step']}", ""]
        rows = [[c["label"], str(c["n_seeds"]), _ci(c["final"]["iqm"]), _ci(c["final"]["mean"]),
                 ", ".join(f"s{s}: {_n(v)}" for s, v in c["final"]["per_seed"].items())] for c in configs]
        md += _table(["configuration", "seeds", f"IQM [{pct} CI]", f"mean [{pct} CI]", "per seed"], rows)
        if res["improvement"]:
            md += [f"### Probability of improvement at step {res['final_step']}", ""]
            rows = [[f"{p['x']} > {p['y']}", _ci(p, 3)] for p in res["improvement"]]
            md += _table(["X > Y", f"P(X > Y) [{pct} CI]"], rows)
        md += [f"### Learning curves: IQM [{pct} CI] across seeds", ""]
        rows = [[str(s)] + [_ci(c["curve"]["iqm"][i]) for c in configs] for i, s in enumerate(res["steps"])]
        md += _table(["step"] + [c["label"] for c in configs], rows)
        md += [f"### Learning curves: mean [{pct} CI] across seeds", ""]
        rows = [[str(s)] + [_ci(c["curve"]["mean"][i]) for c in configs] for i, s in enumerate(res["steps"])]
        md += _table(["step"] + [c["label"] for c in configs], rows)
        md += ["### Wall clock per training step", "",
               "*Mean over seeds. Whole run: checkpoint wall time / steps (random-action steps and evaluations "
               "included). Learning phase: log.csv, steps after the random steps. Updates/s: median of the log "
               "windows, update time only. Comparable only between runs on the same machine under the same load.*",
               ""]
        rows = [[c["label"], _n(c["wall_clock"]["s_per_step"]), _n(c["wall_clock"]["s_per_step_learning"]),
                 _n(c["wall_clock"]["updates_per_s"])] for c in configs]
        md += _table(["configuration", "s / step (whole run)", "s / step (learning phase)", "updates / s"], rows)
        fc = plot_curves(task, res, out / f"curves_{_safe(task)}.png", level)
        ff = plot_final(task, res, out / f"final_{_safe(task)}.png", level)
        pngs += [fc, ff]
        md += [f"![learning curves {task}]({fc.name})", "", f"![final return {task}]({ff.name})", ""]
    if gap_docs:
        gmd, gdata = gap_tables(gap_docs)
        md += ["## Amortization gap over training", ""] + gmd
        analysis = dict(analysis, gap=gdata)
    atomic_write_json(out / JSON_NAME, dict(analysis, source=source, command=command))
    path = out / MD_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(md).rstrip() + "\n")
    tmp.replace(path)
    return path


__all__ = ["JSON_NAME", "MD_NAME", "gap_tables", "plot_curves", "plot_final", "write_analysis"]
