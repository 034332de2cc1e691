"""optbench's speed ratios in one table, read from ``benchmarks/results/*.json`` (nothing is measured).

Every row gives a ratio, its target (or the paper's value it is read against), and the
source it comes from: file and part, date, machine (CPU, cores, torch threads, load at the
start and end of the measurement). Sources:

* ``scaling.json`` (``bench_scaling.py``): (a) objective evaluation against the Q-network
  FLOP floor at the suite's call shapes; (c) Adam's, CEM's and CMA-ES's own work outside the
  objective's evaluations, and the iterative optimizer's time per iteration against Adam
  and CEM; (b) the default ``mujoco-states`` run's wall clock against states and cores;
* ``sac_vs_sb3.json`` (``bench_sac_vs_sb3.py``): SAC updates/s and training steps/s against
  Stable-Baselines3, and returns;
* ``core.json`` (``bench_core.py``): batched ``cmaes`` against the ``pycma`` wrapper, evosax's
  vmapped strategies and nevergrad's CMA (own work per iteration, final J);
* ``commands.json`` (``bench_commands.py``): the commands a newcomer runs, as whole processes,
  against their targets, with peak memory and the machine's GEMM rate; and the estimate of the
  default and ``--all`` runs from every cell's CPU time.

A source is **missing** when its file or part is absent; **stale** when the code it measured
(the library and suite paths listed in :data:`SOURCES`) has changed since: by the git commit
and uncommitted-file hashes a result records (``bench_common.machine``), or, for results that
record only a date, by a later commit to those paths, or when it records no date at all;
**smoke run** when it was measured with ``--quick``. Each such source is listed under the
table with the command that (re)produces it.

    python benchmarks/summary.py               # rich table
    python benchmarks/summary.py --markdown    # the same as a Markdown table, for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from bench_common import ROOT, blob, git

RESULTS = ROOT / "benchmarks" / "results"
SCALING = "python benchmarks/bench_scaling.py --threads 1 --update --part"


@dataclass
class Source:
    """One part of one result file, with the machine it was measured on and its state."""

    key: str  # short name in the table
    file: str
    part: str | Callable[[dict], str | None]  # its key in the file (or how to find it)
    machine: Callable[[dict], dict]  # its machine record, from the file
    paths: tuple[str, ...]  # the code it measures
    command: str  # how to (re)produce it
    doc: dict = field(default_factory=dict)  # the whole file
    data: dict | None = None  # the part
    record: dict = field(default_factory=dict)  # the machine record
    status: str = "ok"  # ok | missing | stale | smoke run
    reason: str = ""


def returns_part(doc: dict) -> str | None:
    """The return comparison with the most training steps."""
    keys = [k for k in doc if re.fullmatch(r"returns_.+_\d+", k)]
    return max(keys, key=lambda k: int(k.rsplit("_", 1)[1]), default=None)


def scaling_machine(part: str) -> Callable[[dict], dict]:
    return lambda doc: doc.get(f"machine_{part}", doc.get("machine", {}))


# the modules under every timed call: oneDNN products and the allocator setting
KERNELS = ("optbench/backends",)
SOURCES = {
    "objective": Source("scaling (a)", "scaling.json", "objective", scaling_machine("objective"),
                        ("optbench/objectives", *KERNELS, "suites/mujoco-states"), f"{SCALING} objective"),
    "optimizers": Source("scaling (c)", "scaling.json", "optimizers", scaling_machine("optimizers"),
                         ("optbench/objectives", *KERNELS, "optbench/optimizers", "optbench/agents/package.py",
                          "suites/mujoco-states"), f"{SCALING} optimizers"),
    "scaling": Source("scaling (b)", "scaling.json", "scaling", scaling_machine("scaling"),
                      ("optbench", "suites/mujoco-states"), f"{SCALING} scaling"),
    "sac_speed": Source("sac_vs_sb3 (speed)", "sac_vs_sb3.json", "update_cost",
                        lambda doc: {**doc.get("machine_speed", {}),
                                     "loadavg_end": doc.get("machine_speed_end", {}).get("loadavg")},
                        ("optbench/agents", "optbench/objectives", "optbench/optimizers/unroll.py",
                         "optbench/optimizers/networks.py", *KERNELS),
                        "python benchmarks/bench_sac_vs_sb3.py --speed --threads 1"),
    "sac_returns": Source("sac_vs_sb3 (returns)", "sac_vs_sb3.json", returns_part,
                          lambda doc: doc.get("machine_returns", {}), ("optbench/agents", "optbench/objectives", *KERNELS),
                          "see the --returns commands in bench_sac_vs_sb3.py's docstring"),
    "cma": Source("core (b)", "core.json", "cma", lambda doc: doc.get("machine", {}),
                  ("optbench/objectives", *KERNELS, "optbench/optimizers/cmaes.py", "optbench/optimizers/library.py"),
                  "python benchmarks/bench_core.py --threads 1"),
    "commands": Source("commands", "commands.json", "commands",
                       lambda doc: {**doc.get("machine", {}), "gemm": doc.get("gemm_before")}, ("optbench", "suites"),
                       "python benchmarks/bench_commands.py"),
    "cells": Source("commands (d)", "commands.json", "cells", lambda doc: doc.get("machine_cells", {}),
                    ("optbench", "suites/mujoco-states"), "python benchmarks/bench_commands.py --part cells --update"),
}


# ---------------------------------------------------------------------------------- sources
def parse_date(text: str | None) -> datetime | None:
    """The dates the benchmark scripts have written: ISO 8601 with or without an offset, or
    with a trailing ``UTC``; no offset means this machine's local time."""
    if not text:
        return None
    utc = text.endswith(" UTC")
    try:
        d = datetime.fromisoformat(text.removesuffix(" UTC"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc) if utc else d.astimezone()
    return d


def changed_since(record: dict, paths: tuple[str, ...]) -> str | None:
    """Why the code under ``paths`` differs from the code a result was measured on (``None``:
    it does not). Raises ``OSError``/``SubprocessError`` without git."""
    commit, uncommitted = record.get("commit"), record.get("uncommitted")
    if commit and uncommitted is not None:
        try:
            git("cat-file", "-e", f"{commit}^{{commit}}")
        except subprocess.CalledProcessError:
            commit = None  # measured on a commit this checkout does not have: fall back to the date
    if commit and uncommitted is not None:
        now = set(git("diff", "--name-only", commit, "--", *paths).splitlines())  # commit vs working tree
        then = {f for f in uncommitted if any(f == p or f.startswith(p.rstrip("/") + "/") for p in paths)}
        differ = sorted(f for f in now | then if f not in uncommitted or uncommitted[f] != blob(f))
        if differ:
            more = f" (+{len(differ) - 3} more)" if len(differ) > 3 else ""
            return f"changed since measured at {commit[:8]}: {', '.join(differ[:3])}{more}"
        return None
    date = parse_date(record.get("date"))
    if date is None:
        return "no date recorded"
    later = git("log", "--format=%h %cI", f"--since={date.isoformat()}", "--", *paths).splitlines()
    later = [line for line in later if datetime.fromisoformat(line.split()[1]) > date]
    if later:
        return f"{len(later)} commit(s) to {', '.join(paths)} since {date:%Y-%m-%d %H:%M}, latest {later[0].split()[0]}"
    return None


def load(results: Path) -> dict[str, Source]:
    out = {}
    for name, proto in SOURCES.items():
        src = Source(**{k: getattr(proto, k) for k in ("key", "file", "part", "machine", "paths", "command")})
        out[name] = src
        path = results / src.file
        if not path.exists():
            src.status, src.reason = "missing", f"no {src.file}"
            continue
        doc = json.loads(path.read_text())
        part = src.part(doc) if callable(src.part) else src.part
        if part is None or part not in doc:
            src.status, src.reason = "missing", f"{src.file} has no {part or 'such'} part"
            continue
        src.doc, src.data, src.record = doc, doc[part], src.machine(doc)
        smoke = src.data.get("quick") if isinstance(src.data, dict) else None
        if smoke is None and f"machine_{part}" not in doc:  # written before parts recorded it: the file's args
            smoke = str(doc.get("args", {}).get("quick")) == "True"
        try:
            why = changed_since(src.record, src.paths)
        except (OSError, subprocess.SubprocessError):
            why = None
            src.reason = "not checked for staleness (no git checkout)"
        if why:
            src.status, src.reason = "stale", why
        elif smoke:
            src.status, src.reason = "smoke run", "measured with --quick: not a measurement to quote"
    return out


def describe(src: Source) -> str:
    """Date and machine of a source, one line."""
    if src.data is None:
        return f"{src.key}: MISSING"
    m = src.record
    date = parse_date(m.get("date"))
    when = f"{date.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" if date else "no date"
    load = m.get("loadavg")
    end = m.get("loadavg_end")
    load_s = (f", load {load[0]:.1f}" + (f"→{end[0]:.1f}" if end else "")) if load else ""
    threads = m.get("torch_threads", "?")
    state = "" if src.status == "ok" else f" · {src.status.upper()}"
    gemm = f", fp32 GEMM {m['gemm']['gflops']:.0f} GFLOP/s/core" if m.get("gemm") else ""
    return (f"{src.key} · {when} · {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{threads} torch thread{'' if threads == 1 else 's'}{load_s}{gemm}, torch {m.get('torch', '?')}{state}")


# ---------------------------------------------------------------------------------- rows
Row = tuple[str, str, str, str, str]  # item, measurement, result, target, verdict


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


FLOOR_SHARE = 0.7  # target: objective evaluation at >= 70 % of the Q-network FLOP floor
FLOOR_TARGET = "≥ 70 %"


def span(values: list[float], fmt: Callable[[float], str]) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"


def rows_objective(d: dict) -> list[Row]:
    rows, default = [], [r for r in d["rows"] if r["variant"].endswith("(default)")]
    for opt in dict.fromkeys(r["optimizer"] for r in default):
        rs = [r for r in default if r["optimizer"] == opt]
        fr = [r["fraction_of_floor"] for r in rs]
        pairs = span([r["pairs"] for r in rs], lambda p: f"{p:,}")
        result = f"{span(fr, pct)} of the FLOP floor"
        if rs[0]["grad"] and rs[0].get("backward_share", 1.0) < 1.0:  # rows skipped: say so, and the FLOPs run
            result += (f" (backward through {span([r['backward_share'] for r in rs], pct)} of the members' rows; "
                       f"{span([r['fraction_of_executed_floor'] for r in rs], pct)} of the floor counting only those)")
        rows.append(("1", f"objective `{rs[0]['call']}` ({opt}), {pairs} pairs/call, {len(rs)} objectives",
                     result, FLOOR_TARGET, "met" if min(fr) >= FLOOR_SHARE else "missed"))
    return rows


def rows_optimizers(d: dict) -> list[Row]:
    rows, clock = [], {"cpu": "by CPU time", "wall": "by wall clock"}.get(d.get("clock"), "clock unknown")
    for r in (r for r in d["rows"] if r["classical"]):
        rounds = span(r["own_fraction_rounds"], lambda x: f"{100 * x:.1f} %")
        rows.append(("2", f"`{r['spec']}` own work outside Q evaluations, B = {d['states']}, {clock}",
                     f"{100 * r['own_fraction']:.1f} % of {r['ms_per_iteration']:.1f} ms/it (rounds {rounds})",
                     "≤ 10 %", "met" if r["own_fraction"] <= 0.10 else "missed"))
    paper = {"adam": 1.15, "cem": 1.25}
    for x in sorted(d["ratios"], key=lambda x: (-x["iterative_samples"], x["reference_optimizer"])):
        ref = paper[x["reference_optimizer"]]
        lo, hi = x["ratio_range"]
        equal = x["iterative_samples"] == 10
        rows.append(("3", f"iterative (n = {x['iterative_samples']}) ÷ {x['reference']}, time per iteration, {clock}",
                     f"{x['ratio']:.2f}× (rounds {lo:.2f}–{hi:.2f})",
                     f"≈ {ref:.2f}× (paper, n = 10)", f"{x['ratio'] / ref:.2f}× the paper's" if equal else "—"))
    return rows


def rows_scaling(d: dict) -> list[Row]:
    by = {r["label"]: r for r in d["rows"]}
    budgets = "suite budgets" if d.get("iterations_override") is None else f"--iterations {d['iterations_override']}"
    rows = []
    full = by.get("mujoco-states 100 states, 1 core")
    if full:
        rows.append(("4", f"default mujoco-states run ({budgets}), 100 states, 1 core", f"{full['wall_s'] / 60:.1f} min",
                     "", "—"))
    for label, what, target in [
        ("mujoco-states 100 states, 2 processes", "same, 2 worker processes (2 cores)", "≤ 10 min"),
        ("mujoco-states 100 states, 2 threads", "same, 1 process of 2 torch threads", "0.5× if ideal"),
        ("mujoco-states 10 states, 1 core", "same, 10 states, 1 core", "0.1× if linear"),
    ]:
        if label in by:
            r = by[label]
            verdict = ("met" if r["wall_s"] <= 600 else "missed") if target.startswith("≤") else "—"
            rows.append(("4", what, f"{r['wall_s'] / 60:.1f} min = {r['ratio_to_full_run_1_core']:.2f}× 1 core", target,
                         verdict))
    for label, what, target in [
        ("mirror 1000 states, 1 core", "mirror suite (random Q, same sizes), 1000 ÷ 100 states, 1 core", "10× if linear"),
        ("mirror 1000 states, 2 processes", "mirror suite, 1000 states on 2 processes ÷ 100 states on 1 core",
         "5× if linear and ideal"),
    ]:
        if label in by:
            r = by[label]
            rows.append(("4", what, f"{r['ratio_to_mirror_100']:.2f}× ({r['wall_s'] / 60:.1f} min)", target, "—"))
    return rows


def rows_sac_speed(d: dict, doc: dict) -> list[Row]:
    rows = []
    ours = d["contenders"].get("ours direct", {})
    if "speed_vs_sb3" in ours:
        lo, hi = ours["speed_vs_sb3_range"]
        rows.append(("5", f"SAC update (direct, no models, batch {d['batch']}) vs SB3, updates/s",
                     f"{ours['speed_vs_sb3']:.2f}× (rounds {lo:.2f}–{hi:.2f})", "≥ 1.5×",
                     "met" if ours["speed_vs_sb3"] >= 1.5 else "missed"))
    train = doc.get("training_speed", {}).get("contenders", {}).get("ours direct", {})
    if "speed_vs_sb3" in train:
        lo, hi = train["speed_vs_sb3_range"]
        rows.append(("5", "SAC training loop (act, step, update) vs SB3, steps/s",
                     f"{train['speed_vs_sb3']:.2f}× (rounds {lo:.2f}–{hi:.2f})", "", "—"))
    speed = doc.get("training_speed", {})
    for key, r in speed.get("iterative_vs_direct", {}).items():
        lo, hi = r["range"]
        it = speed["contenders"].get("ours iterative" + (" + models" if key == "models on" else ""), {})
        vs_sb3 = f"; {it['speed_vs_sb3']:.2f}× SB3's steps/s" if "speed_vs_sb3" in it else ""
        rows.append(("5", f"iterative training step (K = {speed.get('iterations', 5)}, n = "
                          f"{speed.get('grad_samples', '?')}, {key}) ÷ direct step, CPU time",
                     f"{r['ratio']:.2f}× (rounds {lo:.2f}–{hi:.2f}){vs_sb3}; the update's FLOPs "
                     f"{r.get('flop_ratio', float('nan')):.1f}×", f"≤ {r['target']}×",
                     "met" if r["ratio"] <= r["target"] else "missed"))
    return rows


def rows_sac_returns(d: dict) -> list[Row]:
    verdict = ("within SB3's seed spread" if d.get("ours_mean_within_sb3_seed_spread")
               else "above SB3's seed spread" if d.get("ours_mean_above_sb3_seed_spread") else "below SB3's seed spread")
    return [("5", f"{d['task']} return at {d['steps'] // 1000}k steps, {len(d['ours']['seeds'])} seeds (ours / SB3)",
             " / ".join(f"{d[k]['return_mean']:.0f} ({d[k]['return_seed_min']:.0f}–{d[k]['return_seed_max']:.0f})"
                        if "return_seed_min" in d[k] else f"{d[k]['return_mean']:.0f}" for k in ("ours", "sb3"))
             + " mean (seed range)", "within seed spread", verdict)]


def rows_cma(d: dict) -> list[Row]:
    """How far the batched CMA-ES beats the pycma wrapper at equal quality: the whole run (both
    evaluate Q batched over the states, so the ratio shrinks as Q gets faster) and the work
    outside Q evaluations, where the two differ. Reported, no target."""
    own = f"; own work {d['overhead_ratio_vs_pycma']:.0f}× less" if "overhead_ratio_vs_pycma" in d else ""
    rows = [("", f"batched `cmaes` vs `pycma` wrapper, B = {d['states']}, {d['iterations']} iterations, equal final J",
             f"{d['speedup_vs_pycma']:.1f}× faster{own}", "report", "—")]
    for key, name in PEERS:
        if key not in d:
            continue
        ours, theirs, diff = d["cmaes"], d[key], d[f"diff_cmaes_minus_{key}"]
        equal = "equal" if diff.get("equal_within_2se") else "NOT equal"
        rows.append(("", f"batched `cmaes` ÷ {name}: own work per iteration outside Q evaluations (< 1: ours "
                         f"does less), B = {d['states']}, "
                         f"pop {d['popsize']}, {d['iterations']} iterations, {theirs['runs']} seed(s)",
                     f"{d[f'overhead_ours_over_theirs_{key}']:.3g}× ({ours['overhead_ms_per_iteration']:.2f} vs "
                     f"{theirs['overhead_ms_per_iteration']:.2f} ms/it); final J {equal} (J(cmaes) − J = "
                     f"{diff['mean']:+.4f} ± {diff['stderr_of_mean']:.4f})", "report", "—"))
    return rows


PEERS = [("evosax_cma_es", "evosax CMA_ES (vmap, jit)"), ("evosax_sep_cma_es", "evosax Sep_CMA_ES (vmap, jit)"),
         ("evosax_snes", "evosax SNES (vmap, jit)"), ("nevergrad_cma", "nevergrad CMA (per state)")]
COMMAND_TARGETS = {"main": "≤ 5 min", "quick": "≤ 30 s", "synthetic": "≤ 45 s"}


def rows_commands(d: dict, doc: dict) -> list[Row]:
    """The newcomer's commands as whole processes against their targets, with peak memory."""
    rows = []
    for key, r in d["rows"].items():
        target = COMMAND_TARGETS.get(key, "")
        mem = f"peak RSS {r['peak_rss_mb_median']:.0f} MB largest process"
        if r.get("peak_tree_pss_mb_median") is not None:
            mem += f", {r['peak_tree_pss_mb_median']:.0f} MB all processes (PSS)"
        if key == "states_1000":
            rows.append(("6", f"`{r['command']}`: 1000 states per objective", f"{mem} ({r['wall_s_median']:.0f} s)",
                         "report", "—"))
            continue
        verdict = "met" if r["wall_s_median"] <= r["target_s"] else "missed"
        rows.append(("6", f"`{r['command']}`, fresh process, default settings, {r['repeats']} run(s)",
                     f"{r['wall_s_median']:.1f} s median (min {r['wall_s_min']:.1f}); {mem}", target, verdict))
    s = doc.get("startup")
    if s:
        rows.append(("6", f"worker start-up, once per run ({s['workers']} workers)", f"{s['seconds_median']:.2f} s",
                     "report", "—"))
    return rows


def rows_cells(d: dict) -> list[Row]:
    """The default and --all runs estimated from every cell's CPU time (grounds the default selection)."""
    rows = []
    for sel, e in d["estimates"].items():
        est = f"; with fixed costs {e['estimate_s']:.0f} s" if "estimate_s" in e else ""
        rows.append(("6", f"{d['suite']} {'default selection' if sel == 'default' else '--all'}: {e['cells']} cells "
                          f"on {e['workers']} workers, estimated from cell CPU times",
                     f"{e['cpu_s']:.0f} s CPU, makespan {e['makespan_s']:.0f} s{est}",
                     "≤ 5 min" if sel == "default" else "report", "—"))
    return rows


PLACEHOLDER = {"objective": ("1", "objective evaluation vs the Q-network FLOP floor, suite call shapes", FLOOR_TARGET),
               "optimizers": ("2, 3", "adam/cem/cmaes own work (≤ 10 %); iterative ÷ Adam, ÷ CEM per iteration",
                              "≤ 10 %; ≈ 1.15×, ≈ 1.25×"),
               "scaling": ("4", "full default mujoco-states run vs states and cores", "≤ 10 min on 2 cores"),
               "sac_speed": ("5", "SAC updates/s vs SB3", "≥ 1.5×"),
               "sac_returns": ("5", "SAC return vs SB3", "within seed spread"),
               "cma": ("", "batched cmaes vs pycma wrapper, evosax, nevergrad", "report"),
               "commands": ("6", "main command, --quick, synthetic as whole processes; peak memory",
                            "≤ 5 min, ≤ 30 s, ≤ 45 s"),
               "cells": ("6", "default and --all runs estimated from cell CPU times", "≤ 5 min")}


ROWS: dict[str, Callable[[dict, dict], list[Row]]] = {
    "objective": lambda d, doc: rows_objective(d), "optimizers": lambda d, doc: rows_optimizers(d),
    "scaling": lambda d, doc: rows_scaling(d), "sac_speed": rows_sac_speed,
    "sac_returns": lambda d, doc: rows_sac_returns(d), "cma": lambda d, doc: rows_cma(d),
    "commands": rows_commands, "cells": lambda d, doc: rows_cells(d)}


def table(sources: dict[str, Source]) -> list[tuple[Source, list[Row]]]:
    """The rows of every source, in the order of :data:`SOURCES`."""
    out = []
    for name, src in sources.items():
        if src.data is None:
            item, what, target = PLACEHOLDER[name]
            out.append((src, [(item, what, "—", target, "missing")]))
            continue
        rows = ROWS[name](src.data, src.doc)
        if src.status != "ok":
            rows = [(i, m, r, t, f"{v} ({src.status})") for i, m, r, t, v in rows]
        out.append((src, rows))
    return out


# ---------------------------------------------------------------------------------- output
HEADER = ("#", "measurement", "result", "target", "verdict", "source: date, machine")


def problems(sources: dict[str, Source]) -> list[str]:
    return [f"{s.key}: {s.status.upper()} ({s.reason}); to (re)produce: {s.command}"
            for s in sources.values() if s.status != "ok" or s.reason]


def print_rich(groups, sources: dict[str, Source], results: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"optbench speed ratios ({results}/*.json)", title_justify="left", show_lines=False)
    for col in HEADER:
        t.add_column(col, justify="left", overflow="fold")
    for src, rows in groups:
        t.add_section()
        for k, row in enumerate(rows):
            style = "red" if "missing" in row[4] or src.status != "ok" else None
            t.add_row(*row, describe(src) if k == 0 else "", style=style)
    console = Console(width=220)
    console.print(t)
    for line in problems(sources):
        console.print(line, highlight=False, soft_wrap=True)


def markdown(groups, sources: dict[str, Source]) -> str:
    def cell(x: str) -> str:
        return x.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for src, rows in groups:
        for k, row in enumerate(rows):
            lines.append("| " + " | ".join(cell(c) for c in (*row, describe(src) if k == 0 else "")) + " |")
    notes = problems(sources)
    if notes:
        lines += [""] + [f"* {cell(n)}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="directory of the result files")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for docs/benchmarks.md)")
    args = ap.parse_args(argv)
    sources = load(args.results)
    groups = table(sources)
    if args.markdown:
        print(markdown(groups, sources))
    else:
        print_rich(groups, sources, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
