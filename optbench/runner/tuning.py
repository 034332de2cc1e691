"""Tune classical optimizers on a suite's held-out states: ``optbench tune --suite S [--criterion C]``.

A suite declares its sweeps in ``suite.toml``::

    [tuning]
    split = "heldout"      # the objectives' state split the sweep runs on (never the benchmark one)
    iterations = 200       # sweep budget of every setting
    seeds = [0]
    states = 100           # optional: fewer held-out states for a cheaper sweep
    grids = [
      { label = "adam (tuned)", spec = "adam(samples=10)", lr = [0.003, 0.01, 0.03, 0.1] },
      { label = "cmaes (tuned)", spec = "cmaes(samples=10)", sigma0 = [0.1, 0.3, 1.0] },
    ]

Every grid expands to the Cartesian product of its lists, merged into ``spec``'s settings;
combinations the optimizer refuses (CEM with more elites than its population) are skipped
and listed. The sweep is an ordinary run (same store, resumable) of a derived suite whose
package objectives read ``split`` instead of their benchmark states and whose optimizers are
the expansions.

**The criterion is explicit, chosen per question** (:func:`parse_criterion`), and recorded:

* ``anytime`` (default; ``anytime:UNIT`` for UNIT = ``q_evals`` (default), ``iterations`` or
  ``flops``): the area under the normalized-J curve over log cost, averaged over the range
  (so 1 = the best J at every cost). Per objective, ``normalized J = (J − J_start)/(J_best −
  J_start)`` of the mean over states and seeds, ``J_best`` the best mean J any setting of the
  grid reached; the curve is linear in log cost between scored iterations and ``J_start``
  before a setting's first iteration is paid for. The range runs from the cheapest first
  iteration of any setting to the smallest whole-sweep cost of any setting, so no curve is
  extrapolated beyond what was run. This rewards a setting that is good early and late, and
  cheap per iteration, rather than one that merely ties at the end.
* ``budget:N``: the normalized J at iteration ``N`` (the question "which setting is best after
  exactly N iterations", e.g. N = the iterative optimizer's trained budget, 10, 100).

One setting per grid is chosen for the whole suite (the suite-wide compromise: the largest mean
over objectives of the criterion), so a tuned optimizer is one optimizer, not one per objective;
the per-objective choices are recorded beside it, with what the compromise gives up on each
objective. A choice at the edge of a grid axis (the lowest or highest value swept) is flagged:
the optimum may lie outside the grid, which should then be extended.

The result (``tuning.json`` and ``tuning.md`` in the suite directory) lists every setting's
criterion value and mean final J per objective; the suite's optimizer list then names the chosen
spec under the grid's label (the tests check that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from optbench.metrics.summary import CellGroup, group_cells
from optbench.optimizers.base import OptimizerError, make_optimizer, parse_spec, spec_needs_context
from optbench.runner.store import ResultsStore
from optbench.suites.spec import Grid, ObjectiveEntry, OptimizerEntry, Suite, SuiteError

TUNING_FORMAT = "optbench-tuning"
HELDOUT_SOURCES = {"package", "package-model-based"}  # objective sources with a `split` field
ANYTIME_UNITS = ("q_evals", "iterations", "flops")
LOG_GRID_POINTS = 1024  # points of the log-cost grid the anytime area is taken on


@dataclass(frozen=True)
class Criterion:
    """How a sweep's settings are ranked: ``anytime`` over a cost ``unit``, or J at a ``budget``."""

    kind: str
    unit: str = "q_evals"
    budget: int | None = None

    @property
    def name(self) -> str:
        return f"budget:{self.budget}" if self.kind == "budget" else f"anytime:{self.unit}"

    def describe(self) -> str:
        if self.kind == "budget":
            return (f"normalized J (J - J_start)/(J_best - J_start) at iteration {self.budget}, J_best the best mean J "
                    "of any setting of the grid there; suite-wide: mean over objectives")
        return (f"area under the normalized-J curve over log {self.unit}, averaged over the range from the cheapest "
                "first iteration to the smallest whole-sweep cost of the grid's settings; normalized J = "
                "(J - J_start)/(J_best - J_start), J_best the best mean J any setting reached; suite-wide: mean over "
                "objectives")


def parse_criterion(text: str, iterations: int) -> Criterion:
    """``anytime``, ``anytime:UNIT`` or ``budget:N`` (``N`` within the sweep's ``iterations``)."""
    head, _, arg = text.strip().partition(":")
    if head == "anytime":
        unit = arg or "q_evals"
        if unit not in ANYTIME_UNITS:
            raise SuiteError(f"criterion anytime:{unit}: the cost unit must be one of {', '.join(ANYTIME_UNITS)}")
        return Criterion("anytime", unit=unit)
    if head == "budget":
        try:
            n = int(arg)
        except ValueError:
            raise SuiteError(f"criterion {text!r}: budget:N needs an integer N, e.g. budget:5") from None
        if not 1 <= n <= iterations:
            raise SuiteError(f"criterion {text!r}: N must be between 1 and the sweep's {iterations} iterations")
        return Criterion("budget", budget=n)
    raise SuiteError(f"unknown tuning criterion {text!r}; use anytime, anytime:UNIT ({', '.join(ANYTIME_UNITS)}) "
                     "or budget:N")


def grid_settings(grid: Grid) -> tuple[list[str], list[dict[str, str]]]:
    """The grid's expansions an optimizer accepts, and the ones it refuses (with the reason)."""
    valid, skipped = [], []
    for spec in grid.expand():
        if not spec_needs_context(spec):
            try:
                make_optimizer(spec)
            except (OptimizerError, ValueError) as exc:
                skipped.append({"setting": spec, "reason": str(exc).splitlines()[0]})
                continue
        valid.append(spec)
    if not valid:
        raise SuiteError(f"[tuning] grid {grid.label!r}: no setting is accepted by the optimizer "
                         f"({skipped[0]['reason'] if skipped else 'empty grid'})")
    return valid, skipped


def tuning_suite(suite: Suite) -> Suite:
    """The derived suite a sweep runs: held-out states, one optimizer per accepted grid setting."""
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
    optimizers = tuple(OptimizerEntry(spec, f"{g.label} · {spec}") for g in tuning.grids for spec in grid_settings(g)[0])
    settings = {**suite.settings, "iterations": tuning.iterations, "seeds": list(tuning.seeds), "score_at": "log"}
    if tuning.states is not None:
        settings["states"] = tuning.states
    return replace(suite, name=f"{suite.name}-tuning", objectives=tuple(objectives), optimizers=optimizers,
                   settings=settings, quick={}, tables=())


def _mean_curve(group: CellGroup) -> np.ndarray:
    return group.scores.mean(axis=(0, 2))  # [T] mean over seeds and states


def anytime_scores(groups: dict[str, CellGroup], start: float, unit: str, objective: str) -> dict[str, float]:
    """Per setting: the mean normalized J over the common log-cost range (see the module docstring)."""
    curves = {s: _mean_curve(g) for s, g in groups.items()}
    best = max(float(c.max()) for c in curves.values())
    scale = best - start
    costs = {}
    for s, g in groups.items():
        x = g.scored_costs(unit)
        if x is None:
            raise SuiteError(f"criterion anytime:{unit}: the sweep's cells on {objective!r} record no {unit}; "
                             "use anytime:q_evals or anytime:iterations")
        costs[s] = np.asarray(x, dtype=np.float64)
    firsts = [float(x[x > 0].min()) for x in costs.values() if (x > 0).any()]
    totals = [float(x[-1]) for x in costs.values()]
    if not firsts:
        return {s: 0.0 for s in groups}
    lo, hi = min(firsts), max(min(totals), min(firsts))
    grid = np.linspace(np.log(lo), np.log(hi), LOG_GRID_POINTS) if hi > lo else np.array([np.log(hi)])
    out = {}
    for s, curve in curves.items():
        norm = (curve - start) / scale if scale > 1e-12 else np.zeros_like(curve)
        x = costs[s]
        pos = x > 0
        if not pos.any():
            out[s] = float(norm[-1])
            continue
        values = np.interp(grid, np.log(x[pos]), norm[pos], left=float(norm[0]), right=float(norm[pos][-1]))
        out[s] = float(values.mean())
    return out


def budget_scores(groups: dict[str, CellGroup], start: float, budget: int) -> dict[str, float]:
    """Per setting: ``(J − J_start)/(J_best − J_start)`` of the mean J at iteration ``budget``."""
    means = {s: float(g.at(budget).mean()) for s, g in groups.items()}
    best = max(means.values())
    return {s: (v - start) / (best - start) if best > start else 0.0 for s, v in means.items()}


def at_edge(grid: Grid, spec: str) -> dict[str, str]:
    """Axes of ``grid`` on which ``spec`` takes the lowest or highest of several numeric values swept."""
    chosen = parse_spec(spec)[2]
    flags = {}
    for axis, values in grid.axes:
        numeric = sorted({v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if len(numeric) < 2 or axis not in chosen:
            continue
        if chosen[axis] == numeric[0]:
            flags[axis] = "lowest"
        elif chosen[axis] == numeric[-1]:
            flags[axis] = "highest"
    return flags


def select(store: ResultsStore, suite: Suite, criterion: Criterion | str = "anytime") -> dict[str, Any]:
    """Every setting's criterion value on every objective, the suite-wide choice and the per-objective ones."""
    tuning = suite.tuning
    if isinstance(criterion, str):
        criterion = parse_criterion(criterion, tuning.iterations)
    groups = group_cells(store.cells())
    records = store.objectives()
    out: dict[str, Any] = {"format": TUNING_FORMAT, "suite": suite.name, "split": tuning.split,
                           "iterations": tuning.iterations, "seeds": list(tuning.seeds), "states": None,
                           "criterion": {"name": criterion.name, "description": criterion.describe()}, "grids": []}
    for g in tuning.grids:
        specs, skipped = grid_settings(g)
        final_j: dict[str, dict[str, float]] = {}
        values: dict[str, dict[str, float]] = {}
        for o in suite.objectives:
            rec = records.get(o.name)
            if rec is None:
                continue
            out["states"] = rec["states"]
            start = float(np.mean(rec["start_scores"]))
            mine = {s: groups.get((o.name, f"{g.label} · {s}")) for s in specs}
            if any(v is None for v in mine.values()):
                raise SuiteError(f"the sweep of {g.label!r} on {o.name!r} is incomplete; re-run `optbench tune`")
            final_j[o.name] = {"start": start, **{s: float(grp.at(tuning.iterations).mean()) for s, grp in mine.items()}}
            values[o.name] = (budget_scores(mine, start, criterion.budget) if criterion.kind == "budget"
                              else anytime_scores(mine, start, criterion.unit, o.name))
        score = {s: float(np.mean([v[s] for v in values.values()])) for s in specs}
        chosen = max(specs, key=lambda s: score[s])  # first of equals: the grid's order
        per_objective = {}
        for name, row in values.items():
            best = max(specs, key=lambda s: row[s])
            per_objective[name] = {"best": best, "at_edge": at_edge(g, best), "score_of_best": row[best],
                                   "score_of_chosen": row[chosen]}
        out["grids"].append({"label": g.label, "spec": g.spec, "settings": specs, "skipped": skipped,
                             "criterion_by_objective": values, "score": score, "chosen": chosen,
                             "at_edge": at_edge(g, chosen), "per_objective": per_objective,
                             "best_per_objective": {n: p["best"] for n, p in per_objective.items()},
                             "mean_final_j": final_j})
    return out


def markdown(result: dict[str, Any]) -> str:
    """``tuning.md``: one table per grid, settings × objectives (criterion values), chosen setting in bold."""
    crit = result["criterion"]
    lines = [f"# Tuning sweep of `{result['suite']}`", "",
             f"Split `{result['split']}` ({result['states']} states per objective), {result['iterations']} iterations, "
             f"seeds {result['seeds']}. Criterion `{crit['name']}`: {crit['description']}. Entries: the criterion per "
             "objective; last column: suite-wide (mean over objectives). The chosen setting (bold) maximizes it; * marks "
             "each objective's own best. Written by `optbench tune`.", ""]
    for g in result["grids"]:
        objs = list(g["criterion_by_objective"])
        lines += [f"## {g['label']}", "", "| setting | " + " | ".join(objs) + " | suite-wide |",
                  "|---|" + "---:|" * (len(objs) + 1)]
        for s in g["settings"]:
            cells = [f"{g['criterion_by_objective'][o][s]:.3f}" + ("*" if g["best_per_objective"][o] == s else "")
                     for o in objs]
            name = f"**`{s}`**" if s == g["chosen"] else f"`{s}`"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {g['score'][s]:.3f} |")
        lines.append("")
        if g["at_edge"]:
            lines.append("**At the grid's edge:** the chosen setting takes the " + ", ".join(
                f"{side} `{axis}` swept" for axis, side in g["at_edge"].items()) + "; the optimum may lie outside the grid.")
        edges = {o: p["at_edge"] for o, p in g["per_objective"].items() if p["at_edge"]}
        if edges:
            lines.append("Per-objective bests at an edge: " + "; ".join(
                f"{o}: " + ", ".join(f"{side} {axis}" for axis, side in e.items()) for o, e in edges.items()) + ".")
        if g["skipped"]:
            lines.append("Skipped (refused by the optimizer): " + ", ".join(f"`{k['setting']}`" for k in g["skipped"]) + ".")
        lines.append("")
    return "\n".join(lines)


def suite_lines(result: dict[str, Any], budget: int | None = None) -> list[str]:
    """The optimizer entries to put in ``suite.toml`` for the chosen settings."""
    tail = "" if budget is None else f", iterations = {budget}"
    return [f'{{ spec = "{g["chosen"]}", label = "{g["label"]}"{tail} }},' for g in result["grids"]]


def tuning_path(suite: Suite) -> Path:
    return suite.directory / "tuning.json"


__all__ = ["Criterion", "anytime_scores", "at_edge", "budget_scores", "grid_settings", "markdown", "parse_criterion",
           "select", "suite_lines", "tuning_path", "tuning_suite"]
