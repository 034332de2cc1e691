"""Run a suite: every (objective × optimizer × seed) cell, resumable, with a progress bar.

Cells already in the results store are skipped, so re-running a killed run finishes it
without recomputing anything. Objectives are built only when one of their cells is pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from optbench.optimizers import REGISTRY
from optbench.optimizers.base import make_optimizer, parse_spec, run_optimizer
from optbench.runner.store import ResultsStore, compact, config_hash, slug
from optbench.suites.sources import BuiltObjective, build_objective, resolve_context
from optbench.suites.spec import DEFAULT_SETTINGS, OptimizerEntry, Suite, SuiteError


@dataclass
class RunPlan:
    """A suite with its settings resolved, the optimizers chosen, and its cells listed."""

    suite: Suite
    settings: dict[str, Any]
    optimizers: tuple[OptimizerEntry, ...]

    def budget(self, entry: OptimizerEntry) -> int:
        """Iterations for ``entry``: ``--iterations`` if given, else its own budget or the
        suite's, capped by the ``[quick]`` budget under ``--quick``."""
        if self.settings.get("iterations_override") is not None:
            return self.settings["iterations_override"]
        own = self.settings["iterations"] if entry.iterations is None else entry.iterations
        cap = self.settings.get("iterations_cap")
        return own if cap is None else min(own, cap)

    def cells(self) -> list[tuple[str, OptimizerEntry, int]]:
        return [(o.name, e, s) for o in self.suite.objectives for e in self.optimizers if e.runs_on(o.name)
                for s in self.settings["seeds"]]

    def config(self) -> dict[str, Any]:
        """Everything that determines the results (not the device or output directory)."""
        return {
            "suite": self.suite.name,
            "suite_file": (self.suite.directory / "suite.toml").read_text(),
            "objectives": [o.name for o in self.suite.objectives],
            "settings": {k: v for k, v in self.settings.items() if k != "device"},
            "optimizers": [{"label": e.label, "spec": e.spec, "iterations": self.budget(e)} for e in self.optimizers],
        }

    def default_out(self, results_root: Path = Path("results/runs")) -> Path:
        return results_root / f"{slug(self.suite.name)}-{config_hash(self.config())}"


def plan_run(suite: Suite, *, optimizers: list[str] | None = None, iterations: int | None = None,
             seeds: list[int] | None = None, states: int | None = None, quick: bool = False,
             device: str = "cpu") -> RunPlan:
    """Resolve settings: defaults < suite ``[settings]`` < ``[quick]`` (if ``quick``) < explicit options."""
    settings = {**DEFAULT_SETTINGS, **suite.settings, **(suite.quick if quick else {})}
    settings["iterations_cap"] = settings["iterations"] if quick else None
    if iterations is not None and iterations < 0:
        raise SuiteError(f"--iterations must be >= 0, got {iterations}")
    settings["iterations_override"] = iterations
    if seeds is not None:
        settings["seeds"] = list(seeds)
    if states is not None:
        if states < 1:
            raise SuiteError(f"--states must be >= 1, got {states}")
        settings["states"] = states
    settings["device"] = device
    entries = suite.optimizers
    if optimizers:
        by_label = {e.label: e for e in suite.optimizers}
        chosen = []
        for name in optimizers:
            if name in by_label:
                chosen.append(by_label[name])
            else:
                make_optimizer(name)  # a spec outside the suite: must build, else a one-line error
                chosen.append(OptimizerEntry(name, name))
        entries = tuple(chosen)
    for e in entries:  # fail early, before any work, on a bad spec
        name = parse_spec(e.spec)[0]
        if name not in REGISTRY or not REGISTRY[name].amortized:  # amortized ones need their objective's package
            make_optimizer(e.spec)
    return RunPlan(suite, settings, tuple(entries))


def objective_record(name: str, built: BuiltObjective, start_scores: torch.Tensor) -> dict[str, Any]:
    obj = built.objective
    rec: dict[str, Any] = {
        "name": name, "states": obj.batch_size, "state_dim": obj.state_dim, "action_dim": obj.action_dim,
        "alpha": compact(obj.alpha) if obj.alpha.dim() else float(obj.alpha), "beta": obj.beta,
        "score_samples": obj.score_noise.shape[1], "start_scores": compact(start_scores), "info": built.info,
    }
    if built.optimum is not None:
        rec["optimum"] = {
            "exact": compact(built.optimum.value),
            "scored": compact(obj.score(built.optimum.params.to(obj.device))),
            "params": compact(built.optimum.params),
            "mode_values": compact(built.optimum.mode_values),
            "mode_params": compact(built.optimum.modes),
        }
    return rec


def run_plan(plan: RunPlan, out: Path, *, show_progress: bool = True) -> ResultsStore:
    """Run every pending cell of ``plan`` into the store at ``out``."""
    store = ResultsStore.create_or_resume(out, plan.config())
    settings = plan.settings
    cells = plan.cells()
    pending = [c for c in cells if not store.has_cell(c[0], c[1].label, c[2])]
    total = sum(plan.budget(e) for _, e, _ in pending)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("iterations"), TimeElapsedColumn(), TimeRemainingColumn(), disable=not show_progress,
                        transient=False)
    with progress:
        task = progress.add_task(f"{plan.suite.name}: {len(pending)}/{len(cells)} cells to run", total=total)
        for entry in plan.suite.objectives:
            mine = [c for c in pending if c[0] == entry.name]
            if not mine and store.objective_path(entry.name).exists():
                continue
            built = build_objective(entry, plan.suite, settings)
            obj = built.objective
            store.save_objective(entry.name, objective_record(entry.name, built, obj.score(obj.initial_params())))
            for _, opt_entry, seed in mine:
                optimizer = make_optimizer(opt_entry.spec, **{**built.context,
                                                               **resolve_context(dict(opt_entry.context), plan.suite)})
                progress.update(task, description=f"{entry.name} · {opt_entry.label} · seed {seed}")
                with torch.inference_mode(False):
                    trace = run_optimizer(optimizer, obj, plan.budget(opt_entry), seed=seed,
                                          score_at=settings["score_at"],
                                          on_iteration=lambda t: progress.advance(task))
                store.save_cell(entry.name, opt_entry.label, seed, trace,
                                {"spec": opt_entry.spec, "settings": optimizer.settings(),
                                 "amortized": optimizer.amortized, "stochastic": optimizer.stochastic})
        progress.update(task, description=f"{plan.suite.name}: done")
    return store
