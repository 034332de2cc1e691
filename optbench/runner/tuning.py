"""Tune classical optimizers on a suite's held-out states: ``optbench tune --suite S``.

A suite declares its sweeps in ``suite.toml``::

    [tuning]
    split = "heldout"      # the objectives' state split the sweep runs on (never the benchmark one)
    iterations = 200       # sweep budget; the winner is chosen by scored J at this iteration
    seeds = [0]
    states = 100           # optional: fewer held-out states for a cheaper sweep
    grids = [
      { label = "adam (tuned)", spec = "adam(samples=10)", lr = [0.003, 0.01, 0.03, 0.1] },
      { label = "cmaes (tuned)", spec = "cmaes(samples=10)", sigma0 = [0.1, 0.3, 1.0] },
    ]

Every grid expands to the Cartesian product of its lists, merged into ``spec``'s settings.
The sweep is an ordinary run (same store, resumable) of a derived suite whose package
objectives read ``split`` instead of their benchmark states and whose optimizers are the
expansions. One setting per grid is chosen for the whole suite, so a tuned optimizer is one
optimizer, not one per objective: the setting with the largest mean over objectives of its
**normalized improvement** ``(J − J_start) / (J_best − J_start)`` at the sweep budget, where
``J_best`` is the best mean J of any setting of that grid on that objective (scale-free
across tasks; 1 = best on every objective). The per-objective winners are reported too, so
the cost of one shared setting is visible.

The result (``tuning.json`` and ``tuning.md`` in the suite directory) lists every setting's
mean J per objective; the suite's optimizer list then names the chosen spec under the grid's
label (the tests check that the two agree).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from optbench.metrics.summary import group_cells
from optbench.runner.store import ResultsStore
from optbench.suites.spec import ObjectiveEntry, OptimizerEntry, Suite, SuiteError

TUNING_FORMAT = "optbench-tuning"
HELDOUT_SOURCES = {"package", "package-model-based"}  # objective sources with a `split` field


def tuning_suite(suite: Suite) -> Suite:
    """The derived suite a sweep runs: held-out states, one optimizer per grid setting."""
    tuning = suite.tuning
    if tuning is None:
        raise SuiteError(f"suite {suite.name!r} declares no [tuning] sweeps")
    objectives = []
    for o in suite.objectives:
        if o.source not in HELDOUT_SOURCES:
            raise SuiteError(f"objective {o.name!r} (source {o.source}) has no held-out state split to tune on; "
                             f"tuning needs sources {sorted(HELDOUT_SOURCES)}")
        fields = dict(o.fields)
        fields["split"] = tuning.split
        objectives.append(ObjectiveEntry(o.name, o.source, tuple(sorted(fields.items()))))
    optimizers = tuple(OptimizerEntry(spec, f"{g.label} · {spec}") for g in tuning.grids for spec in g.expand())
    settings = {**suite.settings, "iterations": tuning.iterations, "seeds": list(tuning.seeds), "score_at": "log"}
    if tuning.states is not None:
        settings["states"] = tuning.states
    return replace(suite, name=f"{suite.name}-tuning", objectives=tuple(objectives), optimizers=optimizers,
                   settings=settings, quick={}, tables=())


def select(store: ResultsStore, suite: Suite) -> dict[str, Any]:
    """Mean J of every setting on every objective at the sweep budget, and the chosen settings."""
    tuning = suite.tuning
    groups = group_cells(store.cells())
    records = store.objectives()
    out: dict[str, Any] = {"format": TUNING_FORMAT, "suite": suite.name, "split": tuning.split,
                           "iterations": tuning.iterations, "seeds": list(tuning.seeds), "states": None,
                           "criterion": "mean over objectives of (J - J_start) / (J_best - J_start) at the sweep budget",
                           "grids": []}
    for g in tuning.grids:
        specs = g.expand()
        table: dict[str, dict[str, float]] = {}
        normalized: dict[str, list[float]] = {s: [] for s in specs}
        for o in suite.objectives:
            rec = records.get(o.name)
            if rec is None:
                continue
            out["states"] = rec["states"]
            start = float(np.mean(rec["start_scores"]))
            means = {}
            for s in specs:
                grp = groups.get((o.name, f"{g.label} · {s}"))
                if grp is not None:
                    means[s] = float(grp.at(tuning.iterations).mean())
            if len(means) != len(specs):
                raise SuiteError(f"the sweep of {g.label!r} on {o.name!r} is incomplete; re-run `optbench tune`")
            table[o.name] = {"start": start, **means}
            best = max(means.values())
            for s, v in means.items():
                normalized[s].append((v - start) / (best - start) if best > start else 0.0)
        score = {s: float(np.mean(v)) for s, v in normalized.items()}
        chosen = max(specs, key=lambda s: score[s])  # first of equals: the grid's order
        per_objective = {name: max(specs, key=lambda s: row[s]) for name, row in table.items()}
        out["grids"].append({"label": g.label, "spec": g.spec, "settings": specs, "mean_j": table,
                             "normalized_improvement": score, "chosen": chosen, "best_per_objective": per_objective})
    return out


def markdown(result: dict[str, Any]) -> str:
    """``tuning.md``: one table per grid, settings × objectives, chosen setting in bold."""
    lines = [f"# Tuning sweep of `{result['suite']}`", "",
             f"Split `{result['split']}` ({result['states']} states per objective), {result['iterations']} iterations, "
             f"seeds {result['seeds']}. Entries: mean scored J at iteration {result['iterations']}; last column: "
             "normalized improvement (J − J_start)/(J_best − J_start) averaged over objectives. The chosen setting "
             "(bold) maximizes it; * marks each objective's own best. Written by `optbench tune`.", ""]
    for g in result["grids"]:
        objs = list(g["mean_j"])
        lines += [f"## {g['label']}", "", "| setting | " + " | ".join(objs) + " | normalized |",
                  "|---|" + "---:|" * (len(objs) + 1),
                  "| start (μ=0, σ=1) | " + " | ".join(f"{g['mean_j'][o]['start']:.4g}" for o in objs) + " | 0 |"]
        for s in g["settings"]:
            cells = [f"{g['mean_j'][o][s]:.4g}" + ("*" if g["best_per_objective"][o] == s else "") for o in objs]
            name = f"**`{s}`**" if s == g["chosen"] else f"`{s}`"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {g['normalized_improvement'][s]:.3f} |")
        lines.append("")
    return "\n".join(lines)


def suite_lines(result: dict[str, Any], budget: int | None = None) -> list[str]:
    """The optimizer entries to put in ``suite.toml`` for the chosen settings."""
    tail = "" if budget is None else f", iterations = {budget}"
    return [f'{{ spec = "{g["chosen"]}", label = "{g["label"]}"{tail} }},' for g in result["grids"]]


def tuning_path(suite: Suite) -> Path:
    return suite.directory / "tuning.json"


__all__ = ["markdown", "select", "suite_lines", "tuning_path", "tuning_suite"]
