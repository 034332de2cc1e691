"""``optbench run | list | show``: run a suite, list what exists, re-print stored results."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from optbench.cli import UserError, console, set_threads


def _int_list(text: str) -> list[int]:
    """Seeds ``0,1,2`` or ``0..4`` (inclusive): a non-empty list without repeats."""
    from optbench.suites.spec import SuiteError, check_seeds

    try:
        if "," not in text and ".." in text:
            lo, hi = text.split("..")
            if int(hi) < int(lo):
                raise argparse.ArgumentTypeError(f"empty range {text!r} (the range is inclusive and counts up, "
                                                 f"e.g. {hi.strip()}..{lo.strip()})")
            seeds = list(range(int(lo), int(hi) + 1))
        else:
            seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2 or 0..4, got {text!r}") from None
    try:
        check_seeds(seeds, "the list")
    except SuiteError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None
    return seeds


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _split_specs(text: str) -> list[str]:
    """Split ``a,b(x=1,y=2),c`` at top-level commas only."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


# Why the default is one thread per process and one process per core: benchmarks/bench_scaling.py
# part (b) (the benchmark table of docs/benchmarks.md) times the default mujoco-states run on an idle 2-core machine
# with one torch thread, with torch's default of two (slower), and in two 1-thread worker processes
# (about half the time). The optimizers' tensors are too small for intra-op threads to pay; whole
# cells, computed side by side, do.
THREADS_HELP = ("torch CPU threads per process (default 1; more rarely pays at these sizes: the default executor "
                "already runs one worker per core)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a benchmark suite", description="Run every optimizer of a suite on its "
                       "objectives; results are stored (resumably) and summarized in tables and plots.")
    p.add_argument("--suite", help="suite name (see `optbench list`) or path to a suite directory")
    p.add_argument("--objectives", type=_split_specs, help="instead of --suite: comma-separated objective package "
                   "directories, run with the default optimizer set (the suite written is RUN/suite/suite.toml)")
    p.add_argument("--plugin", action="append", default=[], help="a module (name or .py path) that registers "
                   "optimizers with @optbench.optimizers.register; repeatable (see docs/bring-your-own.md)")
    p.add_argument("--optimizers", type=_split_specs, help="comma-separated suite labels or optimizer specs "
                   "(default: the suite's [default] selection, else all of its optimizers)")
    p.add_argument("--all", action="store_true", help="every optimizer of the suite, not only its [default] selection")
    p.add_argument("--iterations", type=int, help="iteration budget (>= 1) for every optimizer (overrides the suite)")
    p.add_argument("--seeds", type=_int_list, help="seeds, e.g. 0,1,2 or 0..9")
    p.add_argument("--states", type=int, help="number of states per objective")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--out", type=Path, help="run directory (default: results/runs/SUITE-CONFIGHASH)")
    p.add_argument("--quick", action="store_true", help="small budget from the suite's [quick] table (smoke runs)")
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.add_argument("--no-plots", action="store_true", help="skip writing the PNG plots")
    add_executor_options(p, what="cells", auto=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("tune", help="sweep a suite's [tuning] grids on held-out states and choose settings",
                       description="Run every setting of the suite's [tuning] grids on the objectives' held-out "
                       "states (a resumable run), choose one setting per grid, and write tuning.json and tuning.md "
                       "beside suite.toml.")
    p.add_argument("--suite", required=True, help="suite name or path to a suite directory")
    p.add_argument("--out", type=Path, help="run directory of the sweep (default: results/runs/SUITE-tuning-HASH)")
    p.add_argument("--plugin", action="append", default=[], help="a module (name or .py path) that registers "
                   "optimizers; repeatable")
    p.add_argument("--criterion", default="anytime",
                   help="how settings are ranked: anytime (default: area under the normalized-J curve over log "
                        "Q-evaluations), anytime:iterations, anytime:flops, or budget:N (normalized J at iteration N)")
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    add_executor_options(p, what="cells", auto=True)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("list", help="list suites and optimizers")
    p.add_argument("--plugin", action="append", default=[], help="also import this plugin module (repeatable)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print the tables of a stored run")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    p.set_defaults(func=cmd_show)


def add_executor_options(p: argparse.ArgumentParser, what: str, auto: bool = False) -> None:
    """``--executor/--workers/--address`` (shared by ``run``, ``tune`` and ``train-grid``).

    ``auto``: offer the ``auto`` executor and make it the default (``run`` and ``tune``, whose
    cells are independent and small enough that one 1-thread worker per core is the fastest
    measured setting); otherwise the default stays ``inprocess``.
    """
    g = p.add_argument_group("executor", f"where the {what} are computed (see docs/ray.md)")
    if auto:
        choices, default = ["auto", "inprocess", "processes", "ray"], "auto"
        first = ("auto (default): one 1-thread worker process per usable core, in this process on a 1-core "
                 "machine or a GPU; inprocess: one after another in this process (for debugging; the same "
                 "results, bit for bit)")
    else:
        choices, default = ["inprocess", "processes", "ray"], "inprocess"
        first = "inprocess (default): one after another in this process"
    g.add_argument("--executor", choices=choices, default=default,
                   help=f"{first}; processes: a pool of local processes; ray: Ray tasks on a local or existing cluster")
    g.add_argument("--workers", type=int, help=f"auto, processes: pool size (default: one per usable core); ray: "
                   f"{what} in flight at once, and the size of a local cluster started for the run (default: all cores)")
    g.add_argument("--address", help="ray: address of an existing cluster (e.g. auto, 10.0.0.1:6379, "
                   "ray://head:10001); default: $RAY_ADDRESS, else a local cluster")


def executor_from_args(args: argparse.Namespace, device: str = "cpu"):
    """Build the executor chosen on the command line (one-line errors for bad choices)."""
    from optbench.runner.executors import ExecutorError, make_executor

    try:
        return make_executor(args.executor, workers=args.workers, address=args.address,
                             threads=getattr(args, "threads", None), device=device)
    except ExecutorError as exc:
        raise UserError(str(exc)) from None


def _check_device(device: str, local: bool = True) -> None:
    """A device torch knows; with ``local``, one this machine has (Ray workers may have GPUs
    the driver lacks)."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}") from None
    if local and dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available on this machine")


def _execute(plan, out: Path, args: argparse.Namespace):
    """Run every pending cell of ``plan`` into ``out`` with the executor of ``args``."""
    from optbench.runner.executors import ExecutorError
    from optbench.runner.grid import run_plan

    with executor_from_args(args, args.device) as executor:
        try:
            return run_plan(plan, out, executor=executor, echo=lambda line: console.print(line, highlight=False))
        except ExecutorError as exc:
            raise UserError(f"{exc}; finished cells are saved, re-run the same command to resume") from None


def cmd_run(args: argparse.Namespace) -> int:
    from optbench.reporting.plots import plot_run
    from optbench.reporting.tables import print_run
    from optbench.runner.grid import CellsFailed, plan_run
    from optbench.suites.spec import load_suite

    _check_device(args.device, local=args.executor != "ray")
    set_threads(args.threads)
    load_plugins(args.plugin)
    if (args.suite is None) == (args.objectives is None):
        raise UserError("give either --suite S or --objectives PKG[,PKG...]")
    out = args.out
    if args.objectives is not None:
        from optbench.suites.adhoc import write_adhoc_suite

        directory, out = write_adhoc_suite(args.objectives, args.out)
        suite = load_suite(str(directory.resolve()))
    else:
        suite = load_suite(args.suite)
    if args.all and args.optimizers:
        raise UserError("give --all (every optimizer of the suite) or --optimizers, not both")
    optimizers = args.optimizers
    if optimizers is None and not args.all and suite.default:
        optimizers = list(suite.default)
        console.print(f"{suite.name}: its default selection, {len(optimizers)} of {len(suite.optimizers)} optimizers "
                      "(suite.toml [default]); --all runs every one", highlight=False)
    plan = plan_run(suite, optimizers=optimizers, iterations=args.iterations, seeds=args.seeds,
                    states=args.states, quick=args.quick, device=args.device)
    out = out or plan.default_out()
    tic = time.perf_counter()
    failed = None
    try:
        store = _execute(plan, out, args)
    except CellsFailed as exc:  # the other cells are stored: show them, then fail
        store, failed = exc.store, exc
    print_run(store, console)
    if not args.no_plots:
        paths = plot_run(store)
        console.print("plots: " + ", ".join(str(p) for p in paths))
    console.print(f"results in {out} ({time.perf_counter() - tic:.1f} s); re-print with `optbench show {out}`")
    if failed is not None:
        raise UserError(str(failed))
    return 0


def load_plugins(modules: list[str]) -> None:
    """``--plugin`` modules (comma-separated or repeated) and installed ``optbench.optimizers``
    entry points, imported before anything names an optimizer."""
    from optbench.optimizers.plugins import import_plugins, load_entry_points

    load_entry_points()
    import_plugins([m.strip() for arg in modules for m in arg.split(",") if m.strip()])


def cmd_tune(args: argparse.Namespace) -> int:
    from optbench.runner.grid import plan_run
    from optbench.runner.store import atomic_write_json, write_text_atomic
    from optbench.runner.tuning import markdown, parse_criterion, select, suite_lines, tuning_path, tuning_suite
    from optbench.suites.spec import load_suite

    _check_device(args.device, local=args.executor != "ray")
    set_threads(args.threads)
    load_plugins(args.plugin)
    suite = load_suite(args.suite)
    sweep = tuning_suite(suite)
    criterion = parse_criterion(args.criterion, suite.tuning.iterations)  # a bad criterion fails before the sweep
    plan = plan_run(sweep, device=args.device)
    out = args.out or plan.default_out()
    store = _execute(plan, out, args)
    result = select(store, suite, criterion)
    result["run"] = str(out)
    path = tuning_path(suite)
    atomic_write_json(path, result)
    write_text_atomic(path.with_suffix(".md"), markdown(result))
    console.print(f"criterion {criterion.name}: {criterion.describe()}", highlight=False)
    for g in result["grids"]:
        console.print(f"[bold]{g['label']}[/]: chosen [cyan]{g['chosen']}[/] "
                      f"(score {g['score'][g['chosen']]:.3f}); per objective: "
                      + ", ".join(f"{o}: {p['best']}" for o, p in g["per_objective"].items()), highlight=False)
        if g["at_edge"]:
            console.print(f"[yellow]warning:[/] {g['label']}: the chosen setting is at the grid's edge ("
                          + ", ".join(f"{side} {axis}" for axis, side in g["at_edge"].items())
                          + "); extend the grid in suite.toml", highlight=False)
    console.print(f"wrote {path} and {path.with_suffix('.md')}; suite.toml entries for the chosen settings:")
    for line in suite_lines(result):
        console.print("    " + line, highlight=False, markup=False)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from optbench.optimizers import REGISTRY
    from optbench.suites.spec import available_suites, load_suite

    load_plugins(args.plugin)

    t = Table(title="suites", title_justify="left")
    for col in ("name", "objectives", "optimizers", "description"):
        t.add_column(col)
    for path in available_suites():
        s = load_suite(str(path))
        t.add_row(s.name, str(len(s.objectives)), str(len(s.optimizers)), " ".join(s.description.split())[:90])
    console.print(t)
    t = Table(title="optimizers", title_justify="left")
    t.add_column("name")
    t.add_column("kind")
    t.add_column("description")
    for name, cls in sorted(REGISTRY.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        t.add_row(name, "learned" if cls.amortized else "classical", doc)
    console.print(t)
    console.print("nevergrad:NAME takes any optimizer of nevergrad's registry; scipy:METHOD any scipy.optimize.minimize method; "
                  "direct+SPEC starts SPEC from the direct network's estimate (e.g. direct+adam, direct+iterative).")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from optbench.reporting.tables import markdown_run, print_run
    from optbench.runner.store import ResultsStore, write_text_atomic

    store = ResultsStore.open_existing(args.run)
    print_run(store, console)
    if args.markdown:
        write_text_atomic(args.markdown, markdown_run(store))
        console.print(f"wrote {args.markdown}")
    return 0
