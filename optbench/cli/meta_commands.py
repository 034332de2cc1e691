"""``optbench train-optimizer``: meta-train amortized optimizers on frozen objectives.

    optbench train-optimizer --objectives suites/mujoco-states/packages/halfcheetah-direct \\
        --iterations 5 --steps 5000 --out runs/meta-hc
    optbench run --suite mujoco-states --optimizers "iterative(package='runs/meta-hc'),direct(package='runs/meta-hc')"

Re-running the same command resumes from the checkpoint in ``--out``; a finished run is not redone.
"""

from __future__ import annotations

import argparse
import shlex


def cmd_train_optimizer(args: argparse.Namespace) -> int:
    from optbench.agents.meta_training import MetaConfig, train_optimizer
    from optbench.agents.sac import DEFAULT_GRAD_SAMPLES
    from optbench.cli import UserError, set_threads
    from optbench.cli.run_commands import _check_device

    _check_device(args.device)
    set_threads(args.threads)
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        raise UserError(f"--hidden must be comma-separated integers, got {args.hidden!r}") from None
    cfg = MetaConfig(objectives=tuple(args.objectives), iterations=args.iterations, steps=args.steps,
                     batch_size=args.batch_size,
                     grad_samples=DEFAULT_GRAD_SAMPLES if args.grad_samples is None else args.grad_samples, lr=args.lr, seed=args.seed,
                     split=args.split, hidden=hidden, init_std=args.init_std, eval_every=args.eval_every,
                     checkpoint_every=args.checkpoint_every, log_every=args.log_every, eval_states=args.eval_states)
    command = "optbench " + shlex.join(args.argv)
    res = train_optimizer(cfg, args.out, device=args.device, command=command, progress=not args.quiet)
    if not res.already_done:
        for r in res.evaluation:
            tag = "trained on" if r["trained_on"] else "unseen"
            print(f"{r['package']} {r['split']} ({tag}, {r['states']} states): J λ₀ {r['J_start']:.4g}, iterative "
                  f"@1 {r['J_iter_1']:.4g} @{cfg.iterations} {r['J_iter_K']:.4g} @{4 * cfg.iterations} "
                  f"{r['J_iter_4K']:.4g}, direct {r['J_direct']:.4g}")
        print(f"wrote optimizer package {res.out_dir} ({res.steps} steps, {res.steps_per_s:.1f} steps/s); "
              f"use it as iterative(package='{res.out_dir}') or direct(package='{res.out_dir}')")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-optimizer", help="meta-train an iterative (and a direct) amortized optimizer on frozen "
                       "objective packages; re-run to resume",
                       description="Train the iterative amortized optimizer (loss: mean of J after each of K "
                       "iterations, truncated backprop, gradients through the frozen Q) and a direct network "
                       "(maximize J) on states of the packages' --split, evaluating on every split; writes an "
                       "optimizer package usable as iterative(package=OUT) / direct(package=OUT).")
    p.add_argument("--objectives", nargs="+", required=True, metavar="PKG",
                   help="objective packages (equal state and action sizes); each step samples a package, then states")
    p.add_argument("--iterations", type=int, default=5, help="K, iterations unrolled per training step (default 5)")
    p.add_argument("--steps", type=int, default=5000, help="training steps (default 5000)")
    p.add_argument("--batch-size", type=int, default=256, help="states per step (default 256, with replacement)")
    p.add_argument("--grad-samples", type=int, default=None,
                   help="reparameterized samples per J/∇J estimate (default: as the SAC agents, 2; see "
                   "optbench.agents.sac.GRAD_SAMPLES_NOTE)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="heldout", help="state split to train on (default heldout: benchmark stays unseen)")
    p.add_argument("--out", required=True, help="output directory (the optimizer package); resumed if it holds a run")
    p.add_argument("--hidden", default="256,256", help="hidden sizes of both networks (default 256,256)")
    p.add_argument("--init-std", type=float, default=1.0, help="σ of the iterative optimizer's start λ₀ (μ = 0)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between evaluations (default 500)")
    p.add_argument("--eval-states", type=int, default=500,
                   help="at most this many states per split in evaluations, the first ones (default 500)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--log-every", type=int, default=100, help="steps between log rows (default 100)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train_optimizer)
