"""``optbench curves collect | analyze | gap``: learning-curve studies over training runs (SPEC R8).

    optbench curves collect ~/optbench-runs/HalfCheetah-v5-* --out results/r8/summary.json
    optbench curves analyze results/r8/summary.json --out results/r8
    optbench curves gap ~/optbench-runs/HalfCheetah-v5-direct-s0 --steps 50000,100000,200000 --out results/r8/gap

docs/learning-curves.md describes the estimators and the file formats.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from optbench.cli import UserError, console, err_console, set_threads


def _steps(text: str) -> list[int] | None:
    if text.strip() == "all":
        return None
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps like 50000,100000 or 'all', got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one step")
    return out


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return out


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curves", help="learning curves over training runs: collect, analyze, gap over training",
                       description="Learning-curve studies of trained agents (seeds, IQM, bootstrap intervals, "
                       "probability of improvement; amortization gap at snapshots). See docs/learning-curves.md.")
    cs = p.add_subparsers(dest="curves_command", required=True)

    c = cs.add_parser("collect", help="gather the evaluation records of training runs into one summary JSON",
                      description="One record per run directory (its checkpoint's evaluation history with "
                      "per-episode returns, and its wall clock). Runs of a task must share the evaluation grid and "
                      "episode count; evaluations without per-episode returns (older trainer, other episode seeds) "
                      "are refused.")
    c.add_argument("runs", nargs="+", type=Path, help="training output directories (written by `optbench train`)")
    c.add_argument("--out", type=Path, required=True, help="summary file to write, e.g. results/r8/summary.json")
    c.add_argument("--common-grid", action="store_true",
                   help="keep only the evaluation steps every run of a task has (warns per run; recorded in the file)")
    c.set_defaults(func=cmd_collect)

    a = cs.add_parser("analyze", help="learning curves, final-return table and probabilities of improvement",
                      description="Per (task, policy, iterations): mean and IQM across seeds at every evaluation "
                      "step with stratified-bootstrap intervals, the final-return table, P(X > Y) between "
                      "configurations; Markdown, JSON and plots in --out.")
    a.add_argument("summary", type=Path, help="summary file written by `optbench curves collect` (or by hand)")
    a.add_argument("--out", type=Path, required=True, help="output directory")
    a.add_argument("--at", type=int, help="step of the final-return table (default: the last evaluation step)")
    a.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples (default 50000, rliable's)")
    a.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    a.add_argument("--gap", type=Path, nargs="*",
                   help="gap files or directories of them (default: gap/ beside the summary, if it exists)")
    a.set_defaults(func=cmd_analyze)

    g = cs.add_parser("gap", help="amortization gap of a run's optimizer at its snapshots",
                      description="At each chosen snapshot: the snapshot's objective on states of its own policy, "
                      "its optimizer at the trained budget (direct 1, iterative K), then the gap protocol of "
                      "`optbench report` (Adam from the estimates). Writes OUT/gap-<task>-<configuration>-s<seed>"
                      ".json after every snapshot; a re-run reuses measured steps.")
    g.add_argument("run", type=Path, help="training output directory with snapshots/")
    g.add_argument("--steps", type=_steps, default=None, help="snapshot steps, e.g. 50000,100000 (default: all)")
    g.add_argument("--out", type=Path, required=True, help="directory of the gap files, e.g. results/r8/gap")
    g.add_argument("--states", type=int, default=100, help="states per snapshot (default 100, as mujoco-states)")
    g.add_argument("--score-samples", type=int, default=128, help="scoring draws per state (default 128)")
    g.add_argument("--score-seed", type=int, default=12345)
    g.add_argument("--export-seed", type=int, default=2024, help="first episode seed of the state collection")
    g.add_argument("--optimizer-seeds", type=_ints, default=[0], help="seeds of the optimizer runs (default 0)")
    g.add_argument("--gap-lr", type=float, default=5e-3)
    g.add_argument("--gap-steps", type=int, default=100)
    g.add_argument("--gap-samples", type=int, default=10)
    g.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the interval over states")
    g.add_argument("--level", type=float, default=0.95)
    g.add_argument("--seed", type=int, default=0, help="seed of the Adam refinement and the bootstrap")
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, help="torch CPU threads")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_gap)


def _command(args: argparse.Namespace) -> str:
    return "optbench " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))


def cmd_collect(args: argparse.Namespace) -> int:
    from optbench.metrics.learning_curves import CurvesError, collect
    from optbench.runner.store import atomic_write_json

    try:
        doc, warnings = collect(args.runs, common_grid=args.common_grid, command=_command(args))
    except CurvesError as exc:
        raise UserError(str(exc)) from None
    for w in warnings:
        err_console.print(w, highlight=False, soft_wrap=True)
    atomic_write_json(args.out, doc)
    n = len(doc["records"])
    console.print(f"wrote {args.out}: {n} record{'s' * (n != 1)} "
                  f"({', '.join(sorted({r['task'] for r in doc['records']}))})", highlight=False)
    return 0


def _gap_paths(args: argparse.Namespace) -> list[Path]:
    if args.gap is None:
        d = args.summary.expanduser().parent / "gap"
        return sorted(d.glob("gap-*.json")) if d.is_dir() else []
    out = []
    for p in args.gap:
        if p.is_dir():
            out += sorted(p.glob("gap-*.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"no gap file or directory at {p}")
    return out


def cmd_analyze(args: argparse.Namespace) -> int:
    from optbench.runner.gap_over_training import load_gap_files
    from optbench.metrics.learning_curves import CurvesError, analyze, load_summary
    from optbench.reporting.learning_curve_plots import write_analysis

    if args.reps < 1:
        raise UserError(f"--reps must be >= 1, got {args.reps}")
    if not 0 < args.level < 1:
        raise UserError(f"--level must be in (0, 1), got {args.level}")
    try:
        doc = load_summary(args.summary)
        gaps = load_gap_files(_gap_paths(args))
        res = analyze(doc, at=args.at, reps=args.reps, level=args.level, seed=args.seed)
    except CurvesError as exc:
        raise UserError(str(exc)) from None
    path = write_analysis(doc, res, args.out, source=str(args.summary), command=_command(args), gap_docs=gaps)
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    console.print(f"wrote {path} and {path.with_suffix('.json').name} with {len(pngs)} plots", highlight=False)
    return 0


def cmd_gap(args: argparse.Namespace) -> int:
    from optbench.runner.gap_over_training import gap_over_training, protocol
    from optbench.metrics.learning_curves import CurvesError

    set_threads(args.threads)
    log = (lambda m: None) if args.quiet else (lambda m: err_console.print(f"[dim]{m}[/]", highlight=False))
    try:
        proto = protocol(states=args.states, score_samples=args.score_samples, score_seed=args.score_seed,
                         export_seed=args.export_seed, optimizer_seeds=tuple(args.optimizer_seeds),
                         gap_lr=args.gap_lr, gap_steps=args.gap_steps, gap_samples=args.gap_samples,
                         gap_seed=args.seed, resamples=args.resamples, level=args.level)
        path = gap_over_training(args.run, args.steps, args.out, proto, device=args.device, command=_command(args),
                                 log=log)
    except CurvesError as exc:
        raise UserError(str(exc)) from None
    console.print(f"wrote {path}", highlight=False)
    return 0
