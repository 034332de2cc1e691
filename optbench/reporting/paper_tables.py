"""Tables that answer the source paper's questions (SPEC §4) from a stored run.

A suite lists the ones it wants in ``tables = [...]``; each works with whatever optimizers
the run holds and says so when a question cannot be answered (e.g. no iterative agent yet).

* ``r1``: scored J at 1, 2, 5, 10, 50, 100, 500 iterations, and how many iterations each
  classical optimizer needs to reach each amortized optimizer's J at its trained budget
  (iterative: its training iterations, direct: 1); paper: > 10× for Adam and CEM vs iterative.
* ``r2``: wall clock per iteration and its ratio to the iterative optimizer's (paper:
  iterative ≈ 1.25× CEM, ≈ 1.15× Adam), Q-evaluations per iteration.
* ``r5``: the iterative optimizer far past its training budget: J at 5, 10, 50, 100 and the
  largest drop after iteration 5 (stable: no drop beyond scoring noise).
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
from optbench.metrics.summary import CellGroup, group_cells, normalized_of_means, reference_values
from optbench.optimizers.base import parse_spec
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


def _first_reaching(group: CellGroup, target: float) -> int | None:
    curve = group.scores.mean(axis=(0, 2))  # mean over seeds and states, per scored iteration
    hit = np.nonzero(curve >= target)[0]
    return int(group.iterations[hit[0]]) if len(hit) else None


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


def r1_tables(store: ResultsStore) -> list[Table]:
    tables = []
    for obj, groups in _per_objective(store):
        t = Table(title=f"R1 · {obj['name']}: J by iteration; iterations to match the amortized optimizers",
                  title_justify="left", header_style="bold")
        t.add_column("optimizer", style="cyan", no_wrap=True)
        budgets = [b for b in R1_BUDGETS if any(b <= g.budget for g in groups)]
        for b in budgets:
            t.add_column(f"J@{b}", justify="right")
        refs = [g for g in groups if g.meta.get("amortized") and not _is_cross(g, obj)]
        targets = {g.optimizer: (_mean_at(g, _trained_budget(g)), _trained_budget(g)) for g in refs}
        for ref in refs:
            t.add_column(f"it→{ref.optimizer}@{targets[ref.optimizer][1]}", justify="right")
        for g in groups:
            row = [g.optimizer, *[_fmt(_mean_at(g, b)) for b in budgets]]
            for ref in refs:
                target, k = targets[ref.optimizer]
                if g.meta.get("amortized") or target is None:
                    row.append("")
                    continue
                it = _first_reaching(g, target)
                row.append(f"> {g.budget}" if it is None else f"{it} ({it / k:.0f}×)")
            t.add_row(*row)
        t.caption = ("it→X@k: first iteration at which this optimizer's mean scored J reaches X's J after k iterations "
                     "(× = ratio of iterations). Paper (seed 000, Fig. 13): Adam and CEM need > 10× the iterative "
                     "optimizer's 5 iterations.")
        t.caption_justify = "left"
        tables.append(t)
    return tables


def r2_tables(store: ResultsStore) -> list[Table]:
    tables = []
    for obj, groups in _per_objective(store):
        iterative = next((g for g in groups if _kind(g) == "iterative" and not _is_cross(g, obj)), None)
        t = Table(title=f"R2 · {obj['name']}: cost per iteration ({obj['states']} states in lockstep)",
                  title_justify="left", header_style="bold")
        for col in ("optimizer", "ms/iteration", "iterative ÷ this", "Q-evals/it/state", "grad-evals/it/state"):
            t.add_column(col, justify="left" if col == "optimizer" else "right", style="cyan" if col == "optimizer" else None)

        def ms(g: CellGroup) -> float:
            s = g.seconds[:, 1:] if g.seconds.shape[1] > 1 else g.seconds
            return 1e3 * float(s.mean())

        for g in groups:
            # no ratio against a cost of 0 (direct run for more than its one iteration: all after the first are free)
            ratio = "" if iterative is None or g is iterative or ms(g) == 0 else f"{ms(iterative) / ms(g):.2f}×"
            n = g.scores.shape[-1]
            t.add_row(g.optimizer, f"{ms(g):.3g}", ratio, f"{g.q_evals.mean() / n:.4g}", f"{g.grad_evals.mean() / n:.4g}")
        t.caption = ("Wall clock excludes scoring; first iteration (warm-up) excluded. Paper (seed 000, App. B.2): "
                     "iterative ≈ 1.25× CEM and ≈ 1.15× Adam per iteration."
                     + ("" if iterative else " No iterative optimizer on this objective: ratio column empty."))
        t.caption_justify = "left"
        tables.append(t)
    return tables


def r5_tables(store: ResultsStore) -> list[Table]:
    t = Table(title="R5 · the iterative optimizer far past its training budget", title_justify="left",
              header_style="bold")
    for col in ("objective", "optimizer", "trained", "J@5", "J@10", "J@50", "J@100", "largest drop after 5", "stable"):
        t.add_column(col, justify="left" if col in ("objective", "optimizer") else "right")
    rows = 0
    for obj, groups in _per_objective(store):
        for g in groups:
            if _kind(g) != "iterative":
                continue
            curve = g.scores.mean(axis=(0, 2))
            after = curve[g.iterations >= 5]
            drop = float(np.max(np.maximum.accumulate(after) - after)) if len(after) else 0.0
            noise = float(g.scores[:, -1].std() / np.sqrt(g.scores[:, -1].size))
            t.add_row(obj["name"], g.optimizer, str(_trained_budget(g)),
                      *[_fmt(_mean_at(g, b)) for b in (5, 10, 50, 100)], f"{drop:.3g}",
                      "yes" if drop <= 3 * noise + 1e-9 else "no")
            rows += 1
    t.caption = ("Largest drop: the biggest fall of the mean scored J below its running maximum after iteration 5; "
                 "stable = within 3 standard errors. Paper (seed 000 Fig. 13, seed 002 Fig. 2): keeps improving, stably.")
    if not rows:
        t.caption = "No iterative optimizer in this run: R5 needs an iterative agent. " + t.caption
    t.caption_justify = "left"
    return [t]


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
