"""``optbench train | evaluate | export``: the agent trainer's commands.

    optbench train --task HalfCheetah-v5 --policy direct --steps 200000 --seed 0 --out runs/hc-direct-s0
    optbench evaluate runs/hc-direct-s0 --episodes 10
    optbench export runs/hc-direct-s0 --states 1000 --out packages/hc-direct-s0

Re-running the same ``train`` command resumes from the checkpoint in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys


def _threads(args) -> None:
    import torch

    if getattr(args, "threads", None):
        torch.set_num_threads(int(args.threads))


def cmd_train(args) -> int:
    _threads(args)
    from optbench.agents.sac import SACConfig
    from optbench.agents.trainer import Trainer

    overrides = {k: getattr(args, k) for k in ("gamma", "tau", "lr", "batch_size", "buffer_size", "random_steps",
                                              "beta_train", "beta_act", "iterations", "grad_samples",
                                              "checkpoint_every", "eval_every", "eval_episodes", "log_every",
                                              "model_pretrain_updates")
                 if getattr(args, k) is not None}
    if args.hidden:
        try:
            overrides["hidden"] = tuple(int(h) for h in args.hidden.split(","))
        except ValueError:
            raise ValueError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    cfg = SACConfig(task=args.task, policy=args.policy, steps=args.steps, seed=args.seed,
                    models=not args.no_models, **overrides)
    trainer = Trainer(cfg, args.out, progress=not args.quiet)
    res = trainer.train()
    ev = res.last_eval
    evs = f"{ev['mean']:.1f} ± {ev['std']:.1f} over {ev['episodes']} episodes" if ev else "n/a"
    print(f"done: {cfg.task}/{cfg.policy} seed {cfg.seed}: {res.step} steps, {res.episodes} episodes, "
          f"eval return {evs}; checkpoint {trainer.ckpt_path}")
    return 0


def cmd_evaluate(args) -> int:
    _threads(args)
    from optbench.agents.checkpoint import load_checkpoint
    from optbench.agents.evaluate import run_episodes
    from optbench.agents.trainer import agent_from_checkpoint

    tensors, meta = load_checkpoint(args.checkpoint, task=args.task)
    agent = agent_from_checkpoint(tensors, meta)
    torch_seed(args.seed)
    res = run_episodes(lambda o: agent.act(o, deterministic=True), meta["task"], args.episodes, seed=args.seed)
    out = {"task": meta["task"], "policy": meta["policy"], "step": meta["step"], "episodes": args.episodes,
           "mean": res.mean, "std": res.std, "returns": res.returns}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{meta['task']}/{meta['policy']} at step {meta['step']}: return {res.mean:.1f} ± {res.std:.1f} "
              f"over {args.episodes} deterministic episodes")
    return 0


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def cmd_export(args) -> int:
    _threads(args)
    from optbench.agents.package import export_package

    path = export_package(args.checkpoint, args.out, n_states=args.states, heldout=args.heldout,
                          eval_episodes=args.episodes, seed=args.seed, task=args.task, overwrite=args.force)
    print(f"wrote objective package {path}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the trainer's sub-commands."""
    p = sub.add_parser("train", help="train a SAC agent (direct or iterative policy); re-run to resume")
    p.add_argument("--task", required=True, help="gymnasium task id, e.g. HalfCheetah-v5")
    p.add_argument("--policy", choices=["direct", "iterative"], default="direct")
    p.add_argument("--steps", type=int, default=1_000_000, help="total environment steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (checkpoint, logs); resumed if it holds a run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-models", action="store_true", help="do not train the dynamics/reward models")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--hidden", default=None, help="hidden sizes of every network, e.g. 256,256 (default)")
    for name, typ in (("gamma", float), ("tau", float), ("lr", float), ("batch-size", int), ("buffer-size", int),
                      ("random-steps", int), ("beta-train", float), ("beta-act", float), ("iterations", int),
                      ("grad-samples", int), ("checkpoint-every", int), ("eval-every", int),
                      ("eval-episodes", int), ("log-every", int), ("model-pretrain-updates", int)):
        p.add_argument(f"--{name}", type=typ, default=None, help="override the default (SPEC §3)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="deterministic evaluation episodes of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file or training output directory")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--task", default=None, help="refuse unless the checkpoint is for this task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a frozen objective package from a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file or training output directory")
    p.add_argument("--out", required=True, help="package directory to write")
    p.add_argument("--states", type=int, default=1000, help="benchmark states")
    p.add_argument("--heldout", type=int, default=None, help="held-out states (default: same as --states)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (return, state source)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--task", default=None, help="refuse unless the checkpoint is for this task")
    p.add_argument("--force", action="store_true", help="overwrite an existing package directory")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_export)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point with only the agent commands (``python -m optbench.cli.agent_commands``)."""
    from optbench.cli import UserError, err_console
    from optbench.optimizers.base import OptimizerError

    parser = argparse.ArgumentParser(prog="optbench")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, OptimizerError, FileNotFoundError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]; checkpoint saved, re-run the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
