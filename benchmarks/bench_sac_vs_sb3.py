"""Our direct SAC against Stable-Baselines3's SAC (not part of CI).

Two measurements, one thread each, same machine, same hyperparameters (SPEC §3: γ 0.99,
τ 5e-3, Adam 3e-4, batch 256, replay 1e6, 5000 random steps, 1 update per step, α auto-tuned
to −|A|, 2×256 ReLU networks; our dynamics/reward models are switched off because SB3 has none):

* ``--updates-only``: update cost of our agents on synthetic batches (direct; direct + models;
  iterative K = 5 with n = 1, 2, 5, 10 gradient samples). No SB3 needed.
* default: for each seed, train ours and SB3 on ``--task`` for ``--steps`` steps, report the
  deterministic evaluation return (10 episodes) and the learning-phase speed (environment
  steps with one update each, per second, measured after the random phase), and the ratio.

    pip install stable-baselines3          # benchmark-only dependency
    python benchmarks/bench_sac_vs_sb3.py --task HalfCheetah-v5 --steps 100000 --seeds 0 1 2 --out results/sb3.json
    python benchmarks/bench_sac_vs_sb3.py --updates-only
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def bench_updates(state_dim: int = 17, action_dim: int = 6, repeats: int = 40) -> list[dict]:
    from optbench.agents.sac import SACAgent, SACConfig

    rows = []
    B = 256
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(B, state_dim, generator=g), torch.rand(B, action_dim, generator=g) * 2 - 1,
             torch.randn(B, generator=g), torch.randn(B, state_dim, generator=g), torch.zeros(B))
    setups = [("direct", False, 1), ("direct", True, 1)] + [("iterative", True, n) for n in (1, 2, 5, 10)]
    for policy, models, n in setups:
        cfg = SACConfig(task="HalfCheetah-v5", policy=policy, models=models, grad_samples=n)
        agent = SACAgent(cfg, state_dim, action_dim)
        reps = repeats if policy == "direct" else max(5, repeats // 4)
        for _ in range(3):
            agent.update(batch)
        tic = time.perf_counter()
        for _ in range(reps):
            agent.update(batch)
        dt = (time.perf_counter() - tic) / reps
        obs = np.zeros(state_dim)
        tic = time.perf_counter()
        for _ in range(30):
            agent.act(obs)
        act = (time.perf_counter() - tic) / 30
        row = {"policy": policy, "models": models, "grad_samples": n if policy == "iterative" else None,
               "ms_per_update": dt * 1e3, "updates_per_s": 1 / dt, "ms_per_act": act * 1e3}
        rows.append(row)
        print(f"{policy:9s} models={models!s:5s} n={n:2d}: {dt * 1e3:7.1f} ms/update ({1 / dt:6.1f}/s), "
              f"act {act * 1e3:.2f} ms", flush=True)
    return rows


def run_ours(task: str, steps: int, seed: int, out: Path) -> dict:
    from optbench.agents.sac import SACConfig
    from optbench.agents.trainer import Trainer

    cfg = SACConfig(task=task, policy="direct", steps=steps, seed=seed, models=False, eval_every=10**12,
                    checkpoint_every=10**12, log_every=10_000)
    run_dir = out / f"ours-{task}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # always a fresh run (an old one would be resumed)
    trainer = Trainer(cfg, run_dir, progress=False)
    trainer.train(stop_after=cfg.random_steps)
    tic = time.perf_counter()
    trainer.train()
    learn_s = time.perf_counter() - tic
    ev = trainer.evaluate(10)
    return {"impl": "optbench", "seed": seed, "return_mean": ev["mean"], "return_std": ev["std"],
            "learn_steps_per_s": (steps - cfg.random_steps) / learn_s}


def run_sb3(task: str, steps: int, seed: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    from optbench.agents.envs import task_kwargs

    random_steps = 5000

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start = None

        def _on_step(self) -> bool:
            if self.num_timesteps == random_steps:
                self.start = time.perf_counter()
            return True

    env = gym.make(task, **task_kwargs(task))
    A = env.action_space.shape[0]
    model = SAC("MlpPolicy", env, learning_rate=3e-4, buffer_size=1_000_000, learning_starts=random_steps,
                batch_size=256, tau=5e-3, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto",
                target_entropy=-float(A), policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu", verbose=0)
    clock = Clock()
    model.learn(total_timesteps=steps, callback=clock)
    learn_s = time.perf_counter() - clock.start
    eval_env = gym.make(task, **task_kwargs(task))
    rets, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True, return_episode_rewards=True)
    return {"impl": "sb3", "seed": seed, "return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)),
            "learn_steps_per_s": (steps - random_steps) / learn_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="HalfCheetah-v5")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="results/bench_sac_vs_sb3.json")
    ap.add_argument("--runs-dir", default="/tmp/optbench-bench-sb3")
    ap.add_argument("--updates-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.updates_only:
        rows = bench_updates()
        print(json.dumps(rows, indent=1))
        return 0
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        print("stable-baselines3 is not installed (pip install stable-baselines3)", file=sys.stderr)
        return 2
    results = []
    for seed in args.seeds:
        results.append(run_ours(args.task, args.steps, seed, Path(args.runs_dir)))
        print(results[-1], flush=True)
        results.append(run_sb3(args.task, args.steps, seed))
        print(results[-1], flush=True)
    ours = [r for r in results if r["impl"] == "optbench"]
    sb3 = [r for r in results if r["impl"] == "sb3"]

    def summary(rs):
        m = [r["return_mean"] for r in rs]
        return {"return_mean": statistics.mean(m), "return_seed_min": min(m), "return_seed_max": max(m),
                "steps_per_s": statistics.mean(r["learn_steps_per_s"] for r in rs)}

    s_ours, s_sb3 = summary(ours), summary(sb3)
    verdict = {
        "task": args.task, "steps": args.steps, "seeds": args.seeds, "ours": s_ours, "sb3": s_sb3,
        "speed_ratio": s_ours["steps_per_s"] / s_sb3["steps_per_s"],
        "return_within_sb3_seed_spread": s_sb3["return_seed_min"] <= s_ours["return_mean"] <= s_sb3["return_seed_max"]
        or s_ours["return_mean"] >= s_sb3["return_seed_max"],
        "runs": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(verdict, indent=2) + "\n")
    print(f"{args.task} {args.steps} steps: ours {s_ours['return_mean']:.0f} vs SB3 {s_sb3['return_mean']:.0f} "
          f"[{s_sb3['return_seed_min']:.0f}, {s_sb3['return_seed_max']:.0f}]; speed ratio {verdict['speed_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
