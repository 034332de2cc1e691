"""``optbench train | evaluate | export | model-error``: the agent trainer's commands.

    optbench train --task HalfCheetah-v5 --policy direct --steps 200000 --seed 0 --out runs/hc-direct-s0
    optbench evaluate runs/hc-direct-s0 --episodes 10
    optbench export runs/hc-direct-s0 --states 1000 --out packages/hc-direct-s0
    optbench model-error packages/hc-direct-s0 --episodes 5 --horizons 1,2,5

Re-running the same ``train`` command resumes from the checkpoint in ``--out``, on any
``--device`` (the device is not part of the run).
"""

from __future__ import annotations

import argparse
import json

from optbench.cli import set_threads


OVERRIDES = ("gamma", "tau", "lr", "batch_size", "buffer_size", "random_steps", "beta_train", "beta_act", "iterations",
             "grad_samples", "checkpoint_every", "eval_every", "eval_episodes", "log_every", "model_pretrain_updates")


def _config_kwargs(args) -> dict:
    """SACConfig fields given on the command line (all but task and seed)."""
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.hidden:
        try:
            overrides["hidden"] = tuple(int(h) for h in args.hidden.split(","))
        except ValueError:
            raise ValueError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    return {"policy": args.policy, "steps": args.steps, "models": not args.no_models, **overrides}


def package_output_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that writes an objective package (``export``, ``import``):
    where, how many benchmark/held-out states, evaluation episodes, seed, overwrite, threads."""
    from optbench.cli.run_commands import positive_int

    p.add_argument("--out", required=True, help="package directory to write")
    p.add_argument("--states", type=positive_int, default=1000, help="benchmark states")
    p.add_argument("--heldout", type=positive_int, default=None, help="held-out states (default: same as --states)")
    p.add_argument("--episodes", type=positive_int, default=10, help="evaluation episodes (return, state source)")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--force", action="store_true", help="overwrite an existing package directory")
    p.add_argument("--threads", type=int, default=1)


def cmd_train(args) -> int:
    from optbench.cli.run_commands import _check_device

    _check_device(args.device)
    set_threads(getattr(args, "threads", None))
    from optbench.agents.sac import SACConfig
    from optbench.agents.trainer import Trainer

    cfg = SACConfig(task=args.task, seed=args.seed, **_config_kwargs(args))
    trainer = Trainer(cfg, args.out, progress=not args.quiet, device=args.device)
    res = trainer.train()
    ev = res.last_eval
    evs = f"{ev['mean']:.1f} ± {ev['std']:.1f} over {ev['episodes']} episodes" if ev else "n/a"
    print(f"done: {cfg.task}/{cfg.policy} seed {cfg.seed}: {res.step} steps, {res.episodes} episodes, "
          f"eval return {evs}; checkpoint {trainer.ckpt_path}")
    return 0


def train_one(ctx: dict, task: tuple[str, int], on_iteration=None) -> dict:
    """One agent of a training grid (run by an executor, in any process): train, or resume
    from the checkpoint its directory holds, and return a summary. A retried task resumes."""
    from optbench.agents.sac import SACConfig
    from optbench.agents.trainer import Trainer
    from optbench.runner.executors import worker_device

    name, seed = task
    cfg = SACConfig(task=name, seed=seed, **ctx["config"])
    out = f"{ctx['out']}/{name}-{cfg.policy}-s{seed}"
    local = on_iteration is not None  # in-process: the trainer's own progress output
    res = Trainer(cfg, out, progress=local and not ctx["quiet"], echo=print if local else (lambda *a, **k: None),
                  device=worker_device(ctx.get("device", "cpu"))).train()
    return {"task": name, "policy": cfg.policy, "seed": seed, "out": out, "step": res.step,
            "episodes": res.episodes, "eval": res.last_eval, "updates_per_s": res.updates_per_s}


def cmd_train_grid(args) -> int:
    from pathlib import Path

    from optbench.agents.envs import make_env
    from optbench.cli import UserError
    from optbench.cli.run_commands import _check_device, executor_from_args
    from optbench.locks import DirectoryLock
    from optbench.runner.executors import ExecutorError
    from optbench.runner.store import atomic_write_json

    _check_device(args.device, local=args.executor != "ray")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise UserError("--tasks needs at least one task, e.g. Hopper-v5,HalfCheetah-v5")
    for t in tasks:  # fail before any work on an unknown task
        make_env(t).close()
    seeds = args.seeds
    out = Path(args.out).expanduser().resolve()
    ctx = {"config": _config_kwargs(args), "out": str(out), "quiet": args.quiet, "device": args.device}
    grid = [(t, s) for t in tasks for s in seeds]
    summary = []
    with DirectoryLock(out, "training grid directory", echo=print), executor_from_args(args, args.device) as executor:
        if args.executor != "inprocess":
            print(f"training {len(grid)} agents on {executor.describe()}")
        else:
            set_threads(getattr(args, "threads", None))
        try:
            for _, res in executor.run(train_one, ctx, grid, local_hook=lambda i, t: (lambda it: None)):
                ev = res["eval"]
                evs = f"{ev['mean']:.1f} ± {ev['std']:.1f}" if ev else "n/a"
                print(f"done: {res['task']}/{res['policy']} seed {res['seed']}: {res['step']} steps, "
                      f"eval return {evs}; {res['out']}", flush=True)
                summary.append(res)
        except ExecutorError as exc:
            raise UserError(f"{exc}; finished agents are saved, re-run the same command to resume") from None
    summary.sort(key=lambda r: (r["task"], r["seed"]))
    atomic_write_json(out / "grid.json", {"config": ctx["config"], "agents": summary})
    print(f"{len(summary)} agents in {out} (summary: {out / 'grid.json'})")
    return 0


def cmd_evaluate(args) -> int:
    from optbench.cli.run_commands import _check_device

    _check_device(args.device)
    set_threads(getattr(args, "threads", None))
    from optbench.agents.checkpoint import load_checkpoint
    from optbench.agents.evaluate import run_episodes
    from optbench.agents.trainer import agent_from_checkpoint

    tensors, meta = load_checkpoint(args.checkpoint, task=args.task)
    agent = agent_from_checkpoint(tensors, meta, args.device)
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
    from optbench.cli.run_commands import _check_device

    _check_device(args.device)
    set_threads(getattr(args, "threads", None))
    from optbench.agents.package import export_package

    path = export_package(args.checkpoint, args.out, n_states=args.states, heldout=args.heldout,
                          eval_episodes=args.episodes, seed=args.seed, task=args.task, overwrite=args.force,
                          device=args.device)
    print(f"wrote objective package {path}")
    return 0


def cmd_model_error(args) -> int:
    set_threads(getattr(args, "threads", None))
    from rich.table import Table

    from pathlib import Path

    from optbench.agents.model_error import HELDOUT_SEED, model_errors
    from optbench.cli import UserError, console
    from optbench.runner.store import atomic_write_json

    try:
        horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    except ValueError:
        raise UserError(f"--horizons must be comma-separated integers, got {args.horizons!r}") from None
    rep = model_errors(args.package, episodes=args.episodes, horizons=horizons,
                       seed=HELDOUT_SEED if args.seed is None else args.seed,
                       max_steps=args.max_steps)
    t = Table(title=f"{rep.agent}: model errors on {rep.transitions} held-out transitions "
                    f"({rep.episodes} episodes, seeds {rep.seed}+, return {rep.mean_return:.1f})")
    for col in ("h", "starts", "state RMSE", "state nRMSE", "worst dim nRMSE", "persistence nRMSE", "reward RMSE",
                "reward rel. err.", "reward nRMSE"):
        t.add_column(col, justify="right")
    for h in rep.horizons:
        t.add_row(str(h.horizon), str(h.starts), f"{h.state_rmse:.4g}", f"{h.state_nrmse:.4g}",
                  f"{h.state_nrmse_worst:.4g}", f"{h.persistence_nrmse:.4g}", f"{h.reward_rmse:.4g}",
                  f"{h.reward_rel:.4g}", f"{h.reward_nrmse:.4g}")
    console.print(t)
    console.print("h-step: the dynamics model rolled out open loop for h steps with the real actions, against the "
                  "real state h steps later; nRMSE: per-dimension error / std of the observed states (1 = predicting "
                  "the mean); persistence: predicting no change; reward: r̂ along the same rollout vs the real reward.",
                  highlight=False)
    if args.json:
        atomic_write_json(Path(args.json), rep.to_dict())
        console.print(f"wrote {args.json}", highlight=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the trainer's sub-commands."""
    from optbench.cli.run_commands import _int_list, add_executor_options, positive_int

    p = sub.add_parser("train", help="train a SAC agent (direct or iterative policy); re-run to resume")
    p.add_argument("--task", required=True, help="gymnasium task id, e.g. HalfCheetah-v5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (checkpoint, logs); resumed if it holds a run")
    _training_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-grid", help="train agents for tasks × seeds through an executor; re-run to resume",
                       description="Train one agent per (task, seed) into OUT/TASK-POLICY-sSEED, in-process or "
                       "on local processes or Ray (--executor); each agent resumes from its checkpoint, so a "
                       "retried or re-run agent continues where it stopped.")
    p.add_argument("--tasks", required=True, help="comma-separated gymnasium task ids, e.g. Hopper-v5,HalfCheetah-v5")
    p.add_argument("--seeds", type=_int_list, default=[0], help="seeds, e.g. 0,1,2 or 0..4 (default 0)")
    p.add_argument("--out", required=True, help="directory of the agents' run directories and grid.json")
    _training_options(p)
    add_executor_options(p, what="agents")
    p.set_defaults(func=cmd_train_grid)

    p = sub.add_parser("evaluate", help="deterministic evaluation episodes of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file or training output directory")
    p.add_argument("--episodes", type=positive_int, default=10, help="evaluation episodes (>= 1, default 10)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--task", default=None, help="refuse unless the checkpoint is for this task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="torch device the agent runs on (cpu, cuda, cuda:1, ...)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a frozen objective package from a checkpoint")
    p.add_argument("checkpoint", help="checkpoint file or training output directory")
    package_output_options(p)
    p.add_argument("--task", default=None, help="refuse unless the checkpoint is for this task")
    p.add_argument("--device", default="cpu", help="torch device the agent runs on while collecting states (cpu, "
                   "cuda, ...); the package holds CPU float32 tensors either way")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("model-error", help="dynamics/reward model errors of a package on held-out transitions",
                       description="Roll out the package's direct policy (deterministic) in the real environment "
                       "from fresh seeds and report the dynamics model's one-step and h-step open-loop prediction "
                       "errors and the reward model's errors.")
    p.add_argument("package", help="objective package directory (optbench export)")
    p.add_argument("--episodes", type=positive_int, default=5, help="held-out episodes (default 5)")
    p.add_argument("--horizons", default="1,2,5", help="open-loop horizons, e.g. 1,2,5 (default)")
    p.add_argument("--max-steps", type=int, default=None, help="cut every episode after this many steps")
    p.add_argument("--seed", type=int, default=None, help="first reset seed (default: a held-out seed range)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_model_error)


def _training_options(p: argparse.ArgumentParser) -> None:
    from optbench.cli.run_commands import positive_int

    p.add_argument("--policy", choices=["direct", "iterative"], default="direct")
    p.add_argument("--steps", type=int, default=1_000_000, help="total environment steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads (per worker under an executor; default 1)")
    p.add_argument("--device", default="cpu", help="torch device of the networks and updates (cpu, cuda, cuda:1, ...; "
                   "default cpu); not part of the run: a run may resume on another device")
    p.add_argument("--no-models", action="store_true", help="do not train the dynamics/reward models")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--hidden", default=None, help="hidden sizes of every network, e.g. 256,256 (default)")
    for name, typ in (("gamma", float), ("tau", float), ("lr", float), ("batch-size", positive_int),
                      ("buffer-size", positive_int), ("random-steps", int), ("beta-train", float), ("beta-act", float),
                      ("iterations", positive_int), ("grad-samples", positive_int), ("eval-every", positive_int),
                      ("eval-episodes", positive_int), ("log-every", positive_int), ("model-pretrain-updates", int)):
        p.add_argument(f"--{name}", type=typ, default=None, help="override the default (SPEC §3)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="steps between checkpoints, at most (default 10000; short runs checkpoint more often: every "
                        "min(N, max(1000, steps // 20)) steps, see optbench.agents.trainer.checkpoint_interval)")
