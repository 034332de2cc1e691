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

The analyses that need the objective itself (all but the fixed-target statistics) rebuild
it from the run's stored configuration with :func:`rebuild_run`, and check that the rebuilt
objective scores the common start exactly as the stored run did.
"""

from __future__ import annotations

import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from optbench.metrics.bootstrap import DEFAULT_LEVEL, bootstrap, bootstrap_difference  # noqa: E402
from optbench.metrics.fixed_target import (ECDF_TARGETS, TABLE_TARGETS, Runtimes, anytime_interval,  # noqa: E402
                                           art_interval, ecdf_steps, final_norm_interval, runtimes,
                                           success_interval)
from optbench.metrics.summary import CellGroup, group_cells, normalized, reference_values  # noqa: E402
from optbench.optimizers.base import run_optimizer  # noqa: E402
from optbench.runner.store import ResultsStore, StoreError, slug  # noqa: E402


class ReportError(ValueError):
    """A run directory that cannot be reported on (missing or inconsistent files)."""


# ====================================================================== reading a run
@dataclass
class RunData:
    """A stored run, read once: config, objective records and cell groups (in suite order)."""

    store: ResultsStore
    config: dict[str, Any]
    environment: dict[str, Any]
    records: dict[str, dict[str, Any]]
    groups: dict[tuple[str, str], CellGroup]
    objectives: list[str]  # objectives with results, suite order
    labels: list[str]  # optimizer labels, suite order

    def mine(self, objective: str) -> list[CellGroup]:
        return [self.groups[(objective, lab)] for lab in self.labels if (objective, lab) in self.groups]

    def start(self, objective: str) -> np.ndarray:
        return np.asarray(self.records[objective]["start_scores"], dtype=np.float64)

    def reference(self, objective: str) -> tuple[np.ndarray, bool]:
        return reference_values(self.records[objective], self.mine(objective))


def load_run(path: str | Path) -> RunData:
    """Open and check a run directory; every problem is one :class:`ReportError` line."""
    root = Path(path)
    if not root.exists():
        raise ReportError(f"{root} does not exist")
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory (expected an optbench run directory)")
    try:
        store = ResultsStore.open_existing(root)
        info = store.run_info
        config = info["config"]
        labels = [o["label"] for o in config["optimizers"]]
        order = list(config["objectives"])
        cells = list(store.cells())
        records = store.objectives()
    except StoreError as exc:
        raise ReportError(str(exc)) from None
    except (KeyError, TypeError):
        raise ReportError(f"{root / 'run.json'} lacks the run configuration (config.optimizers, config.objectives)") from None
    if not cells:
        raise ReportError(f"{root} holds no finished cells (nothing to report; run `optbench run` first)")
    try:
        groups = group_cells(cells)
    except (KeyError, ValueError) as exc:
        raise ReportError(f"{root}: malformed cell files ({exc})") from None
    names = []
    for name in order:
        if any(k[0] == name for k in groups):
            if name not in records:
                raise ReportError(f"{root} has cells for objective {name!r} but no objectives/{slug(name)}.json")
            names.append(name)
    labels += sorted({k[1] for k in groups} - set(labels))
    return RunData(store, config, info.get("environment", {}), records, groups, names, labels)


# ====================================================================== rebuilding objectives
@dataclass
class RebuiltRun:
    """The objectives and optimizers of a stored run, rebuilt from its configuration.

    ``objective(name)`` builds (once) and verifies an objective; ``optimizer(label, built)``
    makes an optimizer exactly as the run did (spec and suite context, e.g. a package).
    """

    suite: Any  # optbench.suites.spec.Suite
    settings: dict[str, Any]
    run: RunData
    _built: dict[str, Any] = field(default_factory=dict)

    def entry(self, name: str):
        for e in self.suite.objectives:
            if e.name == name:
                return e
        raise ReportError(f"objective {name!r} is not in the rebuilt suite {self.suite.name!r}")

    def objective(self, name: str):
        """The :class:`~optbench.suites.sources.BuiltObjective`, checked against the stored start scores."""
        from optbench.suites.sources import build_objective

        if name not in self._built:
            built = build_objective(self.entry(name), self.suite, self.settings)
            obj = built.objective
            with torch.no_grad():
                start = obj.score(obj.initial_params()).double().cpu().numpy()
            stored = self.run.start(name)
            if start.shape != stored.shape or not np.allclose(start, stored, rtol=1e-5, atol=1e-5):
                diff = np.abs(start - stored).max() if start.shape == stored.shape else float("nan")
                raise ReportError(f"rebuilt objective {name!r} does not match the stored run (start scores differ by "
                                  f"up to {diff:.3g}); pass --suite with the suite directory the run used")
            self._built[name] = built
        return self._built[name]

    def budget(self, label: str) -> int:
        for o in self.run.config["optimizers"]:
            if o["label"] == label:
                return int(o["iterations"])
        raise ReportError(f"optimizer {label!r} is not in the run's configuration")

    def spec(self, label: str) -> str:
        for o in self.run.config["optimizers"]:
            if o["label"] == label:
                return o["spec"]
        raise ReportError(f"optimizer {label!r} is not in the run's configuration")

    def optimizer(self, label: str, built):
        from optbench.optimizers.base import make_optimizer
        from optbench.suites.sources import resolve_context

        context = {}
        for e in self.suite.optimizers:
            if e.label == label:
                context = resolve_context(dict(e.context), self.suite, built.objective.name)
        return make_optimizer(self.spec(label), **{**built.context, **context})


def rebuild_run(run: RunData, suite_dir: str | Path | None = None, device: str = "cpu") -> RebuiltRun:
    """Rebuild a stored run's suite and settings so its objectives can be built again.

    The suite definition is the text stored in ``run.json`` (``config.suite_file``), so the
    objectives are those the run used even if the suite file changed since. Relative paths in
    it (agent packages) resolve against ``suite_dir`` if given, else the directory of the
    suite of the same name on the suite search path (``./suites``, the repository's
    ``suites/``), else the run directory. :meth:`RebuiltRun.objective` then verifies each
    objective by its start scores, so a wrong directory fails loudly, never silently.
    """
    from optbench.suites.spec import SuiteError, find_suite, parse_suite

    cfg = run.config
    directory: Path | None = None
    if suite_dir is not None:
        p = Path(suite_dir)
        directory = p.parent if p.is_file() else p
        if not (directory / "suite.toml").is_file() and "suite_file" not in cfg:
            raise ReportError(f"{suite_dir} is not a suite directory (no suite.toml)")
    else:
        try:
            directory = find_suite(cfg["suite"]).parent
        except (SuiteError, KeyError):
            directory = run.store.root
    text = cfg.get("suite_file")
    if text is None:
        if not (directory / "suite.toml").is_file():
            raise ReportError(f"run {run.store.root} does not store its suite definition and suite "
                              f"{cfg.get('suite')!r} was not found; pass --suite")
        text = (directory / "suite.toml").read_text()
    try:
        suite = parse_suite(tomllib.loads(text), directory / "suite.toml")
    except (tomllib.TOMLDecodeError, SuiteError) as exc:
        raise ReportError(f"the suite stored in {run.store.root / 'run.json'} cannot be parsed: {exc}") from None
    settings = {**cfg.get("settings", {}), "device": device}
    return RebuiltRun(suite, settings, run)


# ====================================================================== options
@dataclass
class ReportOptions:
    """What the report computes beyond the stored tables (all analyses on by default)."""

    fixed_target: bool = True
    gap: bool = True
    gap_lr: float = 5e-3
    gap_steps: int = 100
    gap_samples: int = 10
    modes: bool = True
    mode_runs: int = 10
    mode_states: int = 16
    mode_threshold: float = 0.1
    mode_random_starts: bool = False
    landscapes: bool = True
    landscape_resolution: int = 41
    landscape_state: int | None = None
    landscape_dims: tuple[int, int] | None = None
    exploitation: bool = True
    rollouts: bool = True
    rollout_states: int = 4
    rollout_runs: int = 3
    rollout_horizon: int = 200
    resamples: int = 2000
    level: float = DEFAULT_LEVEL
    seed: int = 0
    suite_dir: str | None = None
    device: str = "cpu"


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
def _params_for(run: RunData, objective: str, label: str) -> np.ndarray:
    return run.groups[(objective, label)].final_params  # [R,B,2A]


def gap_section(rebuilt: RebuiltRun, objective: str, opts: ReportOptions, log: Callable[[str], None]):
    from optbench.metrics.gap import amortization_gap

    run = rebuilt.run
    built = rebuilt.objective(objective)
    start, (ref, _) = run.start(objective), run.reference(objective)
    out = {}
    for g in run.mine(objective):
        log(f"gap: {objective} · {g.optimizer}")
        out[g.optimizer] = amortization_gap(built.objective, g.final_params, lr=opts.gap_lr, steps=opts.gap_steps,
                                            samples=opts.gap_samples, seed=opts.seed, optimizer=g.optimizer)
        trained = trained_budget_estimate(rebuilt, objective, g)
        if trained is not None:  # R3 as the paper measures it: from the estimate the optimizer was trained to give
            k, params = trained
            label = f"{g.optimizer} @{k} (trained budget)"
            out[label] = amortization_gap(built.objective, params, lr=opts.gap_lr, steps=opts.gap_steps,
                                          samples=opts.gap_samples, seed=opts.seed, optimizer=label)
    bk = _bk(opts)
    head = ["optimizer", "J before", "J after Adam", "gap", "gap / (J_ref − J_start)"]
    rows = [[lab, _g(float(r.before.mean())), _g(float(r.after.mean())), r.interval(**bk).fmt(),
             r.normalized_interval(start, ref, **bk).fmt()] for lab, r in out.items()]
    return out, _md_table(head, rows)


def trained_budget_estimate(rebuilt: RebuiltRun, objective: str, group) -> tuple[int, np.ndarray] | None:
    """A learned optimizer's estimate at its trained budget ``K`` (``[R, B, 2A]``), when it ran past
    ``K``: kept in the cells, or (cells stored before they kept it) recomputed by running the same
    optimizer with the same seeds for ``K`` iterations, checked against the stored scores at ``K``."""
    k = (group.meta.get("settings") or {}).get("iterations_trained")
    if not k or int(k) >= group.budget:
        return None
    k = int(k)
    if k in group.params_at:
        return k, group.params_at[k]
    built = rebuilt.objective(objective)
    params, scores = [], []
    for seed in group.meta["seeds"]:
        optimizer = rebuilt.optimizer(group.optimizer, built)
        trace = run_optimizer(optimizer, built.objective, k, seed=seed, score_at=[k], warmup=False)
        params.append(trace.final_params.double().numpy())
        scores.append(trace.scores[-1].double().numpy())
    stored = group.at(k)
    if int(group.iterations[np.searchsorted(group.iterations, k, side="right") - 1]) == k and not np.allclose(
            np.stack(scores), stored, rtol=1e-4, atol=1e-4):
        raise ReportError(f"re-running {group.optimizer!r} on {objective!r} for {k} iterations does not reproduce the "
                          "stored scores at that iteration; its trained-budget gap cannot be computed from this run")
    return k, np.stack(params)


def _panel_grid(n: int, height: float, cols: int = 3):
    """``n`` panels in rows of at most ``cols``; unused panels hidden."""
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def plot_gaps(gaps: dict[str, dict[str, Any]], labels: list[str], path: Path, opts: ReportOptions) -> Path:
    colors = _colors(labels)
    fig, axes = _panel_grid(len(gaps), 0.45 * max(len(v) for v in gaps.values()) + 1.6)
    for ax, (name, res) in zip(axes.flat, gaps.items()):
        labs = list(res)
        ivs = [res[lab].interval(**_bk(opts)) for lab in labs]
        y = np.arange(len(labs))[::-1]
        est = np.array([iv.estimate for iv in ivs])
        err = np.array([[iv.estimate - iv.low for iv in ivs], [iv.high - iv.estimate for iv in ivs]])
        ax.barh(y, est, xerr=err, color=[colors[lab] for lab in labs], alpha=0.85, capsize=3)
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


def modes_section(rebuilt: RebuiltRun, objective: str, opts: ReportOptions, log: Callable[[str], None]):
    from optbench.metrics.modes import mode_coverage, pairwise_action_distance, random_starts, run_replicas, cluster_runs

    run = rebuilt.run
    built = rebuilt.objective(objective)
    n = min(opts.mode_states, built.objective.batch_size)
    obj = built.objective.subset(list(range(n)))
    starts = random_starts(obj, opts.mode_runs, seed=opts.seed) if opts.mode_random_starts else None
    out = {}
    for g in run.mine(objective):
        log(f"modes: {objective} · {g.optimizer} ({opts.mode_runs} runs × {n} states)")
        optimizer = rebuilt.optimizer(g.optimizer, built)
        seed = int(g.meta.get("seeds", [0])[0])
        params, scores = run_replicas(optimizer, obj, rebuilt.budget(g.optimizer), opts.mode_runs, seed=seed,
                                      starts=starts)
        out[g.optimizer] = mode_coverage(params, scores, threshold=opts.mode_threshold, optimizer=g.optimizer)
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
    note = (f"*{opts.mode_runs} runs per state from different random streams"
            f"{' and random starts (tanh μ ~ U(−0.9, 0.9), σ = 1)' if opts.mode_random_starts else ' from the common start'}"
            f", first {n} states; budget as in the run. Modes: complete-linkage clusters of tanh μ at "
            f"{opts.mode_threshold:g} · 2√|A|; J per mode: mean scored J of its runs (best: averaged over states). "
            f"Mean over states [{opts.level:.0%} bootstrap interval].*")
    if known is not None:
        note += f" *Known distinct local optima per state at this threshold: mean {known.mean():.3g} (min {known.min()}, max {known.max()}).*"
    return out, note + "\n\n" + _md_table(head, rows)


def plot_modes(modes: dict[str, dict[str, Any]], labels: list[str], path: Path) -> Path:
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


def landscape_section(rebuilt: RebuiltRun, objective: str, opts: ReportOptions, out_dir: Path,
                      log: Callable[[str], None]) -> tuple[Path | None, str]:
    from optbench.reporting.landscape import (choose_dims, choose_state, grid_limits, landscape_figure,
                                              landscape_grid, record_trajectory)

    run = rebuilt.run
    built = rebuilt.objective(objective)
    obj = built.objective
    if obj.action_dim < 2:
        return None, "*Skipped: a landscape needs at least two action dimensions.*"
    groups = run.mine(objective)
    finals = np.stack([g.final_params[0] for g in groups])  # [L,B,2A] first seed
    state = opts.landscape_state if opts.landscape_state is not None else choose_state(finals)
    if not 0 <= state < obj.batch_size:
        raise ReportError(f"--landscape-state must be in 0..{obj.batch_size - 1}, got {state}")
    at_state = finals[:, state]
    dims = tuple(opts.landscape_dims) if opts.landscape_dims else choose_dims(at_state)
    final_scores = np.array([g.scores[0, -1, state] for g in groups])
    base_k = int(np.argmax(final_scores))
    base_label = groups[base_k].optimizer
    log(f"landscape: {objective} · state {state} · dims {dims}")
    sub = obj.subset([state])
    trajectories = {}
    direct = None
    for g in groups:
        if g.meta.get("amortized") and not g.meta.get("stochastic"):
            direct = g.final_params[0, state]
            continue
        seed = int(g.meta.get("seeds", [0])[0])
        try:
            opt = rebuilt.optimizer(g.optimizer, built)
            path = record_trajectory(opt, sub, rebuilt.budget(g.optimizer), seed=seed)
            trajectories[g.optimizer] = path[:, 0].double().numpy()
        except Exception as exc:  # an optimizer that cannot run on one state: draw its final estimate only
            log(f"landscape: no trajectory for {g.optimizer}: {exc}")
    rec = run.records[objective]
    modes = None
    if "optimum" in rec and "mode_params" in rec["optimum"]:
        modes = np.asarray(rec["optimum"]["mode_params"], dtype=np.float64)[state]
    drawn = [at_state] + list(trajectories.values()) + ([modes] if modes is not None else [])
    xlim, ylim = grid_limits(drawn, dims)
    xs, ys, values = landscape_grid(obj, state, at_state[base_k], dims, xlim=xlim, ylim=ylim,
                                    resolution=opts.landscape_resolution)
    path = out_dir / f"landscape_{_safe(objective)}.png"
    landscape_figure(path, xs, ys, values, dims, title=f"{objective}, state {state}: scored J over the means of actions "
                     f"{dims[0]} and {dims[1]}", trajectories=trajectories,
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


def exploitation_section(rebuilt: RebuiltRun, objective: str, opts: ReportOptions, log: Callable[[str], None]) -> str:
    from optbench.metrics.exploitation import RolloutUnavailable, exploitation_stats, rollout_check

    run = rebuilt.run
    built = rebuilt.objective(objective)
    obj = built.objective
    bk = _bk(opts)
    stats = {}
    start_stats = exploitation_stats(obj, obj.initial_params())
    for g in run.mine(objective):
        stats[g.optimizer] = exploitation_stats(obj, g.final_params[0])
    head = ["optimizer", "|Q₁ − Q₂| at its actions", "mean Q̂", "saturated actions |a| > 0.99",
            "saturated mean actions"]
    rows = [["(start μ = 0, σ = 1)", bootstrap(start_stats.disagreement, "mean", **bk).fmt(),
             _g(float(start_stats.q_hat.mean())), bootstrap(start_stats.saturated, "mean", **bk).fmt(percent=True),
             bootstrap(start_stats.mean_saturated, "mean", **bk).fmt(percent=True)]]
    for lab, s in stats.items():
        rows.append([lab, bootstrap(s.disagreement, "mean", **bk).fmt(), _g(float(s.q_hat.mean())),
                     bootstrap(s.saturated, "mean", **bk).fmt(percent=True),
                     bootstrap(s.mean_saturated, "mean", **bk).fmt(percent=True)])
    ens = getattr(obj.q, "ensemble_size", 1)
    text = [f"*Final policies (first seed) on the scoring draws: ensemble disagreement (mean pairwise |Qᵢ − Qⱼ|, "
            f"{ens}-member ensemble{'; 0 by construction' if ens == 1 else ''}), mean Q̂ for scale, and saturation. "
            f"Mean over states [{opts.level:.0%} bootstrap interval].*\n", _md_table(head, rows)]
    pkg = built.context.get("package")
    if opts.rollouts and pkg is not None:
        split = str(rebuilt.entry(objective).get("split", "benchmark"))
        k = min(opts.rollout_states, obj.batch_size)
        head = ["optimizer", "Q̂(s, tanh μ)", "soft return G", "Q̂ − G", "restore error"]
        rows = []
        try:
            for g in run.mine(objective):
                log(f"rollouts: {objective} · {g.optimizer}")
                rc = rollout_check(pkg, split, g.final_params[0], list(range(k)), beta=obj.beta,
                                   rollouts=opts.rollout_runs, horizon=opts.rollout_horizon, seed=opts.seed)
                rows.append([g.optimizer, _g(float(rc.q_hat.mean())), _g(float(rc.returns.mean())),
                             bootstrap(rc.error, "mean", **bk).fmt(), _g(float(rc.restore_error.max()), 2)])
            text += [f"\n*Monte Carlo value check at the first {k} states: the simulator restored to the stored "
                     f"MuJoCo state, the optimized mean action taken, then the agent's direct policy (sampled) for "
                     f"up to {opts.rollout_horizon} steps, {opts.rollout_runs} rollouts per state; G is the discounted "
                     "soft return (entropy bonus from the second step, γ^H·V̂ tail from the same Q when not "
                     "terminated). Q̂ − G > 0: Q overestimates the optimized action; compare an optimizer with "
                     "direct's own error: an error shared by every optimizer is the Q-function's overall bias (e.g. a "
                     "critic that lags the policy's returns early in training), not exploitation. Restore error: max "
                     "|observation after restoring − stored state| (float32 rounding). Few states and rollouts: a "
                     "coarse check.*\n", _md_table(head, rows)]
        except RolloutUnavailable as exc:
            text.append(f"\n*Monte Carlo value check not available: {exc}.*\n")
    return "\n".join(text)


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


def write_report(run_dir: str | Path, out_dir: str | Path, opts: ReportOptions | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """Write ``report.md`` and its PNGs into ``out_dir`` (created); returns the Markdown path."""
    from optbench.reporting.plots import plot_run
    from optbench.reporting.tables import markdown_table, objective_summaries, objective_table

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

    needs_objectives = opts.gap or opts.modes or opts.landscapes or opts.exploitation
    rebuilt = rebuild_run(run, opts.suite_dir, opts.device) if needs_objectives else None
    if opts.gap:
        md += ["## Amortization gap", "",
               f"*From each optimizer's stored final estimate (every seed), Adam (lr {opts.gap_lr:g}, {opts.gap_steps} "
               f"steps, {opts.gap_samples} samples) and the scored improvement; per state averaged over seeds, mean over "
               f"states [{opts.level:.0%} bootstrap interval]. ≈ 0: already at a local optimum. A learned optimizer run "
               "past the budget K it was trained for also has a row '@K (trained budget)': the gap from its K-iteration "
               "estimate, the one the source paper measures (seed 000, Fig. 6).*", ""]
        gaps = {}
        for name in run.objectives:
            gaps[name], table = gap_section(rebuilt, name, opts, log)
            md += [f"### {name}", "", table, ""]
        p = plot_gaps(gaps, run.labels, out / "gap.png", opts)
        md += [f"![amortization gap]({p.name})", ""]
    if opts.modes:
        md += ["## Mode coverage", ""]
        modes = {}
        for name in run.objectives:
            modes[name], table = modes_section(rebuilt, name, opts, log)
            md += [f"### {name}", "", table, ""]
        p = plot_modes(modes, run.labels, out / "modes.png")
        md += [f"![mode coverage]({p.name})", ""]
    if opts.landscapes:
        md += ["## Landscapes", ""]
        for name in run.objectives:
            p, text = landscape_section(rebuilt, name, opts, out, log)
            md += [f"### {name}", ""]
            if p is not None:
                md += [f"![landscape {name}]({p.name})", ""]
            md += [text, ""]
    if opts.exploitation:
        md += ["## Exploitation checks", ""]
        for name in run.objectives:
            md += [f"### {name}", "", exploitation_section(rebuilt, name, opts, log), ""]
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


__all__ = ["RebuiltRun", "ReportError", "ReportOptions", "RunData", "compare_runs", "load_run", "rebuild_run",
           "write_report"]
