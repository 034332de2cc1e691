"""Rich tables of a stored run (also rendered as Markdown for reference results)."""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optbench.reporting.paper_tables import PAPER_TABLES
from optbench.metrics.summary import OptimizerSummary, group_cells, reference_values, summarize
from optbench.runner.store import ResultsStore

BUDGETS = (1, 5, 10, 50, 100, 500)
TARGETS = (0.9, 0.99)


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _iters(x: tuple[float, float]) -> str:
    median, share = x
    if not np.isfinite(median):
        return f"— ({share:.0%})"
    return f"{median:.0f}" if share == 1 else f"{median:.0f} ({share:.0%})"


def _cost(x: float | None) -> str:
    """A cost to a target: ``n/a`` not recorded, ``—`` never reached."""
    if x is None:
        return "n/a"
    return f"{x:.3g}" if np.isfinite(x) else "—"


def objective_summaries(store: ResultsStore) -> list[tuple[dict[str, Any], bool, list[OptimizerSummary]]]:
    """Per objective (in suite order): its record, whether J_ref is a known optimum, and one
    summary per optimizer (in suite order)."""
    groups = group_cells(store.cells())
    config = store.run_info["config"]
    order = [o["label"] for o in config["optimizers"]]
    out = []
    records = store.objectives()
    for name in config["objectives"]:
        obj = records.get(name)
        if obj is None:
            continue
        mine = [groups[(name, lab)] for lab in order if (name, lab) in groups]
        if not mine:
            continue
        start = np.asarray(obj["start_scores"])
        ref, known = reference_values(obj, mine)
        budgets = sorted({b for b in BUDGETS if any(b <= g.budget for g in mine)} | {max(g.budget for g in mine)})
        out.append((obj, known, [summarize(g, start, ref, budgets, TARGETS) for g in mine]))
    return out


def objective_table(obj: dict[str, Any], known: bool, summaries: list[OptimizerSummary]) -> Table:
    budgets = sorted({b for s in summaries for b in s.mean_j_at})
    ref_kind = "known optimum" if known else "best found"
    title = (f"{obj['name']}  (|S|={obj['state_dim']}, |A|={obj['action_dim']}, {obj['states']} states, "
             f"J_ref = {ref_kind})")
    t = Table(title=title, title_justify="left", header_style="bold")
    t.add_column("optimizer", style="cyan", no_wrap=True)
    for b in budgets:
        t.add_column(f"J@{b}", justify="right")
    t.add_column("ΔJ", justify="right")
    t.add_column("norm.", justify="right")
    for target in TARGETS:
        t.add_column(f"it→{target:.0%}", justify="right")
    t.add_column(f"Q→{TARGETS[0]:.0%}", justify="right")
    t.add_column(f"FLOPs→{TARGETS[0]:.0%}", justify="right")
    t.add_column("ms/it", justify="right")
    t.add_column("Q/it/state", justify="right")
    best_norm = max((s.final_norm for s in summaries if not math.isnan(s.final_norm)), default=None)
    for s in summaries:
        norm = _fmt(s.final_norm, 3)
        if best_norm is not None and s.final_norm >= best_norm - 1e-9:
            norm = f"[bold green]{norm}[/]"
        t.add_row(s.optimizer, *[_fmt(s.mean_j_at[b]) if b in s.mean_j_at else "" for b in budgets],
                  _fmt(s.final_j - s.start_j), norm, *[_iters(s.iters_to[x]) for x in TARGETS],
                  _cost(s.cost_to["q_evals"][TARGETS[0]]), _cost(s.cost_to["flops"][TARGETS[0]]),
                  _fmt(1e3 * s.seconds_per_iter, 3), _fmt(s.q_evals_per_iter, 4))
    t.caption = (f"J: scored J, mean over states and seeds (start {_fmt(summaries[0].start_j)}); ΔJ: final − start; "
                 "norm.: (J−J_start)/(J_ref−J_start) of the means over states, at the final iteration; it→x: median iterations to reach x of "
                 "J_ref (share of runs that did), interpolated log-linearly between scored points and rounded up; "
                 f"Q→{TARGETS[0]:.0%}, FLOPs→{TARGETS[0]:.0%}: median Q-evaluations and network FLOPs per state spent by then "
                 "(— never reached by the median run; n/a not recorded); ms/it: wall clock per iteration for all states in "
                 "lockstep, warm-up excluded.")
    t.caption_justify = "left"
    return t


def print_run(store: ResultsStore, console: Console | None = None) -> None:
    """Print every objective's table of a stored run."""
    console = console or Console()
    info = store.run_info
    cfg = info["config"]
    console.print(f"[bold]suite {cfg['suite']}[/] · {len(cfg['optimizers'])} optimizers · seeds {cfg['settings']['seeds']}"
                  f" · {store.root}")
    for obj, known, summaries in objective_summaries(store):
        console.print(objective_table(obj, known, summaries))
    for table in question_tables(store):
        console.print(table)
    failed = failure_lines(store)
    if failed:
        console.print(f"[bold red]{len(failed)} failed cell(s)[/] (not in the tables above; re-running the run's command "
                      "retries them):")
        for line in failed:
            console.print(f"  {escape(line)}", highlight=False)


def failure_lines(store: ResultsStore) -> list[str]:
    """One line per failed cell of the run: which cell, and its error."""
    return [f["error"] for f in store.failures()]


def question_tables(store: ResultsStore) -> list[Table]:
    """The paper-question tables the run's suite asks for (``tables = [...]`` in suite.toml)."""
    wanted = tomllib.loads(store.run_info["config"]["suite_file"]).get("tables", [])
    return [t for name in wanted if name in PAPER_TABLES for t in PAPER_TABLES[name](store)]


def markdown_table(table: Table) -> str:
    """Render a rich table as GitHub Markdown (markup stripped)."""
    from rich.text import Text

    def cell(x: Any) -> str:
        return Text.from_markup(str(x)).plain.replace("|", "\\|")

    headers = [cell(c.header) for c in table.columns]
    rows = zip(*[[cell(v) for v in c._cells] for c in table.columns])
    lines = [f"**{cell(table.title)}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if table.caption:
        lines += ["", f"_{cell(table.caption)}_"]
    return "\n".join(lines) + "\n"


def markdown_run(store: ResultsStore) -> str:
    """Every objective table of a run as Markdown, with the run's settings and machine."""
    info = store.run_info
    cfg, env = info["config"], info["environment"]
    head = (f"# {cfg['suite']}: results\n\nSettings: {json.dumps({k: v for k, v in cfg['settings'].items() if v is not None})}"
            f"\n\nMachine: {env['cpu']} ({env['cores']} cores, {env['torch_threads']} torch threads), "
            f"torch {env['versions']['torch']}, Python {env['python']}.\n\n")
    tables = [objective_table(*s) for s in objective_summaries(store)] + question_tables(store)
    failed = failure_lines(store)
    tail = ("\n**Failed cells** (not in the tables):\n\n" + "".join(f"- {line}\n" for line in failed)) if failed else ""
    return head + "\n".join(markdown_table(t) for t in tables) + tail
