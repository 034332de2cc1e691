"""``optbench report RUN`` and ``optbench compare RUN_A RUN_B``: self-contained Markdown reports.

A report directory holds ``report.md`` and the PNGs it shows, nothing else, so it can be
committed or attached as it is. It contains every table and plot of the run (the summary
tables of ``optbench show`` and the anytime plots of ``optbench run``), and the analyses
that apply to the run:

* fixed-target statistics (:mod:`optbench.metrics.fixed_target`): success rates and aRT
  with bootstrap intervals, ECDF plots against iterations, wall clock and Q-evaluations;
* amortization gap (:mod:`optbench.metrics.gap`) of every optimizer's stored final estimates;
* mode coverage (:mod:`optbench.metrics.modes`) from ``R`` fresh runs per state;
* landscapes (:mod:`optbench.reporting.landscape`) with re-run trajectories;
* exploitation checks (:mod:`optbench.metrics.exploitation`), with the Monte Carlo value
  check for package objectives that store MuJoCo states.

Experiments write, reports read: everything here is read from the run directory. The
analyses that need the objective or an optimizer run (all but the fixed-target statistics)
are computed and stored by ``optbench analyze RUN`` (:mod:`optbench.runner.analysis`); this
module never builds an objective or imports an optimizer. A run that has not been analysed
(or only in part) is reported with what is stored: each section names the units it lacks and
the ``optbench analyze`` command that computes them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optbench.metrics.bootstrap import DEFAULT_LEVEL, bootstrap, bootstrap_difference  # noqa: E402
from optbench.metrics.exploitation import ExploitationStats  # noqa: E402
from optbench.metrics.fixed_target import (ECDF_TARGETS, TABLE_TARGETS, Runtimes, anytime_interval,  # noqa: E402
                                           art_interval, ecdf_steps, final_norm_interval, runtimes,
                                           success_interval)
from optbench.metrics.gap import GapResult  # noqa: E402
from optbench.metrics.modes import DEFAULT_THRESHOLD, ModeCoverage, cluster_runs, mode_coverage, pairwise_action_distance  # noqa: E402
from optbench.metrics.summary import normalized  # noqa: E402
from optbench.reporting.landscape import landscape_figure  # noqa: E402
from optbench.reporting.plots import plot_run  # noqa: E402
from optbench.reporting.tables import markdown_table, objective_summaries, objective_table  # noqa: E402
from optbench.runner.store import slug  # noqa: E402
from optbench.runner.stored import ANALYSES, RunData, RunError, expected_units, load_run, read_analysis  # noqa: E402

ReportError = RunError
"""A run directory that cannot be reported on (missing or inconsistent files)."""


# ====================================================================== options
@dataclass
class ReportOptions:
    """Which sections the report shows and how it summarizes them (all sections on by default).

    Nothing here changes what was computed: the analyses' own settings (Adam's steps, runs per
    state, grid resolution, rollouts) are ``optbench analyze`` options, stored with its results."""

    fixed_target: bool = True
    gap: bool = True
    modes: bool = True
    mode_threshold: float = DEFAULT_THRESHOLD
    landscapes: bool = True
    exploitation: bool = True
    rollouts: bool = True
    resamples: int = 2000
    level: float = DEFAULT_LEVEL
    seed: int = 0

    def wants(self, kind: str) -> bool:
        """Whether the report shows analysis ``kind`` (one of :data:`~optbench.runner.stored.ANALYSES`)."""
        if kind == "rollouts":
            return self.exploitation and self.rollouts
        return bool(getattr(self, kind))


def _colors(labels: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _bk(opts: ReportOptions) -> dict[str, Any]:
    return {"resamples": opts.resamples, "level": opts.level, "seed": opts.seed}


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _g(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits}g}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.2e}"


def _safe(name: str) -> str:
    return slug(name).replace("/", "_")


# ====================================================================== fixed target
def fixed_target_runtimes(run: RunData, objective: str, targets=ECDF_TARGETS) -> dict[str, Runtimes]:
    start = run.start(objective)
    ref, _ = run.reference(objective)
    return {g.optimizer: runtimes(g, start, ref, targets) for g in run.mine(objective)}


def fixed_target_markdown(run: RunData, objective: str, opts: ReportOptions) -> str:
    """Tables: final normalized J, anytime normalized J, success and aRT per target, with intervals."""
    bk = _bk(opts)
    rts = fixed_target_runtimes(run, objective, TABLE_TARGETS)
    start = run.start(objective)
    ref, known = run.reference(objective)
    groups = {g.optimizer: g for g in run.mine(objective)}
    budgets = sorted({b for b in (1, 10, 100) if any(b <= g.budget for g in groups.values())})
    head = ["optimizer", "budget", "final norm. J"] + [f"norm. J @{b}" for b in budgets]
    rows = []
    for lab, rt in rts.items():
        g = groups[lab]
        row = [lab, str(g.budget), final_norm_interval(rt, **bk).fmt()]
        for b in budgets:
            iv = anytime_interval(g, start, ref, b, **bk)
            row.append(iv.fmt() if iv is not None else "")
        rows.append(row)
    out = [f"*Anytime: normalized J = (J − J_start)/(J_ref − J_start), J_ref = "
           f"{'known optimum' if known else 'best found by any optimizer'}; mean over states and seeds "
           f"[{opts.level:.0%} bootstrap interval over states].*\n", _md_table(head, rows)]
    head = ["optimizer"] + [f"reached {f:.0%}" for f in TABLE_TARGETS] + [f"aRT it → {f:.0%}" for f in TABLE_TARGETS]
    rows = []
    for lab, rt in rts.items():
        rows.append([lab] + [success_interval(rt, k, **bk).fmt(percent=True) for k in range(len(TABLE_TARGETS))]
                    + [art_interval(rt, k, "iterations", **bk).fmt() for k in range(len(TABLE_TARGETS))])
    out += ["\n*Fixed target: share of (state, seed) runs that reached the target within their budget, and aRT "
            "(COCO average runtime: all iterations spent, unsuccessful runs counting their budget, per success) "
            "in iterations; ∞ = no success.*\n", _md_table(head, rows)]
    k = list(TABLE_TARGETS).index(0.9) if 0.9 in TABLE_TARGETS else len(TABLE_TARGETS) - 1
    f = TABLE_TARGETS[k]
    head = ["optimizer", f"aRT Q-evals/state → {f:.0%}", f"aRT FLOPs/state → {f:.0%}", f"aRT seconds → {f:.0%}",
            "Q-evals/state, whole budget", "seconds, whole budget"]
    rows = []
    for lab, rt in rts.items():
        flops = art_interval(rt, k, "flops", **bk).fmt() if "flops" in rt.runtime else "n/a"
        rows.append([lab, art_interval(rt, k, "q_evals", **bk).fmt(), flops, art_interval(rt, k, "seconds", **bk).fmt(),
                     bootstrap(rt.budget["q_evals"], "mean", **bk).fmt(), _g(float(rt.budget["seconds"].mean()))])
    out += ["\n*Costs to the target: Q-evaluations and network FLOPs per state (ledger / states; FLOPs counted from the "
            "network shapes, n/a where the run did not record them) and wall-clock seconds of the lockstep run (all "
            "states together, as it ran, warm-up excluded). Runtimes are interpolated log-linearly between scored "
            "iterations and rounded up.*\n", _md_table(head, rows)]
    return "\n".join(out)


def plot_ecdfs(run: RunData, path: Path, targets=ECDF_TARGETS) -> Path:
    """One row per objective, columns: ECDF over (state, seed, target) against iterations,
    wall clock (lockstep run) and Q-evaluations per state."""
    colors = _colors(run.labels)
    units = [("iterations", "iterations"), ("seconds", "wall clock of the lockstep run [s]"),
             ("q_evals", "Q-evaluations per state")]
    if any(g.flops is not None for g in run.groups.values()):
        units.append(("flops", "network FLOPs per state"))
    n = len(run.objectives)
    fig, axes = plt.subplots(n, len(units), figsize=(5 * len(units), 3.6 * n), squeeze=False)
    for row, name in enumerate(run.objectives):
        all_rts = fixed_target_runtimes(run, name, targets)
        _, known = run.reference(name)
        for col, (unit, xlabel) in enumerate(units):
            ax = axes[row, col]
            rts = {lab: rt for lab, rt in all_rts.items() if unit in rt.runtime}  # optimizers that recorded the unit
            pos = [r.runtime[unit][np.isfinite(r.runtime[unit]) & (r.runtime[unit] > 0)] for r in rts.values()]
            pos += [r.budget[unit][r.budget[unit] > 0].ravel() for r in rts.values()]
            allpos = np.concatenate(pos) if pos else np.array([1.0])
            left = (allpos.min() if len(allpos) else 1.0) / 2
            for lab, rt in rts.items():
                upto = float(rt.budget[unit].max())
                xs, ys = ecdf_steps(rt.runtime[unit], upto)
                xs = np.maximum(xs, left)
                xs = np.concatenate([[left], xs])
                ys = np.concatenate([[ys[0] if xs[1] <= left else 0.0], ys])
                ax.step(xs, ys, where="post", color=colors[lab], lw=1.6, label=lab)
                ax.plot(xs[-1:], ys[-1:], "x", color=colors[lab], ms=7, mew=1.5)
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("share of (state, target) pairs")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            ax.set_title(f"{name} (J_ref: {'optimum' if known else 'best found'})", fontsize=9)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), fontsize=8, frameon=False)
    fig.suptitle(f"{run.config['suite']}: runtime ECDFs, targets {targets[0]:g}…{targets[-1]:g} of J_ref − J_start "
                 f"({len(targets)} per state); × = end of budget", fontsize=10)
    fig.tight_layout(rect=(0, 0.03 + 0.02 * math.ceil(len(names) / 6) / max(1, n) * 2, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ====================================================================== gap, modes, landscapes, exploitation
ANALYZE_HINT = "run `optbench analyze {root}` to compute it"


def _unit(run: RunData, kind: str, objective: str, optimizer: str | None = None) -> dict[str, Any] | None:
    unit = read_analysis(run.store.root, kind, objective, optimizer)
    return None if unit is None else unit["result"]


def _missing_note(run: RunData, kind: str, missing: list[str]) -> str:
    """One line naming the units of ``kind`` that ``optbench analyze`` has not stored (yet)."""
    if not missing:
        return ""
    return (f"*Not analysed yet ({kind}): {', '.join(missing)}; {ANALYZE_HINT.format(root=run.store.root)}.*")


def missing_analyses(run: RunData, opts: "ReportOptions") -> list[str]:
    """``kind: objective · optimizer`` of every analysis unit the report would show but the run lacks."""
    kinds = [k for k in ANALYSES if opts.wants(k)]
    return [f"{k}: {o}" + (f" · {lab}" if lab else "") for k, o, lab in expected_units(run, kinds)
            if read_analysis(run.store.root, k, o, lab) is None]


def gap_section(run: RunData, objective: str, opts: ReportOptions) -> tuple[dict[str, GapResult], str]:
    """The stored amortization gaps of ``objective`` (:mod:`optbench.metrics.gap`) and their table."""
    start, (ref, _) = run.start(objective), run.reference(objective)
    out: dict[str, GapResult] = {}
    missing = []
    for g in run.mine(objective):
        res = _unit(run, "gap", objective, g.optimizer)
        if res is None:
            missing.append(g.optimizer)
            continue
        for row in res["rows"]:
            out[row["label"]] = GapResult(row["label"], np.asarray(row["before"], dtype=np.float64),
                                          np.asarray(row["after"], dtype=np.float64), res["lr"], res["steps"],
                                          res["samples"])
    bk = _bk(opts)
    head = ["optimizer", "J before", "J after Adam", "gap", "gap / (J_ref − J_start)"]
    rows = [[lab, _g(float(r.before.mean())), _g(float(r.after.mean())), r.interval(**bk).fmt(),
             r.normalized_interval(start, ref, **bk).fmt()] for lab, r in out.items()]
    text = _md_table(head, rows) if rows else ""
    note = _missing_note(run, "gap", missing)
    return out, text + (("\n" if text else "") + note if note else "")


def _panel_grid(n: int, height: float, cols: int = 3):
    """``n`` panels in rows of at most ``cols``; unused panels hidden."""
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def plot_gaps(gaps: dict[str, dict[str, Any]], labels: list[str], path: Path, opts: ReportOptions) -> Path:
    gaps = {k: v for k, v in gaps.items() if v}
    colors = _colors(labels)
    fig, axes = _panel_grid(len(gaps), 0.45 * max(len(v) for v in gaps.values()) + 1.6)
    for ax, (name, res) in zip(axes.flat, gaps.items()):
        labs = list(res)
        ivs = [res[lab].interval(**_bk(opts)) for lab in labs]
        y = np.arange(len(labs))[::-1]
        est = np.array([iv.estimate for iv in ivs])
        err = np.array([[iv.estimate - iv.low for iv in ivs], [iv.high - iv.estimate for iv in ivs]])
        # a learned optimizer's "@K (trained budget)" row takes its optimizer's colour
        ax.barh(y, est, xerr=err, color=[colors.get(lab, colors.get(lab.split(" @")[0])) for lab in labs], alpha=0.85,
                capsize=3)
        ax.set_yticks(y, labs, fontsize=8)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xlabel("scored J gained by Adam from the final estimate")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="x", lw=0.4)
    r0 = next(iter(next(iter(gaps.values())).values()))
    fig.suptitle(f"amortization gap: Adam lr {r0.lr:g}, {r0.steps} steps, {r0.samples} samples "
                 f"(mean over states, {opts.level:.0%} bootstrap interval)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def modes_section(run: RunData, objective: str, opts: ReportOptions) -> tuple[dict[str, ModeCoverage], str]:
    """Mode coverage of ``objective`` from the stored replica runs (clustered here, at ``opts.mode_threshold``)."""
    out: dict[str, ModeCoverage] = {}
    missing = []
    setup = None
    for g in run.mine(objective):
        res = _unit(run, "modes", objective, g.optimizer)
        if res is None:
            missing.append(g.optimizer)
            continue
        setup = setup or res
        out[g.optimizer] = mode_coverage(np.asarray(res["params"], dtype=np.float64),
                                         np.asarray(res["scores"], dtype=np.float64),
                                         threshold=opts.mode_threshold, optimizer=g.optimizer)
    note = _missing_note(run, "modes", missing)
    if setup is None:
        return out, note
    n, runs, random = int(setup["states"]), int(setup["runs"]), bool(setup["random_starts"])
    known = None
    rec = run.records[objective]
    if "optimum" in rec and "mode_params" in rec["optimum"]:
        mp = np.asarray(rec["optimum"]["mode_params"], dtype=np.float64)[:n]  # [n,K,2A]
        A = mp.shape[-1] // 2
        d = pairwise_action_distance(mp[..., :A].transpose(1, 0, 2))  # [n,K,K]
        known = np.array([cluster_runs(d[b], opts.mode_threshold * 2 * math.sqrt(A)).max() + 1 for b in range(n)])
    bk = _bk(opts)
    head = ["optimizer", "runs", "mean distance / 2√|A|", "modes", "share in best mode", "J of best mode",
            "J of other modes"]
    rows = []
    for lab, mc in out.items():
        best = np.array([v[0] for v in mc.mode_values])
        other = [x for v in mc.mode_values for x in v[1:]]
        rows.append([lab, str(mc.runs), bootstrap(mc.mean_distance, "mean", **bk).fmt(),
                     bootstrap(mc.n_modes.astype(float), "mean", **bk).fmt(),
                     bootstrap(mc.best_share, "mean", **bk).fmt(percent=True), _g(float(best.mean())),
                     _g(float(np.mean(other))) if other else "—"])
    text = (f"*{runs} runs per state from different random streams"
            f"{' and random starts (tanh μ ~ U(−0.9, 0.9), σ = 1)' if random else ' from the common start'}"
            f", first {n} states; budget as in the run. Modes: complete-linkage clusters of tanh μ at "
            f"{opts.mode_threshold:g} · 2√|A|; J per mode: mean scored J of its runs (best: averaged over states). "
            f"Mean over states [{opts.level:.0%} bootstrap interval].*")
    if known is not None:
        text += f" *Known distinct local optima per state at this threshold: mean {known.mean():.3g} (min {known.min()}, max {known.max()}).*"
    text += "\n\n" + _md_table(head, rows)
    return out, text + ("\n" + note if note else "")


def plot_modes(modes: dict[str, dict[str, Any]], labels: list[str], path: Path) -> Path:
    modes = {k: v for k, v in modes.items() if v}
    colors = _colors(labels)
    fig, axes = _panel_grid(len(modes), 0.45 * max(len(v) for v in modes.values()) + 1.8)
    rng = np.random.default_rng(0)
    for ax, (name, res) in zip(axes.flat, modes.items()):
        labs = list(res)
        for k, lab in enumerate(labs[::-1]):
            d = res[lab].mean_distance
            ax.scatter(d, k + rng.uniform(-0.18, 0.18, len(d)), s=12, color=colors[lab], alpha=0.7)
            ax.plot([d.mean()] * 2, [k - 0.3, k + 0.3], color="k", lw=1.2)
        ax.set_yticks(range(len(labs)), labs[::-1], fontsize=8)
        ax.set_xlim(-0.01, max(0.05, max(res[lab].mean_distance.max() for lab in labs) * 1.1))
        ax.set_xlabel("mean pairwise distance of tanh μ between runs / 2√|A|")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="x", lw=0.4)
    fig.suptitle("mode coverage: one dot per state, bar = mean over states (direct: exactly 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def landscape_section(run: RunData, objective: str, opts: ReportOptions, out_dir: Path) -> tuple[Path | None, str]:
    """The stored landscape of ``objective`` drawn with the run's final estimates, and its caption."""
    res = _unit(run, "landscapes", objective)
    if res is None:
        return None, _missing_note(run, "landscapes", [objective])
    if "skipped" in res:
        return None, f"*Skipped: {res['skipped']}.*"
    groups = run.mine(objective)
    state, dims, base_label = int(res["state"]), (int(res["dims"][0]), int(res["dims"][1])), res["base"]
    direct = None
    for g in groups:
        if g.meta.get("amortized") and not g.meta.get("stochastic"):
            direct = g.final_params[0, state]
    trajectories = {k: np.asarray(v, dtype=np.float64) for k, v in res["trajectories"].items()}
    rec = run.records[objective]
    modes = None
    if "optimum" in rec and "mode_params" in rec["optimum"]:
        modes = np.asarray(rec["optimum"]["mode_params"], dtype=np.float64)[state]
    path = out_dir / f"landscape_{_safe(objective)}.png"
    landscape_figure(path, np.asarray(res["xs"]), np.asarray(res["ys"]), np.asarray(res["values"], dtype=np.float64),
                     dims, title=f"{objective}, state {state}: scored J over the means of actions {dims[0]} and "
                     f"{dims[1]}", trajectories=trajectories,
                     finals={g.optimizer: g.final_params[0, state] for g in groups}, direct=direct, modes=modes,
                     colors=_colors(run.labels))
    text = (f"State {state} (where the optimizers' final mean actions disagree most), action dimensions {dims[0]} "
            f"and {dims[1]} (largest spread of final mean actions); other coordinates of λ held at the final estimate "
            f"of **{base_label}** (the best at this state). Axes: pre-tanh means μ (mean action tanh μ on the top axis), "
            "ranges covering every drawn estimate (at most ±6; points beyond are drawn at the edge). "
            "Filled dots: the run's final estimates (seed "
            f"{int(groups[0].meta.get('seeds', [0])[0])}); lines: each optimizer re-run on this state alone with the "
            "same seed and budget (a re-run on one state draws different noise than the batched run, so its end, "
            "the open ring, need not coincide with the dot); trajectories are projections of the full λ path. "
            + ("White star: the direct estimate. " if direct is not None else "")
            + ("Black plus: the exactly known local optima. " if modes is not None else ""))
    return path, text


def _stats(record: dict[str, Any]) -> ExploitationStats:
    return ExploitationStats(**{k: np.asarray(v, dtype=np.float64) for k, v in record.items()})


def exploitation_section(run: RunData, objective: str, opts: ReportOptions) -> str:
    """The stored exploitation statistics and Monte Carlo value checks of ``objective``."""
    bk = _bk(opts)
    res = _unit(run, "exploitation", objective)
    text = []
    if res is None:
        text.append(_missing_note(run, "exploitation", [objective]) + "\n")
    else:
        start_stats = _stats(res["start"])
        head = ["optimizer", "|Q₁ − Q₂| at its actions", "mean Q̂", "saturated actions |a| > 0.99",
                "saturated mean actions"]
        rows = [["(start μ = 0, σ = 1)", bootstrap(start_stats.disagreement, "mean", **bk).fmt(),
                 _g(float(start_stats.q_hat.mean())), bootstrap(start_stats.saturated, "mean", **bk).fmt(percent=True),
                 bootstrap(start_stats.mean_saturated, "mean", **bk).fmt(percent=True)]]
        for lab, rec in res["optimizers"].items():
            s = _stats(rec)
            rows.append([lab, bootstrap(s.disagreement, "mean", **bk).fmt(), _g(float(s.q_hat.mean())),
                         bootstrap(s.saturated, "mean", **bk).fmt(percent=True),
                         bootstrap(s.mean_saturated, "mean", **bk).fmt(percent=True)])
        ens = int(res["ensemble"])
        text += [f"*Final policies (first seed) on the scoring draws: ensemble disagreement (mean pairwise |Qᵢ − Qⱼ|, "
                 f"{ens}-member ensemble{'; 0 by construction' if ens == 1 else ''}), mean Q̂ for scale, and saturation. "
                 f"Mean over states [{opts.level:.0%} bootstrap interval].*\n", _md_table(head, rows)]
    if opts.rollouts:
        text += _rollouts_text(run, objective, opts)
    return "\n".join(text)


def _rollouts_text(run: RunData, objective: str, opts: ReportOptions) -> list[str]:
    wanted = [(o, lab) for k, o, lab in expected_units(run, ["rollouts"]) if o == objective]
    if not wanted:
        return []  # not an objective from an agent package: nothing to roll out
    bk = _bk(opts)
    head = ["optimizer", "Q̂(s, tanh μ)", "soft return G", "Q̂ − G", "restore error"]
    rows, missing, setup = [], [], None
    for _, lab in wanted:
        res = _unit(run, "rollouts", objective, lab)
        if res is None:
            missing.append(lab)
            continue
        if "unavailable" in res:
            return [f"\n*Monte Carlo value check not available: {res['unavailable']}.*\n"]
        setup = setup or res
        q_hat, returns = np.asarray(res["q_hat"], dtype=np.float64), np.asarray(res["returns"], dtype=np.float64)
        rows.append([lab, _g(float(q_hat.mean())), _g(float(returns.mean())),
                     bootstrap(q_hat - returns.mean(1), "mean", **bk).fmt(),
                     _g(float(np.max(res["restore_error"])), 2)])
    out = []
    if setup is not None:
        k, horizon, runs = int(setup["states"]), int(setup["horizon"]), int(setup["rollouts"])
        out = [f"\n*Monte Carlo value check at the first {k} states: the simulator restored to the stored "
               f"MuJoCo state, the optimized mean action taken, then the agent's direct policy (sampled) for "
               f"up to {horizon} steps, {runs} rollouts per state; G is the discounted "
               "soft return (entropy bonus from the second step, γ^H·V̂ tail from the same Q when not "
               "terminated). Q̂ − G > 0: Q overestimates the optimized action; compare an optimizer with "
               "direct's own error: an error shared by every optimizer is the Q-function's overall bias (e.g. a "
               "critic that lags the policy's returns early in training), not exploitation. Restore error: max "
               "|observation after restoring − stored state| (float32 rounding). Few states and rollouts: a "
               "coarse check.*\n", _md_table(head, rows)]
    if missing:
        out.append(_missing_note(run, "rollouts", missing))
    return out


# ====================================================================== the report
def _header(run: RunData, title: str) -> list[str]:
    cfg, env = run.config, run.environment
    s = cfg.get("settings", {})
    lines = [f"# {title}", "",
             f"Run `{run.store.root}` (config {run.store.run_info.get('config_hash', '?')}): suite **{cfg['suite']}**, "
             f"{len(run.objectives)} objectives, {len(run.labels)} optimizers, seeds {s.get('seeds')}, "
             f"{s.get('states')} states per objective, scored on {s.get('score_samples')} fixed draws per state "
             f"(schedule `{s.get('score_at')}`).", ""]
    if env:
        v = env.get("versions", {})
        lines += [f"Machine: {env.get('cpu', '?')}, {env.get('cores', '?')} cores, torch {v.get('torch')} "
                  f"({env.get('torch_threads')} threads), Python {env.get('python')}; optbench {v.get('optbench')}.", ""]
    rows = [[o["label"], f"`{o['spec']}`", str(o["iterations"])] for o in cfg["optimizers"]]
    lines += [_md_table(["optimizer", "spec", "iterations"], rows)]
    return lines


CONVENTIONS = """\
**Conventions.** J is the soft policy objective scored on fixed per-state draws (the same for every
optimizer). J_start: the common start μ = 0, σ = 1. J_ref: the known optimum (scored) when the objective
has one, else the best scored J any optimizer of this run reached at any budget. Targets are fractions of
J_ref − J_start. Intervals are {level:.0%} percentile bootstrap intervals over states ({resamples} resamples,
seeded), so they describe the spread over states, not over re-runs of the benchmark."""


def _gap_caption(run: RunData, opts: ReportOptions) -> str:
    """The gap section's caption, with Adam's settings as ``optbench analyze`` stored them."""
    stored = next((r for k, o, lab in expected_units(run, ["gap"]) if (r := _unit(run, k, o, lab)) is not None), None)
    how = (f"Adam (lr {stored['lr']:g}, {stored['steps']} steps, {stored['samples']} samples)" if stored is not None
           else "Adam")
    return (f"*From each optimizer's stored final estimate (every seed), {how} and the scored improvement; per state "
            f"averaged over seeds, mean over states [{opts.level:.0%} bootstrap interval]. ≈ 0: already at a local "
            "optimum. A learned optimizer run past the budget K it was trained for also has a row '@K (trained "
            "budget)': the gap from its K-iteration estimate, the one the source paper measures (seed 000, Fig. 6).*")


def write_report(run_dir: str | Path, out_dir: str | Path, opts: ReportOptions | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir`` (created); returns the Markdown path.

    Reads the run directory only. Analyses ``optbench analyze`` has not stored are named in
    their sections (and passed to ``log`` in one line), the rest of the report is complete."""
    opts = opts or ReportOptions()
    log = log or (lambda msg: None)
    tic = time.perf_counter()
    run = load_run(run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    md = _header(run, f"optbench report: {run.config['suite']}")
    md += [CONVENTIONS.format(level=opts.level, resamples=opts.resamples), ""]

    md += ["## Results", ""]
    for obj, known, summaries in objective_summaries(run.store):
        md += [markdown_table(objective_table(obj, known, summaries)), ""]
    for p in plot_run(run.store, out):
        md += [f"![{p.stem}]({p.name})", ""]

    if opts.fixed_target:
        md += ["## Fixed-target statistics", ""]
        for name in run.objectives:
            md += [f"### {name}", "", fixed_target_markdown(run, name, opts), ""]
        p = plot_ecdfs(run, out / "ecdf.png")
        md += [f"![runtime ECDFs]({p.name})", "",
               f"*ECDF over (state, seed, target) triples, targets {', '.join(f'{t:g}' for t in ECDF_TARGETS)} of "
               "J_ref − J_start: the share reached within a budget of iterations, wall-clock seconds (lockstep run of "
               "all states) or Q-evaluations per state; × marks the end of an optimizer's budget, and runtimes of 0 (the start, or "
               "a direct estimate that costs no Q-evaluation) sit at the left edge. A perfect optimizer is a step to 1 at "
               "its first iteration.*", ""]

    if opts.gap:
        md += ["## Amortization gap", "", _gap_caption(run, opts), ""]
        gaps = {}
        for name in run.objectives:
            gaps[name], table = gap_section(run, name, opts)
            md += [f"### {name}", "", table, ""]
        if any(gaps.values()):
            p = plot_gaps(gaps, run.labels, out / "gap.png", opts)
            md += [f"![amortization gap]({p.name})", ""]
    if opts.modes:
        md += ["## Mode coverage", ""]
        modes = {}
        for name in run.objectives:
            modes[name], table = modes_section(run, name, opts)
            md += [f"### {name}", "", table, ""]
        if any(modes.values()):
            p = plot_modes(modes, run.labels, out / "modes.png")
            md += [f"![mode coverage]({p.name})", ""]
    if opts.landscapes:
        md += ["## Landscapes", ""]
        for name in run.objectives:
            p, text = landscape_section(run, name, opts, out)
            md += [f"### {name}", ""]
            if p is not None:
                md += [f"![landscape {name}]({p.name})", ""]
            md += [text, ""]
    if opts.exploitation:
        md += ["## Exploitation checks", ""]
        for name in run.objectives:
            md += [f"### {name}", "", exploitation_section(run, name, opts), ""]
    missing = missing_analyses(run, opts)
    if missing:
        log(f"{len(missing)} analysis units not stored (named in the report); run `optbench analyze {run.store.root}`")
    md += [f"---\n*Generated by `optbench report` in {time.perf_counter() - tic:.0f} s.*", ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


# ====================================================================== compare
def _same_states(a: RunData, b: RunData, name: str) -> bool:
    sa, sb = a.start(name), b.start(name)
    return sa.shape == sb.shape and np.allclose(sa, sb, rtol=1e-6, atol=1e-6)


def compare_runs(run_a: str | Path, run_b: str | Path, out_dir: str | Path | None = None,
                 opts: ReportOptions | None = None) -> tuple[str, Path | None]:
    """Side-by-side Markdown of two runs on their common objectives; with ``out_dir``, also
    ``compare.md`` and ``compare_ecdf.png`` there. Returns the Markdown and its path.

    Per objective both runs are normalized with one ``J_ref``: the known optimum, else the best
    any optimizer of either run reached (when both runs scored the same states; otherwise each
    run's own). Δ is B − A of the mean final normalized J, with a paired bootstrap interval over
    states when the states are the same, else an unpaired one.
    """
    opts = opts or ReportOptions()
    bk = _bk(opts)
    a, b = load_run(run_a), load_run(run_b)
    common = [n for n in a.objectives if n in b.objectives]
    md = ["# optbench compare", "", f"A: `{a.store.root}` (suite {a.config['suite']}, "
          f"config {a.store.run_info.get('config_hash')}); B: `{b.store.root}` (suite {b.config['suite']}, "
          f"config {b.store.run_info.get('config_hash')}).", ""]
    if not common:
        raise ReportError(f"runs {a.store.root} and {b.store.root} have no objective in common")
    only = sorted(set(a.objectives) ^ set(b.objectives))
    if only:
        md += [f"Objectives in only one run (left out): {', '.join(only)}.", ""]
    per_objective = []
    for name in common:
        paired = _same_states(a, b, name)
        ga, gb = a.mine(name), b.mine(name)
        ref_a, known = a.reference(name)
        if known:
            ref_b = b.reference(name)[0]
        elif paired:
            ref_a = ref_b = np.maximum(ref_a, b.reference(name)[0])
        else:
            ref_b = b.reference(name)[0]
        labels = [lab for lab in a.labels if any(g.optimizer == lab for g in ga)]
        labels += [lab for lab in b.labels if any(g.optimizer == lab for g in gb) and lab not in labels]
        rows = []
        for lab in labels:
            ca = a.groups.get((name, lab))
            cb = b.groups.get((name, lab))
            na = normalized(ca.scores[:, -1], a.start(name), ref_a).mean(0) if ca is not None else None
            nb = normalized(cb.scores[:, -1], b.start(name), ref_b).mean(0) if cb is not None else None
            fa = bootstrap(na, "mean", **bk).fmt() if na is not None else "—"
            fb = bootstrap(nb, "mean", **bk).fmt() if nb is not None else "—"
            if na is not None and nb is not None:
                d = (bootstrap(nb - na, "mean", **bk) if paired and na.shape == nb.shape
                     else bootstrap_difference(na, nb, **bk))
                delta = d.fmt()
            else:
                delta = "—"
            ms = lambda g: _g(1e3 * float(g.steady_seconds().mean()), 3) if g is not None else "—"  # noqa: E731
            qe = lambda g: _g(float(g.q_evals.mean() / g.scores.shape[-1])) if g is not None else "—"  # noqa: E731
            rows.append([lab, ca.budget if ca is not None else "—", cb.budget if cb is not None else "—", fa, fb, delta,
                         ms(ca), ms(cb), qe(ca), qe(cb)])
        head = ["optimizer", "budget A", "budget B", "final norm. J, A", "final norm. J, B", "Δ (B − A)",
                "ms/it A", "ms/it B", "Q/it/state A", "Q/it/state B"]
        md += [f"## {name}", "", f"*J_ref: {'known optimum' if known else 'best found in either run' if paired else 'each run its own best'}; "
               f"states {'identical (paired Δ)' if paired else 'differ (unpaired Δ)'}; [{opts.level:.0%} bootstrap "
               "interval over states].*", "", _md_table(head, [[str(c) for c in r] for r in rows]), ""]
        per_objective.append((name, ga, gb, ref_a, ref_b))
    path = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        p = _plot_compare_ecdf(a, b, per_objective, out / "compare_ecdf.png")
        md += [f"![ECDF, A solid, B dashed]({p.name})", ""]
        path = out / "compare.md"
        path.write_text("\n".join(md))
    return "\n".join(md), path


def _plot_compare_ecdf(a: RunData, b: RunData, items, path: Path) -> Path:
    labels = list(dict.fromkeys(a.labels + b.labels))
    colors = _colors(labels)
    n = len(items)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 3.8 * rows), squeeze=False)
    for ax, (name, ga, gb, ref_a, ref_b) in zip(axes.flat, items):
        for run, groups, ref, ls in ((a, ga, ref_a, "-"), (b, gb, ref_b, "--")):
            for g in groups:
                rt = runtimes(g, run.start(name), ref, ECDF_TARGETS)
                xs, ys = ecdf_steps(rt.runtime["iterations"], float(g.budget))
                xs = np.maximum(xs, 0.7)
                ax.step(np.concatenate([[0.7], xs]), np.concatenate([[ys[0] if xs[0] <= 0.7 else 0.0], ys]),
                        where="post", color=colors[g.optimizer], ls=ls, lw=1.4,
                        label=g.optimizer if ls == "-" or g.optimizer not in {x.optimizer for x in ga} else None)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("iterations")
        ax.set_ylabel("share of (state, target) pairs")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, max(1, len(names))), fontsize=8, frameon=False)
    fig.suptitle("runtime ECDFs: run A solid, run B dashed", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["ReportError", "ReportOptions", "RunData", "compare_runs", "load_run", "missing_analyses",
           "write_report"]
