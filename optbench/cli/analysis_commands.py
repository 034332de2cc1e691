"""``optbench analyze | report | compare``: analyses of stored runs, and self-contained Markdown reports.

    optbench analyze results/runs/mujoco-states-XXXX      # computes and stores the analyses (resumable)
    optbench report results/runs/mujoco-states-XXXX --out results/mujoco-states/report
    optbench compare RUN_A RUN_B --out /tmp/a-vs-b

``analyze`` is the experiment (it rebuilds objectives and runs optimizers); ``report`` and
``compare`` only read the run directory. The command modules import them inside the command
functions so that ``optbench --help`` never imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optbench.cli import UserError, console, err_console, set_threads


def _dims(text: str) -> tuple[int, int]:
    try:
        i, j = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two action dimensions like 0,1, got {text!r}") from None
    return i, j


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="compute and store the analyses of a run (gap, modes, landscapes, exploitation)",
                       description="Rebuild the run's objectives from its stored configuration and compute the analyses "
                       "that run optimizers or evaluate Q: amortization gap, mode coverage, landscapes, exploitation "
                       "checks and the MuJoCo Monte Carlo value check. Each finished unit is stored as one file under "
                       "RUN/analyses/, so a killed analyze resumes where it stopped; `optbench report` reads them.")
    p.add_argument("run", type=Path, help="run directory (written by `optbench run`)")
    p.add_argument("--only", help="comma-separated analyses to compute: gap, modes, landscapes, exploitation, "
                   "rollouts (default all)")
    p.add_argument("--suite", dest="suite_dir", help="suite directory the run used (default: found by the run's suite name)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device for the rebuilt objectives (default cpu)")
    p.add_argument("--gap-lr", type=float, default=5e-3)
    p.add_argument("--gap-steps", type=int, default=100)
    p.add_argument("--gap-samples", type=int, default=10)
    p.add_argument("--mode-runs", type=int, default=10, help="runs per state for mode coverage (default 10)")
    p.add_argument("--mode-states", type=int, default=16, help="states used for mode coverage (default 16)")
    p.add_argument("--random-starts", action="store_true", help="mode coverage runs from random starts")
    p.add_argument("--landscape-state", type=int, help="state index of the landscapes (default: most disagreement)")
    p.add_argument("--landscape-dims", type=_dims, help="two action dimensions, e.g. 0,1 (default: largest spread)")
    p.add_argument("--landscape-resolution", type=int, default=41)
    p.add_argument("--rollout-states", type=int, default=4)
    p.add_argument("--rollout-runs", type=int, default=3)
    p.add_argument("--rollout-horizon", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="seed of the refinements, random starts and rollouts")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("report", help="write a Markdown report (tables, plots, analyses) of a stored run",
                       description="Write report.md and its PNGs: every table and plot of the run, fixed-target "
                       "statistics with ECDFs, and the analyses `optbench analyze` stored (amortization gap, mode "
                       "coverage, landscapes, exploitation checks). Reads the run directory only; analyses not "
                       "stored yet are named in the report with the command that computes them.")
    p.add_argument("run", type=Path, help="run directory (written by `optbench run`)")
    p.add_argument("--out", type=Path, help="report directory (default: RUN/report)")
    p.add_argument("--no-gap", action="store_true", help="leave out the amortization gap")
    p.add_argument("--no-modes", action="store_true", help="leave out mode coverage")
    p.add_argument("--mode-threshold", type=float, default=0.1,
                   help="mode clustering distance as a fraction of 2√|A| (default 0.1)")
    p.add_argument("--no-landscapes", action="store_true", help="leave out landscape plots")
    p.add_argument("--no-exploitation", action="store_true", help="leave out exploitation checks")
    p.add_argument("--no-rollouts", action="store_true", help="leave out the MuJoCo Monte Carlo value check")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="put two stored runs side by side")
    p.add_argument("run_a", type=Path, help="run directory A")
    p.add_argument("run_b", type=Path, help="run directory B")
    p.add_argument("--out", type=Path, help="also write compare.md and compare_ecdf.png here")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--level", type=float, default=0.95)
    p.set_defaults(func=cmd_compare)


def _check(args: argparse.Namespace) -> None:
    """The report's and compare's own options (``optbench analyze`` checks its settings itself)."""
    if args.resamples < 1:
        raise UserError(f"--resamples must be >= 1, got {args.resamples}")
    if getattr(args, "mode_threshold", 0.1) <= 0:
        raise UserError(f"--mode-threshold must be > 0, got {args.mode_threshold}")
    if not 0 < args.level < 1:
        raise UserError(f"--level must be in (0, 1), got {args.level}")


def _log(quiet: bool):
    """Progress lines on stderr, one line each (never wrapped), or none with ``--quiet``."""
    if quiet:
        return lambda msg: None
    return lambda msg: err_console.print(f"[dim]{msg}[/]", highlight=False, soft_wrap=True)


def cmd_analyze(args: argparse.Namespace) -> int:
    from optbench.runner.analysis import AnalysisOptions, analyze_run
    from optbench.runner.stored import ANALYSES

    set_threads(args.threads)
    kinds = ANALYSES if args.only is None else tuple(k.strip() for k in args.only.split(",") if k.strip())
    opts = AnalysisOptions(analyses=kinds, gap_lr=args.gap_lr, gap_steps=args.gap_steps, gap_samples=args.gap_samples,
                           mode_runs=args.mode_runs, mode_states=args.mode_states, mode_random_starts=args.random_starts,
                           landscape_resolution=args.landscape_resolution, landscape_state=args.landscape_state,
                           landscape_dims=args.landscape_dims, rollout_states=args.rollout_states,
                           rollout_runs=args.rollout_runs, rollout_horizon=args.rollout_horizon, seed=args.seed,
                           suite_dir=args.suite_dir, device=args.device)
    log = _log(args.quiet)
    done = analyze_run(args.run, opts, log=log)
    console.print(f"{done.root}: {done.computed} analysis units computed, {done.reused} already stored "
                  f"(of {done.total}); `optbench report {done.root}` shows them", highlight=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from optbench.reporting.report import ReportOptions, write_report

    _check(args)
    opts = ReportOptions(gap=not args.no_gap, modes=not args.no_modes, mode_threshold=args.mode_threshold,
                         landscapes=not args.no_landscapes, exploitation=not args.no_exploitation,
                         rollouts=not args.no_rollouts, resamples=args.resamples, level=args.level, seed=args.seed)
    log = _log(args.quiet)
    out = args.out or Path(args.run) / "report"
    path = write_report(args.run, out, opts, log=log)
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    console.print(f"wrote {path} with {len(pngs)} plots ({', '.join(pngs)})", highlight=False)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.markdown import Markdown

    from optbench.reporting.report import ReportOptions, compare_runs

    _check(args)
    text, path = compare_runs(args.run_a, args.run_b, args.out, ReportOptions(resamples=args.resamples,
                                                                              level=args.level))
    console.print(Markdown(text))
    if path is not None:
        console.print(f"wrote {path}", highlight=False)
    return 0
