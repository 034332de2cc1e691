"""Tables that answer the source paper's questions (SPEC §4) from a stored run.

A suite lists the ones it wants in ``tables = [...]``; each works with whatever optimizers
the run holds and says so when a question cannot be answered (e.g. no iterative agent yet).

* ``r1``: scored J at 1, 2, 5, 10, 50, 100, 500 iterations, and the cost each optimizer needs to
  reach each amortized optimizer's J at its trained budget (iterative: its training iterations,
  direct: 1) in iterations, Q-evaluations, network FLOPs and seconds (interpolated between
  scored points, :func:`~optbench.metrics.summary.first_crossing`), with the speed-up over
  tuned Adam (Adam's cost to reach that J ÷ this optimizer's); paper: > 10× for Adam and CEM
  vs iterative.
* ``r2``: wall clock per iteration (warm-up excluded) and its ratio to the iterative
  optimizer's (paper: iterative ≈ 1.25× CEM, ≈ 1.15× Adam), Q-evaluations, gradient
  evaluations and network FLOPs per iteration.
* ``r5``: the iterative optimizer far past its training budget: J at 5, 10, 50, 100, J@100 − J@5
  with a paired bootstrap interval over states, and the largest drop after iteration 5.
* ``r7``: an iterative optimizer from another agent on this objective vs this agent's direct actor.
* ``headroom``: the direct actor's J against the best J any optimizer found.
* ``transfer``: every amortized optimizer's normalized J on objectives it was (in-distribution)
  and was not trained on (model-based objectives, other agents, other tasks); R6, R7.

All J are means over states and seeds of the scored J (same draws for every optimizer).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from rich.table import Table

from optbench.metrics.bootstrap import bootstrap_mean
from optbench.metrics.summary import (CellGroup, first_crossing, grid_resolution, group_cells, normalized_of_means,
                                      reference_values)
from optbench.spec_syntax import parse_spec
from optbench.runner.store import ResultsStore

R1_BUDGETS = (1, 2, 5, 10, 50, 100, 500)


def _kind(group: CellGroup) -> str:
    return parse_spec(group.meta.get("spec") or group.optimizer)[0]


def _trained_budget(group: CellGroup) -> int:
    if _kind(group) == "direct":
        return 1
    return int((group.meta.get("settings") or {}).get("iterations_trained") or 5)


def _mean_at(group: CellGroup, t: int) -> float | None:
    v = group.at(t)
    return None if v is None else float(v.mean())


def _first_reaching(group: CellGroup, target: float) -> float:
    """Iteration at which the mean (over seeds and states) scored J first reaches ``target``
    (interpolated between scored points, rounded up); ``inf`` if never."""
    curve = group.scores.mean(axis=(0, 2))
    return float(first_crossing(group.iterations, curve, target))


def tuned_adam(groups: list[CellGroup]) -> CellGroup | None:
    """The speed-up reference: the Adam labelled tuned if the run has one, else its first Adam."""
    adams = [g for g in groups if _kind(g) == "adam"]
    return next((g for g in adams if "tuned" in g.optimizer), adams[0] if adams else None)


def _si(x: float | None) -> str:
    """``1.23 G``-style numbers for FLOP counts; empty for unavailable."""
    if x is None or not np.isfinite(x):
        return "" if x is None else "∞"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {suffix}"
    return f"{x:.3g}"


def _cost(x: float | None, fmt: Callable[[float], str]) -> str:
    """A cost to a target: ``n/a`` not recorded, ``—`` never reached."""
    if x is None:
        return "n/a"
    return fmt(x) if np.isfinite(x) else "—"


def speedup(reference: float | None, reference_budget: float | None, cost: float | None) -> str:
    """``reference ÷ cost`` as ``"12.3×"``; ``"> 4.1×"`` when the reference never got there within its
    budget (a lower bound), empty when this optimizer never got there or a cost is unavailable."""
    if cost is None or reference_budget is None or not np.isfinite(cost):
        return ""
    if cost == 0:
        return "∞" if reference is not None and reference > 0 else ""
    if reference is None or not np.isfinite(reference):
        return f"> {reference_budget / cost:.3g}×"
    return f"{reference / cost:.3g}×"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}g}"


def _per_objective(store: ResultsStore) -> list[tuple[dict[str, Any], list[CellGroup]]]:
    groups = group_cells(store.cells())
    cfg = store.run_info["config"]
    records = store.objectives()
    labels = [o["label"] for o in cfg["optimizers"]]
    out = []
    for name in cfg["objectives"]:
        mine = [groups[(name, lab)] for lab in labels if (name, lab) in groups]
        if mine and name in records:
            out.append((records[name], mine))
    return out


def _is_cross(group: CellGroup, objective: dict[str, Any]) -> bool:
    agent = (group.meta.get("settings") or {}).get("agent")
    return agent is not None and agent != objective.get("info", {}).get("agent")


R1_COST_UNITS = ("q_evals", "flops", "seconds")


def r1_tables(store: ResultsStore) -> list[Table]:
    tables = []
    for obj, groups in _per_objective(store):
        t = Table(title=f"R1 · {obj['name']}: J by iteration", title_justify="left", header_style="bold")
        t.add_column("optimizer", style="cyan", no_wrap=True)
        budgets = [b for b in R1_BUDGETS if any(b <= g.budget for g in groups)]
        for b in budgets:
            t.add_column(f"J@{b}", justify="right")
        for g in groups:
            t.add_row(g.optimizer, *[_fmt(_mean_at(g, b)) for b in budgets])
        t.caption = "Scored J, mean over states and seeds (the same scoring draws for every optimizer)."
        t.caption_justify = "left"
        tables.append(t)
        refs = [g for g in groups if g.meta.get("amortized") and not _is_cross(g, obj)]
        if refs:
            tables.append(r1_cost_table(obj, groups, refs))
    return tables


def r1_cost_table(obj: dict[str, Any], groups: list[CellGroup], refs: list[CellGroup]) -> Table:
    """Cost of every optimizer to reach each amortized optimizer's J at its trained budget, and the
    speed-up over tuned Adam in each cost unit."""
    adam = tuned_adam(groups)
    t = Table(title=f"R1 · {obj['name']}: cost to reach the amortized optimizers' J", title_justify="left",
              header_style="bold")
    for col in ("target", "optimizer", "iterations", "Q-evals/state", "FLOPs/state", "seconds",
                "speed-up Q-evals", "speed-up FLOPs"):
        t.add_column(col, justify="left" if col in ("target", "optimizer") else "right",
                     style="cyan" if col == "optimizer" else None)
    for ref in refs:
        k = _trained_budget(ref)
        target = _mean_at(ref, k)
        if target is None:
            continue
        name = f"{ref.optimizer}@{k} (J={_fmt(target)})"
        adam_cost = {}
        if adam is not None:
            adam_t = _first_reaching(adam, target)
            adam_cost = {u: (adam.cost_at(u, adam_t), adam.cost_at(u, adam.budget)) for u in R1_COST_UNITS}
        for g in groups:
            it = _first_reaching(g, target)
            costs = {u: g.cost_at(u, it) for u in R1_COST_UNITS}
            its = f"> {g.budget}" if not np.isfinite(it) else f"{it:.0f} ({it / k:.3g}×)"
            row = [name, g.optimizer, its, _cost(costs["q_evals"], _fmt), _cost(costs["flops"], _si),
                   _cost(costs["seconds"], lambda x: _fmt(x, 3))]
            for u in ("q_evals", "flops"):
                ref_cost, ref_budget = adam_cost.get(u, (None, None))
                row.append(speedup(ref_cost, ref_budget, costs[u]))
            t.add_row(*row)
            name = ""
    resolution = grid_resolution(max(groups, key=lambda g: g.budget).iterations)
    timing = "; some cells were stored before the warm-up iteration: " + LEGACY_NOTE if any(
        g.timing is None for g in groups) else ""
    t.caption = (f"Cost for the mean scored J (over states and seeds) to first reach the target: the iteration is "
                 f"interpolated log-linearly between the scored points that bracket the crossing and rounded up "
                 f"(grid: {resolution}); Q-evaluations and network FLOPs (forward and backward, counted from the "
                 f"network shapes; n/a: not recorded) per state, and wall-clock seconds of the lockstep run (warm-up "
                 f"excluded{timing}) up to that iteration, a warm start's own start included. × after the iterations: "
                 f"ratio to the target's k. Speed-up = {adam.optimizer if adam else 'Adam'}'s cost to reach the same J ÷ "
                 f"this optimizer's (> : that Adam never reached it within its budget; no Adam in the run: empty). "
                 f"Paper (seed 000, Fig. 13): Adam and CEM need > 10× the iterative optimizer's 5 iterations.")
    t.caption_justify = "left"
    return t


LEGACY_NOTE = "their first iteration is charged the mean of the later ones"


def r2_tables(store: ResultsStore) -> list[Table]:
    tables = []
    for obj, groups in _per_objective(store):
        iterative = next((g for g in groups if _kind(g) == "iterative" and not _is_cross(g, obj)), None)
        t = Table(title=f"R2 · {obj['name']}: cost per iteration ({obj['states']} states in lockstep)",
                  title_justify="left", header_style="bold")
        for col in ("optimizer", "ms/iteration", "iterative ÷ this", "Q-evals/it/state", "grad-evals/it/state",
                    "FLOPs/it/state", "GFLOP/s"):
            t.add_column(col, justify="left" if col == "optimizer" else "right", style="cyan" if col == "optimizer" else None)

        def ms(g: CellGroup) -> float:
            return 1e3 * float(g.steady_seconds().mean())

        for g in groups:
            # no ratio against a cost of 0 (direct run for more than its one iteration: all after the first are free)
            ratio = "" if iterative is None or g is iterative or ms(g) == 0 else f"{ms(iterative) / ms(g):.2f}×"
            n = g.states
            if g.flops is None:
                flops, rate = "n/a", ""
            else:
                seconds = float(g.steady_seconds().sum())
                flops = _si(float(g.flops.mean() / n))
                rate = f"{g.flops.sum() / seconds / 1e9:.3g}" if seconds > 0 else ""
            t.add_row(g.optimizer, f"{ms(g):.3g}", ratio, f"{g.q_evals.mean() / n:.4g}", f"{g.grad_evals.mean() / n:.4g}",
                      flops, rate)
        legacy = any(g.timing is None for g in groups)
        t.caption = ("Wall clock excludes scoring and warm-up (an untimed warm-up iteration before the timed run"
                     + (f"; cells stored before it: {LEGACY_NOTE}" if legacy else "") + "). FLOPs: network FLOPs "
                     "(Q-networks forward per Q-evaluation and backward per gradient evaluation, plus the optimizer's "
                     "own network), counted from the layer shapes (optbench.objectives.cost); GFLOP/s: all of them over "
                     "the wall clock. Paper (seed 000, App. B.2): iterative ≈ 1.25× CEM and ≈ 1.15× Adam per iteration."
                     + ("" if iterative else " No iterative optimizer on this objective: ratio column empty."))
        t.caption_justify = "left"
        tables.append(t)
    return tables


def r5_tables(store: ResultsStore) -> list[Table]:
    t = Table(title="R5 · the iterative optimizer far past its training budget", title_justify="left",
              header_style="bold")
    for col in ("objective", "optimizer", "trained", "J@5", "J@10", "J@50", "J@100", "J@100 − J@5 [95% CI]", "reading",
                "largest drop after 5", "stable"):
        t.add_column(col, justify="left" if col in ("objective", "optimizer", "reading") else "right")
    rows = 0
    for obj, groups in _per_objective(store):
        for g in groups:
            if _kind(g).split("+")[-1] != "iterative":  # the iterative optimizer, from its own start or warm-started
                continue
            curve = g.scores.mean(axis=(0, 2))
            after = curve[g.iterations >= 5]
            drop = float(np.max(np.maximum.accumulate(after) - after)) if len(after) else 0.0
            noise = float(g.scores[:, -1].std() / np.sqrt(g.scores[:, -1].size))
            change = later_minus_earlier(g, 5, 100)
            reading = "" if change is None else ("rises" if change.low > 0 else "falls" if change.high < 0
                                                 else "no change resolved")
            t.add_row(obj["name"], g.optimizer, str(_trained_budget(g)),
                      *[_fmt(_mean_at(g, b)) for b in (5, 10, 50, 100)], "" if change is None else change.fmt(3),
                      reading, f"{drop:.3g}", "yes" if drop <= 3 * noise + 1e-9 else "no")
            rows += 1
    t.caption = ("J@100 − J@5: per state (mean over seeds) the scored J at iteration 100 minus at 5, mean over states "
                 "with a paired percentile bootstrap interval over states; reading: rises/falls when the interval "
                 "excludes 0. Largest drop: the biggest fall of the mean scored J below its running maximum after "
                 "iteration 5; stable = within 3 standard errors. Paper (seed 000 Fig. 13, seed 002 Fig. 2): keeps "
                 "improving, stably.")
    if not rows:
        t.caption = "No iterative optimizer in this run: R5 needs an iterative agent. " + t.caption
    t.caption_justify = "left"
    return [t]


def later_minus_earlier(group: CellGroup, earlier: int, later: int, **kw: Any):
    """``J(later) − J(earlier)`` per state (mean over seeds), mean over states with a paired bootstrap
    interval over states (:class:`~optbench.metrics.bootstrap.Interval`); ``None`` beyond the budget."""
    a, b = group.at(earlier), group.at(later)
    if a is None or b is None or later > group.budget:
        return None
    return bootstrap_mean((b - a).mean(0), **kw)


def r7_tables(store: ResultsStore) -> list[Table]:
    t = Table(title="R7 · an iterative optimizer on another agent's Q vs that agent's own direct actor",
              title_justify="left", header_style="bold")
    for col in ("objective (Q of)", "optimizer (trained with)", "J@5", "J@final", "direct J", "best found"):
        t.add_column(col, justify="left" if "(" in col else "right")
    rows = 0
    for obj, groups in _per_objective(store):
        direct = next((g for g in groups if _kind(g) == "direct" and not _is_cross(g, obj)), None)
        ref, _ = reference_values(obj, groups)
        for g in groups:
            if _kind(g) == "iterative" and _is_cross(g, obj):
                t.add_row(obj["name"], f"{g.optimizer} ({g.meta['settings'].get('agent')})", _fmt(_mean_at(g, 5)),
                          _fmt(float(g.scores[:, -1].mean())), _fmt(_mean_at(direct, 1) if direct else None),
                          _fmt(float(ref.mean())))
                rows += 1
    t.caption = "Paper (seed 000, Fig. 1 and 14): the iterative optimizer generalizes to the direct agent's Q, nearing the optimum."
    if not rows:
        t.caption = "No cross pairing in this run: R7 needs an iterative agent run on another agent's objective. " + t.caption
    t.caption_justify = "left"
    return [t]


def headroom_tables(store: ResultsStore) -> list[Table]:
    t = Table(title="Headroom · the direct actor against the best J any optimizer found", title_justify="left",
              header_style="bold")
    for col in ("objective", "start J", "direct J", "best found J", "best − direct", "by"):
        t.add_column(col, justify="left" if col in ("objective", "by") else "right")
    for obj, groups in _per_objective(store):
        direct = next((g for g in groups if _kind(g) == "direct" and not _is_cross(g, obj)), None)
        finals = {g.optimizer: float(g.scores[:, -1].mean()) for g in groups}
        best = max(finals, key=finals.get)
        d = _mean_at(direct, 1) if direct else None
        t.add_row(obj["name"], _fmt(float(np.mean(obj["start_scores"]))), _fmt(d), _fmt(finals[best]),
                  _fmt(None if d is None else finals[best] - d), best)
    t.caption = "Means over states and seeds of the scored J at each optimizer's final iteration."
    t.caption_justify = "left"
    return [t]


def relation(group: CellGroup, objective: dict[str, Any]) -> str:
    """How an amortized optimizer's training relates to ``objective``: ``in-distribution`` (the
    model-free Q of an agent it was trained with), or which transfer it is."""
    settings = group.meta.get("settings") or {}
    trained_on = settings.get("trained_on") or [settings.get("agent")]
    info = objective.get("info", {})
    model = f"model-based h={info['horizon']}" if info.get("model_based") else "model-free"
    if info.get("agent") in trained_on:
        return "in-distribution" if model == "model-free" else f"model-free → {model}"
    tasks = {str(a).split("-")[0] for a in trained_on if a}
    same_task = str(info.get("task", "")).split("-")[0] in tasks
    return f"{'agent → agent' if same_task else 'task → task'} ({model})"


def transfer_tables(store: ResultsStore) -> list[Table]:
    """Each amortized optimizer on each objective: J and normalized score at its trained budget
    and at its final iteration, beside its own in-distribution result and the best classical
    optimizer at the same iteration."""
    t = Table(title="Transfer · amortized optimizers on objectives they were and were not trained on",
              title_justify="left", header_style="bold")
    for col in ("objective", "optimizer", "trained", "relation", "J@K − J_start [95% CI]", "norm@K",
                "norm@final (it)", "in-dist. norm@K", "best classical norm@K"):
        t.add_column(col, justify="left" if col in ("objective", "optimizer", "trained", "relation") else "right")
    rows: list[tuple] = []
    in_dist: dict[tuple[str, Any], float | None] = {}  # (label, agent): a label such as "direct" may load per-objective networks
    for obj, groups in _per_objective(store):
        ref, _ = reference_values(obj, groups)
        start = np.asarray(obj["start_scores"])

        def norm(g: CellGroup, k: int) -> float | None:
            v = g.at(k)
            return None if v is None else normalized_of_means(v, start, ref)

        classical = [g for g in groups if not g.meta.get("amortized")]
        for g in groups:
            if not g.meta.get("amortized"):
                continue
            k = _trained_budget(g)
            rel = relation(g, obj)
            best = max(((norm(c, k), c.optimizer) for c in classical if norm(c, k) is not None), default=None)
            settings = g.meta.get("settings") or {}
            key = (g.optimizer, settings.get("agent"))
            if rel == "in-distribution":
                in_dist[key] = norm(g, k)
            gain = bootstrap_mean(g.at(k).mean(0) - start).fmt(3)  # per state, mean over seeds; CI over states
            rows.append((obj["name"], g.optimizer, key, f"{settings.get('trained_by', '')}, K={k}", rel, gain, norm(g, k), f"{norm(g, g.budget):.3f} ({g.budget})", best))
    for name, opt, key, trained, rel, gain, nk, nf, best in rows:
        own = None if rel == "in-distribution" else in_dist.get(key)
        t.add_row(name, opt, trained, rel, gain, _fmt(nk, 3), nf, "" if own is None else f"{own:.3f}",
                  "" if best is None else f"{best[0]:.3f} ({best[1]})")
    t.caption = ("J_start: the start λ₀ (μ = 0, σ = 1); CI: percentile bootstrap over states. "
                 "norm = (J − J_start)/(J_best − J_start) of the means over states, J_best the best J any optimizer of "
                 "the run found on each state (1 = as good as the best). K: the optimizer's training iterations (direct: 1). "
                 "Paper (seed 000, Fig. 8c–d): an iterative optimizer trained on model-free Q improves a model-based "
                 "objective zero-shot; a direct network cannot use the new objective.")
    if not rows:
        t.caption = "No amortized optimizer in this run. " + t.caption
    t.caption_justify = "left"
    return [t]


PAPER_TABLES: dict[str, Callable[[ResultsStore], list[Table]]] = {
    "r1": r1_tables, "r2": r2_tables, "r5": r5_tables, "r7": r7_tables, "headroom": headroom_tables,
    "transfer": transfer_tables,
}
