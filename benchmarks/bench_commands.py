"""The commands a newcomer runs, timed as whole processes (a script, not a test).

(a) **Commands** (``commands``): ``optbench run --suite mujoco-states`` (the main command),
    the same with ``--quick``, and ``optbench run --suite synthetic``, each in a fresh process
    exactly as README gives it (default executor and threads, plots on, a new ``--out`` per
    run so nothing resumes), ``--repeats`` times after one untimed warm-up run of the quick
    command (first-import costs: compiled bytecode, the page cache); wall clock as min and
    median, CPU seconds, and peak resident memory (the largest single process, and the
    process tree's proportional set size, see ``bench_common.run_command``). Plus one **1000-state run** for
    memory: ``bench_scaling``'s mirror suite (mujoco-states' classical optimizers and settings
    on random Q-ensembles of Hopper's and HalfCheetah's sizes) at ``--states 1000``, at
    ``MIRROR_ITERATIONS`` iterations (peak memory does not grow with iterations:
    ``tests/test_memory.py``). Targets (issue 21): main ≤ 300 s, quick ≤ 30 s, synthetic ≤ 45 s
    on the 2-core machine.
(b) **Machine**: the float32 GEMM rate (``bench_common.gemm_rate``: 2048², 1 thread, the
    fastest of torch's kernels) measured before and after the commands, the date, the load,
    so a reader can scale the times to another machine.
(c) **Worker start-up** (``startup``): seconds from creating the run's process pool to every
    worker having imported what a cell needs (``ProcessExecutor`` with ``usable_cores()``
    workers, one probe task each); paid once per run.
(d) **Cell costs** (``cells``, ``--part cells``): every cell of ``mujoco-states`` (all its
    optimizers) computed in this process, each timed by this thread's CPU time (1 thread, so
    little affected by other processes on the cores), the objectives' build times, and the
    whole run's estimate on ``usable_cores()`` workers for the default selection and for
    ``--all`` (the cells in the order ``optbench run`` submits them, each to the first free
    worker, a worker building each objective it has not built yet), plus start-up and report
    time measured by (a) where available. This grounds the choice of the default selection
    (suite.toml ``[default]``) on a loaded machine, where whole-run wall clock is not.

    python benchmarks/bench_commands.py                         # (a)-(c) -> benchmarks/results/commands.json (~25 min idle)
    python benchmarks/bench_commands.py --part cells --update   # (d) only, ~6 min idle, kept beside (a)-(c)
    python benchmarks/bench_commands.py --quick --out /tmp/commands.json   # smoke run: quick + synthetic --quick, 1 repeat

``benchmarks/summary.py`` reads ``results/commands.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from optbench import backends

from bench_common import ROOT, gemm_rate, machine, run_command, worker_startup_probe

PARTS = ("commands", "cells")
TARGETS_S = {"main": 300.0, "quick": 30.0, "synthetic": 45.0}


def optbench_command() -> list[str]:
    """``optbench`` as installed beside this Python (what a newcomer types), else ``python -m optbench.cli``."""
    script = Path(sys.executable).parent / "optbench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "optbench.cli"]


def command_rows(quick: bool) -> list[tuple[str, list[str]]]:
    """The rows of (a): (key, arguments after ``optbench``); ``--out`` is added per run."""
    if quick:  # smoke run: the two short commands only, the synthetic one at its quick budget
        return [("quick", ["run", "--suite", "mujoco-states", "--quick"]),
                ("synthetic", ["run", "--suite", "synthetic", "--quick"])]
    return [("main", ["run", "--suite", "mujoco-states"]),
            ("quick", ["run", "--suite", "mujoco-states", "--quick"]),
            ("synthetic", ["run", "--suite", "synthetic"])]


def summarize_runs(runs: list[dict]) -> dict:
    """Min and median of each figure over the repeats of one command."""
    out: dict = {"repeats": len(runs), "runs": runs}
    for key in ("wall_s", "cpu_s", "peak_rss_mb", "peak_tree_pss_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[f"{key}_min"], out[f"{key}_median"], out[f"{key}_max"] = min(values), statistics.median(values), max(values)
    return out


def timed(key: str, args: list[str], tmp: Path, i: int) -> dict:
    out = tmp / f"{key}-{i}"
    cmd = [*optbench_command(), *args, "--out", str(out)]
    # this checkout's code, whatever is installed (the commit recorded with the result is what ran)
    env = {**os.environ, "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    load0 = os.getloadavg()
    r = run_command(cmd, env=env, cwd=ROOT)
    if r["returncode"] != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r['returncode']}): {r['output_tail'][-1500:]}")
    cells = list((out / "cells").glob("*.json"))
    r.update(command="optbench " + " ".join(args), cells=len(cells), loadavg_before=load0,
             loadavg_after=os.getloadavg(), plots=sorted(p.name for p in out.glob("*.png")))
    del r["output_tail"]
    print(f"  {key} #{i}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak {r['peak_rss_mb']:.0f} MB "
          f"(tree {r['peak_tree_pss_mb'] or 0:.0f} MB), {len(cells)} cells, load {load0[0]:.1f}", file=sys.stderr, flush=True)
    return r


def commands_part(quick: bool, repeats: int, main_repeats: int, memory_1000: bool) -> dict:
    from bench_scaling import MIRROR_ITERATIONS, mirror_suite

    rows: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp_:
        tmp = Path(tmp_)
        warm = timed("warm-up", ["run", "--suite", "mujoco-states", "--quick", "--no-plots"], tmp, 0)
        for key, args in command_rows(quick):
            n = 1 if quick else (main_repeats if key == "main" else repeats)
            rows[key] = {"command": "optbench " + " ".join(args), "target_s": TARGETS_S[key],
                         **summarize_runs([timed(key, args, tmp, i) for i in range(n)])}
        if memory_1000:
            mirror = mirror_suite(tmp / "mirror")
            args = ["run", "--suite", str(mirror), "--states", "1000", "--iterations", str(10 if quick else MIRROR_ITERATIONS)]
            r = summarize_runs([timed("mirror-1000", args, tmp, 0)])
            r["command"] = ("optbench run --suite MIRROR --states 1000 --iterations "
                            f"{10 if quick else MIRROR_ITERATIONS}  (MIRROR: bench_scaling.mirror_suite)")
            rows["states_1000"] = r
    return {"rows": rows, "warm_up": {k: warm[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")}, "quick": quick}


def worker_startup(rounds: int = 3) -> dict:
    """Seconds from creating a run's process pool (``usable_cores()`` workers) until each has
    imported what a cell needs: the once-per-run cost of the default executor."""
    from optbench.runner.executors import ProcessExecutor, usable_cores

    n = usable_cores()
    times = []
    for _ in range(rounds):
        with ProcessExecutor(n, threads=1) as ex:
            tic = time.perf_counter()
            done = [t for _, t in ex.run(worker_startup_probe, None, list(range(n)))]
            times.append(max(done) - tic)
    return {"workers": n, "seconds_min": min(times), "seconds_median": statistics.median(times), "seconds_all": times}


# ------------------------------------------------------------------------------------- (d)
def simulate(costs: list[tuple[str, float]], build: dict[str, float], workers: int, cache: int) -> float:
    """Makespan of tasks (objective, seconds) in submission order on ``workers`` workers, each
    task going to the first free worker, which first builds its objective unless it is among
    the last ``cache`` it built (``optbench.runner.grid``'s per-worker cache)."""
    free = [0.0] * workers
    built: list[list[str]] = [[] for _ in range(workers)]
    for objective, seconds in costs:
        w = min(range(workers), key=free.__getitem__)
        if objective not in built[w]:
            free[w] += build[objective]
            built[w] = (built[w] + [objective])[-cache:]
        else:
            built[w].remove(objective)
            built[w].append(objective)
        free[w] += seconds
    return max(free)


def cells_part(suite_name: str, states: int | None, fixed: dict | None) -> dict:
    """Every cell of the suite (all optimizers) in this process, timed by thread CPU time."""
    from optbench.optimizers.base import make_optimizer
    from optbench.runner.drive import run_optimizer
    from optbench.runner import grid
    from optbench.runner.executors import usable_cores
    from optbench.suites.sources import build_objective, resolve_context
    from optbench.suites.spec import load_suite

    suite = load_suite(suite_name)
    plan = grid.plan_run(suite, states=states)
    build, cells = {}, []
    for entry in suite.objectives:
        tic = time.thread_time()
        built = build_objective(entry, suite, plan.settings)
        obj = built.objective
        obj.score(obj.initial_params())  # the objective record's start scores
        build[entry.name] = time.thread_time() - tic
        for name, e, seed in plan.cells():
            if name != entry.name:
                continue
            tic = time.thread_time()
            opt = make_optimizer(e.spec, **{**built.context, **resolve_context(dict(e.context), suite, name)})
            trained = opt.trained_budget()
            with torch.inference_mode(False):
                run_optimizer(opt, obj, plan.budget(e), seed=seed, score_at=plan.settings["score_at"],
                              keep_params_at=[trained] if trained else [])
            cells.append({"objective": name, "label": e.label, "seed": seed, "iterations": plan.budget(e),
                          "cpu_s": time.thread_time() - tic})
            print(f"  {name} · {e.label}: {cells[-1]['cpu_s']:.1f} s CPU", file=sys.stderr, flush=True)
    workers = usable_cores()
    default = set(suite.default or [e.label for e in suite.optimizers])
    by_label: dict[str, float] = {}
    for c in cells:
        by_label[c["label"]] = by_label.get(c["label"], 0.0) + c["cpu_s"]
    estimates = {}
    for selection, labels in (("default", default), ("all", {e.label for e in suite.optimizers})):
        mine = [(c["objective"], c["cpu_s"]) for c in cells if c["label"] in labels]
        makespan = simulate(mine, build, workers, grid._BUILT_MAX)
        estimates[selection] = {"labels": sorted(labels), "cells": len(mine), "cpu_s": sum(s for _, s in mine),
                                "makespan_s": makespan, "workers": workers}
        if fixed:
            estimates[selection]["estimate_s"] = makespan + fixed["seconds"]
    return {"suite": suite.name, "states": plan.settings["states"], "build_cpu_s": build, "cells": cells,
            "cpu_s_by_label": by_label, "estimates": estimates, "fixed": fixed, "clock": "thread CPU time, 1 thread"}


def fixed_costs(commands: dict | None, startup: dict | None) -> dict | None:
    """What a run pays besides its cells, from (a) and (c): the quick run's wall clock minus its
    cells' share is not separable from outside, so the estimate adds the warm quick run's
    wall clock (start-up, import, suite loading, 10-state cells, tables and plots) as an upper
    bound of the fixed part."""
    if not commands or "quick" not in commands.get("rows", {}):
        return None
    return {"seconds": commands["rows"]["quick"]["wall_s_median"], "from": "median wall clock of the --quick command",
            "worker_startup_s": None if not startup else startup["seconds_median"]}


# ------------------------------------------------------------------------------------- output
def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))
    m = result["machine"]
    g = result.get("gemm_before", {})
    t = Table(title=f"whole commands — {m['cpu']}, {m['cores']} cores, fp32 GEMM {g.get('gflops', float('nan')):.0f} "
                    f"GFLOP/s (1 thread), load {m['loadavg'][0]:.1f} at start, {m['date']}")
    for col in ("command", "runs", "wall s min / median", "target", "CPU s", "peak MB: RSS of the largest process / PSS of all"):
        t.add_column(col)
    for key, r in result.get("commands", {}).get("rows", {}).items():
        target = r.get("target_s")
        verdict = "" if target is None else (" ✓" if r["wall_s_median"] <= target else " ✗")
        t.add_row(r["command"], str(r["repeats"]), f"{r['wall_s_min']:.1f} / {r['wall_s_median']:.1f}",
                  "" if target is None else f"≤ {target:.0f} s{verdict}", f"{r['cpu_s_median']:.1f}",
                  f"{r['peak_rss_mb_median']:.0f} / {r.get('peak_tree_pss_mb_median', float('nan')):.0f}")
    console.print(t)
    if "startup" in result:
        s = result["startup"]
        console.print(f"worker start-up (once per run): {s['seconds_median']:.2f} s median for {s['workers']} workers")
    if "cells" in result:
        c = result["cells"]
        for sel, e in c["estimates"].items():
            est = f", estimate {e['estimate_s']:.0f} s with fixed costs" if "estimate_s" in e else ""
            console.print(f"{c['suite']} {sel}: {e['cells']} cells, {e['cpu_s']:.0f} s CPU, makespan on {e['workers']} "
                          f"workers {e['makespan_s']:.0f} s{est}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=[*PARTS, "all"], default="commands",
                    help="commands (default: (a)-(c)), cells ((d)), or all")
    ap.add_argument("--quick", action="store_true", help="smoke run: the short commands once, a 1000-state run of 10 iterations")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the quick and synthetic commands (default 3)")
    ap.add_argument("--main-repeats", type=int, default=2, help="runs of the main command (default 2)")
    ap.add_argument("--no-memory-1000", action="store_true", help="skip the 1000-state run")
    ap.add_argument("--suite", default="mujoco-states", help="(d): the suite whose cells are timed")
    ap.add_argument("--states", type=int, help="(d): states per objective (default: the suite's)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "commands.json")
    ap.add_argument("--update", action="store_true", help="keep the other parts already in --out")
    args = ap.parse_args(argv)
    for name in ("repeats", "main_repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    torch.set_num_threads(1)  # the workers' setting; the GEMM rate is quoted per core
    backends.enable()  # as the command line does (recorded by machine())
    result: dict = json.loads(args.out.read_text()) if args.update and args.out.is_file() else {}
    parts = PARTS if args.part == "all" else (args.part,)
    if "commands" in parts:
        result["machine"] = machine()
        result["gemm_before"] = gemm_rate()
        print("worker start-up ...", file=sys.stderr, flush=True)
        result["startup"] = worker_startup()
        print("commands ...", file=sys.stderr, flush=True)
        result["commands"] = commands_part(args.quick, args.repeats, args.main_repeats, not args.no_memory_1000)
        result["gemm_after"] = gemm_rate()
        result["machine"]["loadavg_end"] = list(os.getloadavg())
        result["args"] = {k: str(v) for k, v in vars(args).items()}
    if "cells" in parts:
        result["machine_cells"] = machine()
        print("cell costs ...", file=sys.stderr, flush=True)
        result["cells"] = cells_part(args.suite, args.states, fixed_costs(result.get("commands"), result.get("startup")))
        result["cells"]["quick"] = args.quick or args.states is not None  # not the suite's run: a smoke run
        result["machine_cells"]["loadavg_end"] = list(os.getloadavg())
    if "machine" not in result:
        result["machine"] = result["machine_cells"]
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
