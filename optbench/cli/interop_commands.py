"""``optbench import sb3|cleanrl`` and ``optbench export-run``: agents in from other libraries,
results out to the analysers the field uses.

    optbench import sb3 model.zip --task Hopper-v5 --out packages/hopper-sb3
    optbench import cleanrl runs/sac.cleanrl_model --task Hopper-v5 --alpha 0.2 --out packages/hopper-cleanrl
    optbench run --objectives packages/hopper-sb3
    optbench export-run results/runs/objectives-1234abcd --format ioh --out ioh-data
"""

from __future__ import annotations

import argparse

from optbench.cli import console, set_threads
from optbench.cli.agent_commands import package_output_options


def _package_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="gymnasium task id the agent was trained on, e.g. Hopper-v5")
    package_output_options(p)
    p.add_argument("--name", default=None, help="agent name in tables (default TASK-LIBRARY-FILESTEM)")


def cmd_import(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    from optbench.agents.importers import import_cleanrl, import_sb3

    common = dict(n_states=args.states, heldout=args.heldout, eval_episodes=args.episodes, seed=args.seed,
                  overwrite=args.force, name=args.name)
    if args.library == "sb3":
        path = import_sb3(args.model, args.task, args.out, **common)
    else:
        path = import_cleanrl(args.checkpoint, args.task, args.out, alpha=args.alpha, **common)
    from optbench.agents.package import load_package

    pkg = load_package(path)
    ev = pkg.meta["eval"]
    console.print(f"wrote objective package {path} ({pkg.name}: α = {pkg.alpha:.4g}, deterministic return "
                  f"{ev['mean']:.1f} ± {ev['std']:.1f} over {ev['episodes']} episodes)", highlight=False)
    return 0


def cmd_export_run(args: argparse.Namespace) -> int:
    from optbench.reporting.interop import export_run

    files = export_run(args.run, args.format, args.out, force=args.force)
    console.print(f"wrote {len(files)} files in {args.out} ({args.format})", highlight=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``import`` and ``export-run``."""
    p = sub.add_parser("import", help="import a SAC agent of another library as an objective package",
                       description="Turn a Stable-Baselines3 or CleanRL SAC agent into an objective package (the "
                       "format of `optbench export`); nothing in the file is executed (weights_only loading, no "
                       "unpickling).")
    libs = p.add_subparsers(dest="library", required=True)
    q = libs.add_parser("sb3", help="a Stable-Baselines3 SAC model zip (model.save)")
    q.add_argument("model", help="the model's .zip")
    _package_options(q)
    q.set_defaults(func=cmd_import)
    q = libs.add_parser("cleanrl", help="a CleanRL sac_continuous_action checkpoint (torch.save of the state dicts)")
    q.add_argument("checkpoint", help="the torch.save'd (actor, qf1, qf2) tuple or {actor, qf1, qf2} dict")
    q.add_argument("--alpha", type=float, default=None, help="the agent's entropy temperature α (required unless "
                   "the checkpoint holds log_alpha or alpha)")
    _package_options(q)
    q.set_defaults(func=cmd_import)

    p = sub.add_parser("export-run", help="write a stored run for IOHprofiler, COCO or pandas",
                       description="Export a run directory's anytime traces: --format ioh (IOHprofiler JSON + .dat), "
                       "coco (.info/.dat/.tdat, f = -J against the best J found per state) or csv (long format).")
    p.add_argument("run", help="run directory (optbench run)")
    p.add_argument("--format", required=True, choices=["ioh", "coco", "csv"])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="write into a non-empty output directory")
    p.set_defaults(func=cmd_export_run)
