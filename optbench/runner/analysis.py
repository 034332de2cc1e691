"""``optbench analyze RUN``: the analyses that run optimizers or evaluate Q, stored next to the cells.

Experiments write, reports read. The amortization gap, mode coverage, landscapes, exploitation
checks and the Monte Carlo value check each need the run's objectives rebuilt and optimizers
run again (:mod:`optbench.runner.experiments`); this module does that once and stores the
numbers, so ``optbench report`` (:mod:`optbench.reporting.report`) only reads files.

The work is split into **units**, like a run into cells: one unit per (analysis, objective,
optimizer), or per (analysis, objective) where the analysis looks at all optimizers together
(landscapes, exploitation statistics). A unit is one JSON file written atomically
(:func:`optbench.runner.stored.analysis_path`), holding its ``key`` (the analysis settings and
the stored cells it was computed from) and its ``result``. A killed analyze leaves only whole
units, and a re-run computes only the units whose file is missing or whose key differs from
the one asked for (other settings, or cells added since), so finished units are never redone.

Objectives are rebuilt from the run's stored suite definition (:func:`rebuild_run`) and checked
against the stored start scores before anything is computed.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from optbench.metrics.gap import GAP_LR, GAP_SAMPLES, GAP_STEPS
from optbench.metrics.modes import DEFAULT_RUNS
from optbench.metrics.summary import CellGroup
from optbench.optimizers.base import PolicyOptimizer, make_optimizer
from optbench.runner.drive import run_optimizer
from optbench.metrics.exploitation import RolloutUnavailable
from optbench.runner.experiments import (amortization_gap, choose_dims, choose_state, exploitation_stats, grid_limits,
                                         landscape_grid, random_starts, record_trajectory, rollout_check, run_replicas)
from optbench.locks import DirectoryLock
from optbench.runner.store import atomic_write_json, compact
from optbench.runner.stored import ANALYSES, RunData, analysis_path, expected_units, load_run, read_analysis
from optbench.suites.sources import BuiltObjective, build_objective, resolve_context
from optbench.suites.spec import Suite, SuiteError, find_suite, parse_suite


class AnalysisError(ValueError):
    """A run that cannot be analysed (its objectives cannot be rebuilt, or a bad option)."""


@dataclass(frozen=True)
class AnalysisOptions:
    """What ``optbench analyze`` computes, and with which settings (the defaults are the paper's)."""

    analyses: tuple[str, ...] = ANALYSES
    gap_lr: float = GAP_LR
    gap_steps: int = GAP_STEPS
    gap_samples: int = GAP_SAMPLES
    mode_runs: int = DEFAULT_RUNS
    mode_states: int = 16
    mode_random_starts: bool = False
    landscape_resolution: int = 41
    landscape_state: int | None = None
    landscape_dims: tuple[int, int] | None = None
    rollout_states: int = 4
    rollout_runs: int = 3
    rollout_horizon: int = 200
    seed: int = 0
    suite_dir: str | None = None
    device: str = "cpu"

    def settings(self, kind: str) -> dict[str, Any]:
        """The settings that determine the results of analysis ``kind`` (stored in each unit's key)."""
        prefix = {"gap": "gap_", "modes": "mode_", "landscapes": "landscape_", "rollouts": "rollout_"}.get(kind)
        own = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
               if prefix is not None and k.startswith(prefix)}
        return {**own, "seed": self.seed}

    def check(self) -> None:
        """One-line errors for settings no analysis can run with."""
        unknown = sorted(set(self.analyses) - set(ANALYSES))
        if unknown:
            raise AnalysisError(f"unknown analyses {unknown}; known: {', '.join(ANALYSES)}")
        for name in ("mode_runs", "mode_states", "gap_samples", "landscape_resolution", "rollout_states",
                     "rollout_runs", "rollout_horizon"):
            if getattr(self, name) < 1:
                raise AnalysisError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.gap_steps < 0:
            raise AnalysisError(f"--gap-steps must be >= 0, got {self.gap_steps}")
        if self.gap_lr <= 0:
            raise AnalysisError(f"--gap-lr must be > 0, got {self.gap_lr}")


# ====================================================================== rebuilding objectives
@dataclass
class RebuiltRun:
    """The objectives and optimizers of a stored run, rebuilt from its configuration.

    ``objective(name)`` builds (once) and verifies an objective; ``optimizer(label, built)``
    makes an optimizer exactly as the run did (spec and suite context, e.g. a package).
    """

    suite: Suite
    settings: dict[str, Any]
    run: RunData
    _built: dict[str, BuiltObjective] = field(default_factory=dict)

    def entry(self, name: str):
        """The suite's objective entry ``name``."""
        for e in self.suite.objectives:
            if e.name == name:
                return e
        raise AnalysisError(f"objective {name!r} is not in the rebuilt suite {self.suite.name!r}")

    def objective(self, name: str) -> BuiltObjective:
        """The built objective ``name``, checked against the stored start scores."""
        if name not in self._built:
            built = build_objective(self.entry(name), self.suite, self.settings)
            obj = built.objective
            with torch.no_grad():
                start = obj.score(obj.initial_params()).double().cpu().numpy()
            stored = self.run.start(name)
            if start.shape != stored.shape or not np.allclose(start, stored, rtol=1e-5, atol=1e-5):
                diff = np.abs(start - stored).max() if start.shape == stored.shape else float("nan")
                raise AnalysisError(f"rebuilt objective {name!r} does not match the stored run (start scores differ by "
                                    f"up to {diff:.3g}); pass --suite with the suite directory the run used")
            self._built[name] = built
        return self._built[name]

    def optimizer(self, label: str, built: BuiltObjective) -> PolicyOptimizer:
        """Optimizer ``label`` as the run built it for ``built``."""
        context: dict[str, Any] = {}
        for e in self.suite.optimizers:
            if e.label == label:
                context = resolve_context(dict(e.context), self.suite, built.objective.name)
        return make_optimizer(self.run.spec(label), **{**built.context, **context})


def rebuild_run(run: RunData, suite_dir: str | Path | None = None, device: str = "cpu") -> RebuiltRun:
    """Rebuild a stored run's suite and settings so its objectives can be built again.

    The suite definition is the text stored in ``run.json`` (``config.suite_file``), so the
    objectives are those the run used even if the suite file changed since. Relative paths in
    it (agent packages) resolve against ``suite_dir`` if given, else the directory of the
    suite of the same name on the suite search path (``./suites``, the repository's
    ``suites/``), else the run directory. :meth:`RebuiltRun.objective` then verifies each
    objective by its start scores, so a wrong directory fails loudly, never silently.
    """
    cfg = run.config
    directory: Path
    if suite_dir is not None:
        p = Path(suite_dir)
        directory = p.parent if p.is_file() else p
        if not (directory / "suite.toml").is_file() and "suite_file" not in cfg:
            raise AnalysisError(f"{suite_dir} is not a suite directory (no suite.toml)")
    else:
        try:
            directory = find_suite(cfg["suite"]).parent
        except (SuiteError, KeyError):
            directory = run.store.root
    text = cfg.get("suite_file")
    if text is None:
        if not (directory / "suite.toml").is_file():
            raise AnalysisError(f"run {run.store.root} does not store its suite definition and suite "
                                f"{cfg.get('suite')!r} was not found; pass --suite")
        text = (directory / "suite.toml").read_text()
    try:
        suite = parse_suite(tomllib.loads(text), directory / "suite.toml")
    except (tomllib.TOMLDecodeError, SuiteError) as exc:
        raise AnalysisError(f"the suite stored in {run.store.root / 'run.json'} cannot be parsed: {exc}") from None
    settings = {**cfg.get("settings", {}), "device": device}
    return RebuiltRun(suite, settings, run)


# ====================================================================== units
@dataclass(frozen=True)
class Unit:
    """One stored piece of an analysis: ``kind`` on ``objective`` (for ``optimizer``, or all of them)."""

    kind: str
    objective: str
    optimizer: str | None
    key: dict[str, Any]

    def describe(self) -> str:
        return f"{self.kind}: {self.objective}" + (f" · {self.optimizer}" if self.optimizer else "")


def _group_key(group: CellGroup) -> dict[str, Any]:
    """What identifies the stored cells an optimizer unit was computed from."""
    return {"seeds": [int(s) for s in group.meta.get("seeds", [])], "budget": int(group.budget)}


def plan_units(run: RunData, opts: AnalysisOptions) -> list[Unit]:
    """Every unit ``opts`` asks for on ``run`` (:func:`~optbench.runner.stored.expected_units`) with
    its key: the analysis settings and the cells it reads; needs no objective."""
    units = []
    for kind, name, label in expected_units(run, opts.analyses):
        key: dict[str, Any] = {"settings": opts.settings(kind)}
        if label is None:
            key["cells"] = {g.optimizer: _group_key(g) for g in run.mine(name)}
        else:
            key.update(_group_key(run.groups[(name, label)]))
        units.append(Unit(kind, name, label, key))
    return units


def _stored_key(root: Path, unit: Unit) -> dict[str, Any] | None:
    stored = read_analysis(root, unit.kind, unit.objective, unit.optimizer)
    return None if stored is None else stored["key"]


def pending_units(run: RunData, opts: AnalysisOptions) -> tuple[list[Unit], list[Unit]]:
    """``(all units, units still to compute)``: missing, or stored with another key."""
    units = plan_units(run, opts)
    root = run.store.root
    return units, [u for u in units if _stored_key(root, u) != _json_round_trip(u.key)]


def _json_round_trip(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples as lists), to compare keys."""
    if isinstance(x, dict):
        return {str(k): _json_round_trip(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_round_trip(v) for v in x]
    return x


# ====================================================================== computing units
def _gap_unit(rebuilt: RebuiltRun, group: CellGroup, opts: AnalysisOptions) -> dict[str, Any]:
    built = rebuilt.objective(group.objective)
    kw = {"lr": opts.gap_lr, "steps": opts.gap_steps, "samples": opts.gap_samples, "seed": opts.seed}
    res = amortization_gap(built.objective, group.final_params, optimizer=group.optimizer, **kw)
    rows = [{"label": group.optimizer, "before": compact(res.before.tolist()), "after": compact(res.after.tolist())}]
    trained = trained_budget_estimate(rebuilt, group)
    if trained is not None:  # R3 as the paper measures it: from the estimate the optimizer was trained to give
        k, params = trained
        label = f"{group.optimizer} @{k} (trained budget)"
        res = amortization_gap(built.objective, params, optimizer=label, **kw)
        rows.append({"label": label, "before": compact(res.before.tolist()), "after": compact(res.after.tolist())})
    return {"rows": rows, "lr": opts.gap_lr, "steps": opts.gap_steps, "samples": opts.gap_samples}


def trained_budget_estimate(rebuilt: RebuiltRun, group: CellGroup) -> tuple[int, np.ndarray] | None:
    """A learned optimizer's estimate at its trained budget ``K`` (``[R, B, 2A]``), when it ran past
    ``K``: kept in the cells, or (cells stored before they kept it) recomputed by running the same
    optimizer with the same seeds for ``K`` iterations, checked against the stored scores at ``K``."""
    k = (group.meta.get("settings") or {}).get("iterations_trained")
    if not k or int(k) >= group.budget:
        return None
    k = int(k)
    if k in group.params_at:
        return k, group.params_at[k]
    built = rebuilt.objective(group.objective)
    params, scores = [], []
    for seed in group.meta["seeds"]:
        optimizer = rebuilt.optimizer(group.optimizer, built)
        trace = run_optimizer(optimizer, built.objective, k, seed=seed, score_at=[k], warmup=False)
        params.append(trace.final_params.double().numpy())
        scores.append(trace.scores[-1].double().numpy())
    stored = group.at(k)
    if int(group.iterations[np.searchsorted(group.iterations, k, side="right") - 1]) == k and not np.allclose(
            np.stack(scores), stored, rtol=1e-4, atol=1e-4):
        raise AnalysisError(f"re-running {group.optimizer!r} on {group.objective!r} for {k} iterations does not "
                            "reproduce the stored scores at that iteration; its trained-budget gap cannot be computed "
                            "from this run")
    return k, np.stack(params)


def _modes_unit(rebuilt: RebuiltRun, group: CellGroup, opts: AnalysisOptions) -> dict[str, Any]:
    built = rebuilt.objective(group.objective)
    n = min(opts.mode_states, built.objective.batch_size)
    obj = built.objective.subset(list(range(n)))
    starts = random_starts(obj, opts.mode_runs, seed=opts.seed) if opts.mode_random_starts else None
    optimizer = rebuilt.optimizer(group.optimizer, built)
    seed = int(group.meta.get("seeds", [0])[0])
    params, scores = run_replicas(optimizer, obj, rebuilt.run.budget(group.optimizer), opts.mode_runs, seed=seed,
                                  starts=starts)
    return {"states": n, "runs": opts.mode_runs, "random_starts": opts.mode_random_starts,
            "params": compact(params), "scores": compact(scores)}


def _landscape_unit(rebuilt: RebuiltRun, objective: str, opts: AnalysisOptions,
                    log: Callable[[str], None]) -> dict[str, Any]:
    run = rebuilt.run
    built = rebuilt.objective(objective)
    obj = built.objective
    if obj.action_dim < 2:
        return {"skipped": "a landscape needs at least two action dimensions"}
    groups = run.mine(objective)
    finals = np.stack([g.final_params[0] for g in groups])  # [L,B,2A] first seed
    state = opts.landscape_state if opts.landscape_state is not None else choose_state(finals)
    if not 0 <= state < obj.batch_size:
        raise AnalysisError(f"--landscape-state must be in 0..{obj.batch_size - 1}, got {state}")
    at_state = finals[:, state]
    dims = tuple(opts.landscape_dims) if opts.landscape_dims else choose_dims(at_state)
    base_k = int(np.argmax([g.scores[0, -1, state] for g in groups]))
    sub = obj.subset([state])
    trajectories, failed = {}, {}
    for g in groups:
        if g.meta.get("amortized") and not g.meta.get("stochastic"):
            continue  # a deterministic amortized estimate (direct) has no path: it is drawn as its final estimate
        seed = int(g.meta.get("seeds", [0])[0])
        try:
            opt = rebuilt.optimizer(g.optimizer, built)
            path = record_trajectory(opt, sub, run.budget(g.optimizer), seed=seed)
            trajectories[g.optimizer] = path[:, 0].double().numpy()
        except Exception as exc:  # noqa: BLE001 - an optimizer that cannot run on one state: its final estimate only
            log(f"landscape: no trajectory for {g.optimizer}: {exc}")
            failed[g.optimizer] = str(exc)
    rec = run.records[objective]
    modes = None
    if "optimum" in rec and "mode_params" in rec["optimum"]:
        modes = np.asarray(rec["optimum"]["mode_params"], dtype=np.float64)[state]
    drawn = [at_state] + list(trajectories.values()) + ([modes] if modes is not None else [])
    xlim, ylim = grid_limits(drawn, dims)
    xs, ys, values = landscape_grid(obj, state, at_state[base_k], dims, xlim=xlim, ylim=ylim,
                                    resolution=opts.landscape_resolution)
    return {"state": int(state), "dims": [int(d) for d in dims], "base": groups[base_k].optimizer,
            "xs": compact(xs.tolist()), "ys": compact(ys.tolist()), "values": compact(values.tolist()),
            "trajectories": {k: compact(v.tolist()) for k, v in trajectories.items()}, "failed": failed}


def _stats_record(stats) -> dict[str, Any]:
    return {k: compact(np.asarray(v, dtype=np.float64).tolist()) for k, v in asdict(stats).items()}


def _exploitation_unit(rebuilt: RebuiltRun, objective: str, opts: AnalysisOptions) -> dict[str, Any]:
    obj = rebuilt.objective(objective).objective
    return {"ensemble": int(getattr(obj.q, "ensemble_size", 1)),
            "start": _stats_record(exploitation_stats(obj, obj.initial_params())),
            "optimizers": {g.optimizer: _stats_record(exploitation_stats(obj, g.final_params[0]))
                           for g in rebuilt.run.mine(objective)}}


def _rollouts_unit(rebuilt: RebuiltRun, group: CellGroup, opts: AnalysisOptions) -> dict[str, Any]:
    built = rebuilt.objective(group.objective)
    obj = built.objective
    pkg = built.context.get("package")
    if pkg is None:
        return {"unavailable": f"objective {group.objective!r} has no agent package"}
    split = str(rebuilt.entry(group.objective).get("split", "benchmark"))
    k = min(opts.rollout_states, obj.batch_size)
    try:
        rc = rollout_check(pkg, split, group.final_params[0], list(range(k)), beta=obj.beta,
                           rollouts=opts.rollout_runs, horizon=opts.rollout_horizon, seed=opts.seed)
    except RolloutUnavailable as exc:
        return {"unavailable": str(exc)}
    return {"states": k, "state_index": rc.state_index.tolist(), "q_hat": compact(rc.q_hat.tolist()),
            "returns": compact(rc.returns.tolist()), "restore_error": compact(rc.restore_error.tolist()),
            "horizon": rc.horizon, "gamma": rc.gamma, "rollouts": opts.rollout_runs}


def compute_unit(rebuilt: RebuiltRun, unit: Unit, opts: AnalysisOptions, log: Callable[[str], None]) -> dict[str, Any]:
    """The result of one unit (JSON-ready)."""
    run = rebuilt.run
    group = run.groups[(unit.objective, unit.optimizer)] if unit.optimizer is not None else None
    if unit.kind == "gap":
        return _gap_unit(rebuilt, group, opts)
    if unit.kind == "modes":
        return _modes_unit(rebuilt, group, opts)
    if unit.kind == "landscapes":
        return _landscape_unit(rebuilt, unit.objective, opts, log)
    if unit.kind == "exploitation":
        return _exploitation_unit(rebuilt, unit.objective, opts)
    if unit.kind == "rollouts":
        return _rollouts_unit(rebuilt, group, opts)
    raise AnalysisError(f"unknown analysis {unit.kind!r}")


@dataclass
class AnalysisSummary:
    """What one ``optbench analyze`` did: units in total, computed now, and already stored."""

    root: Path
    total: int
    computed: int

    @property
    def reused(self) -> int:
        return self.total - self.computed


def analyze_run(run_dir: str | Path, opts: AnalysisOptions | None = None,
                log: Callable[[str], None] | None = None) -> AnalysisSummary:
    """Compute every pending unit of the run at ``run_dir`` and store each as soon as it is done.

    Refuses to run while another optbench process writes the run (the run's lock); objectives
    are rebuilt only if some unit is pending.
    """
    opts = opts or AnalysisOptions()
    opts.check()
    log = log or (lambda msg: None)
    run = load_run(run_dir)
    units, pending = pending_units(run, opts)
    if not pending:
        return AnalysisSummary(run.store.root, len(units), 0)
    if opts.landscape_dims is not None and len(set(opts.landscape_dims)) != 2:
        raise AnalysisError(f"--landscape-dims must be two different action dimensions, got {opts.landscape_dims}")
    rebuilt = rebuild_run(run, opts.suite_dir, opts.device)
    with DirectoryLock(run.store.root, "run directory"):  # one writer: a run, or this analysis
        for i, unit in enumerate(pending, 1):
            log(f"[{i}/{len(pending)}] {unit.describe()}")
            with torch.inference_mode(False):
                result = compute_unit(rebuilt, unit, opts, log)
            atomic_write_json(analysis_path(run.store.root, unit.kind, unit.objective, unit.optimizer),
                              {"kind": unit.kind, "objective": unit.objective, "optimizer": unit.optimizer,
                               "key": unit.key, "result": result})
    return AnalysisSummary(run.store.root, len(units), len(pending))


__all__ = ["AnalysisError", "AnalysisOptions", "AnalysisSummary", "RebuiltRun", "Unit", "analyze_run", "compute_unit",
           "pending_units", "plan_units", "rebuild_run", "trained_budget_estimate"]
