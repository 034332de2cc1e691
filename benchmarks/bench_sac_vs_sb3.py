"""Our SAC against Stable-Baselines3's SAC: update speed, training speed, returns (not part of CI).

Same hyperparameters on both sides (SPEC §3: γ 0.99, τ 5e-3, Adam 3e-4, batch 256, replay 1e6,
5000 uniform-random steps, one update per environment step, α auto-tuned to −|A|, 2×256 ReLU
actor and critics, two critics, min over critics in targets = our β = 1). Our dynamics/reward
models are off in the like-for-like rows (SB3 has none); rows "ours + models" give their cost.
Speed is CPU time of the benchmark's one thread (``--threads``, default 1), so the time the
process spends waiting for a core on a shared machine is not counted; every figure is a
ratio measured in one process, contenders interleaved round by round, so that load changes
hit both sides alike.

Modes (results merged into ``--out``, default ``benchmarks/results/sac_vs_sb3.json``):

* ``--speed``: (1) *update cost*: one SAC update on a batch sampled from a replay buffer of
  10,000 HalfCheetah-v5 random-policy transitions (identical data on both sides; sampling
  included on both sides): SB3's ``SAC.train(gradient_steps=1)`` against our
  ``SACAgent.update(replay.sample(...))``, direct without models (like for like), direct with
  models, iterative (K = 5, ``grad_samples`` n = 2, models on); with ``--baseline DIR`` also
  the agent code of an older optbench tree (before/after). (2) *training speed*: environment
  steps per second in the learning phase (act + env step + replay + one update), chunks of
  ``--chunk`` steps of SB3's ``learn`` and our ``Trainer`` interleaved, after both finished
  their 5000 random steps (and our models their pre-training).
* ``--updates-only``: part (1) without SB3 (ours, and the baseline if given).
* ``--returns``: for each seed, train ours (direct, models off) and SB3 for ``--steps`` steps,
  then 10 deterministic evaluation episodes each, on the same evaluation seeds; records the
  final return, training episode returns and learning-phase CPU time. Written after every
  run, so a partial comparison is kept if the process is stopped.

Commands::

    pip install "stable-baselines3>=2.0"     # benchmark-only dependency
    # speed (about 10 minutes on one core)
    python benchmarks/bench_sac_vs_sb3.py --speed --threads 1
    # before/after against the agent code of an older commit
    git worktree add /tmp/optbench-before <commit> && \\
      python benchmarks/bench_sac_vs_sb3.py --speed --baseline /tmp/optbench-before --baseline-label <commit>
    # the return comparison of issue 3: 100k steps, 3 seeds. CPU time at the costs measured by
    # --speed (11.2 / 16.0 ms per learning step, ours / SB3): about 18 + 26 min per seed, 2.2 h in
    # all; two low-priority processes (one per side) share it, then merge their files:
    nice -n 10 python benchmarks/bench_sac_vs_sb3.py --returns --impl ours --steps 100000 --seeds 0 1 2 \\
      --out /tmp/returns-ours.json > /tmp/returns-ours.log 2>&1 &
    nice -n 10 python benchmarks/bench_sac_vs_sb3.py --returns --impl sb3 --steps 100000 --seeds 0 1 2 \\
      --out /tmp/returns-sb3.json > /tmp/returns-sb3.log 2>&1 &
    wait; python benchmarks/bench_sac_vs_sb3.py --returns --steps 100000 \\
      --merge /tmp/returns-ours.json /tmp/returns-sb3.json        # -> benchmarks/results/sac_vs_sb3.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from optbench import backends
from optbench.objectives.cost import mlp_forward_flops

from bench_common import machine as common_machine

RANDOM_STEPS = 5000
BATCH = 256
HIDDEN = [256, 256]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sac_vs_sb3.json"


# ---------------------------------------------------------------------------------- helpers
def machine() -> dict:
    import gymnasium

    out = {**common_machine(), "numpy": np.__version__, "gymnasium": gymnasium.__version__}
    try:
        import stable_baselines3

        out["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        pass
    return out


def merge_out(path: Path, section: str, value) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[section] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def load_baseline_agents(tree: Path):
    """The ``optbench.agents`` package of another checkout, importable next to ours.

    Its files are copied into a temporary package whose ``optbench.agents.*`` imports point
    at the copy; everything else (objectives, Q-ensemble) comes from the installed tree.
    """
    src = Path(tree).expanduser() / "optbench" / "agents"
    if not (src / "sac.py").exists():
        raise SystemExit(f"--baseline {tree}: no optbench/agents/sac.py there")
    root = Path(tempfile.mkdtemp(prefix="optbench-baseline-"))
    pkg = root / "optbench_baseline_agents"
    pkg.mkdir()
    for f in src.glob("*.py"):
        (pkg / f.name).write_text(f.read_text().replace("optbench.agents.", "optbench_baseline_agents."))
    sys.path.insert(0, str(root))
    return importlib.import_module("optbench_baseline_agents.sac")


def random_transitions(task: str, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` transitions of a uniform-random policy (normalized actions in [-1, 1])."""
    from optbench.agents.envs import ActionScaler, env_dims, make_env

    env = make_env(task)
    S, A = env_dims(env)
    scale = ActionScaler(env)
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    obs, _ = env.reset(seed=seed)
    for _ in range(n):
        a = rng.uniform(-1, 1, A)
        nxt, r, term, trunc, _ = env.step(scale(a))
        for k, v in zip(out, (obs, a, r, nxt, term, trunc)):
            out[k].append(v)
        obs = env.reset()[0] if (term or trunc) else nxt
    env.close()
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def interleave(contenders: dict[str, tuple[Callable[[], None], int]], rounds: int, warmup: int = 2,
               echo=print) -> dict[str, list[float]]:
    """CPU seconds per call of each contender, one block of ``reps`` calls per round, in turn."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(rounds):
        for name, (fn, reps) in contenders.items():
            for _ in range(warmup):
                fn()
            tic = time.thread_time()
            for _ in range(reps):
                fn()
            times[name].append((time.thread_time() - tic) / reps)
        echo(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()))
    return times


def summarize(times: dict[str, list[float]], reference: str | None, unit: str) -> dict:
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        row = {f"ms_per_{unit}": med * 1e3, f"{unit}s_per_s": 1.0 / med,
               f"ms_per_{unit}_rounds": [t * 1e3 for t in ts]}
        if reference is not None and reference in times and name != reference:
            per_round = [ref / t for ref, t in zip(times[reference], ts)]  # adjacent blocks: same load
            row[f"speed_vs_{reference}"] = statistics.median(per_round)
            row[f"speed_vs_{reference}_range"] = [min(per_round), max(per_round)]
        out[name] = row
    return out


def print_table(title: str, summary: dict, unit: str, reference: str | None) -> None:
    print(f"\n{title}")
    for name, row in summary.items():
        ratio = row.get(f"speed_vs_{reference}")
        extra = (f"   {ratio:.2f}x {reference} (rounds {row[f'speed_vs_{reference}_range'][0]:.2f}"
                 f"-{row[f'speed_vs_{reference}_range'][1]:.2f})") if ratio is not None else ""
        print(f"  {name:34s} {row[f'ms_per_{unit}']:8.2f} ms/{unit}  {row[f'{unit}s_per_s']:7.1f} {unit}s/s{extra}")


# ---------------------------------------------------------------------------------- SB3
def sb3_model(env, seed: int, buffer_size: int = 1_000_000, learning_starts: int = RANDOM_STEPS):
    from stable_baselines3 import SAC

    A = env.action_space.shape[0]
    return SAC("MlpPolicy", env, learning_rate=3e-4, buffer_size=buffer_size, learning_starts=learning_starts,
               batch_size=BATCH, tau=5e-3, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto",
               target_entropy=-float(A), policy_kwargs={"net_arch": list(HIDDEN)}, seed=seed, device="cpu",
               verbose=0)


def sb3_make_env(task: str):
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    from optbench.agents.envs import task_kwargs

    return Monitor(gym.make(task, **task_kwargs(task)))


# ---------------------------------------------------------------------------------- update cost
def update_contenders(task: str, with_sb3: bool, baseline_sac, grad_samples: int, iterative: bool) -> dict[str, tuple[Callable[[], None], int]]:
    from optbench.agents.replay import ReplayBuffer
    from optbench.agents.sac import SACAgent, SACConfig

    data = random_transitions(task, 10_000)
    S, A = data["obs"].shape[1], data["action"].shape[1]
    ours_replay = ReplayBuffer(S, A, 1_000_000)
    for i in range(len(data["obs"])):
        ours_replay.add(data["obs"][i], data["action"][i], float(data["reward"][i]), data["next_obs"][i],
                        bool(data["terminated"][i]))
    contenders: dict[str, tuple[Callable[[], None], int]] = {}
    if with_sb3:
        from stable_baselines3.common.logger import configure

        env = sb3_make_env(task)
        model = sb3_model(env, seed=0)
        model.set_logger(configure(None, []))
        low, high = env.action_space.low, env.action_space.high
        for i in range(len(data["obs"])):  # SB3 stores actions in the env's box
            a = low + (data["action"][i] + 1.0) * 0.5 * (high - low)
            model.replay_buffer.add(data["obs"][i:i + 1], data["next_obs"][i:i + 1], a[None], data["reward"][i:i + 1],
                                    data["terminated"][i:i + 1].astype(bool), [{}])
        contenders["sb3"] = (lambda: model.train(gradient_steps=1, batch_size=BATCH), 25)

    def ours(cfg_cls, agent_cls, policy: str, models: bool, seed: int):
        torch.manual_seed(seed)
        agent = agent_cls(cfg_cls(task=task, policy=policy, models=models, grad_samples=grad_samples), S, A)
        rng = np.random.default_rng(seed)
        return lambda: agent.update(ours_replay.sample(BATCH, rng))

    setups = [("direct", False, 25), ("direct", True, 20)] + ([("iterative", True, 3)] if iterative else [])
    for policy, models, reps in setups:
        label = f"{policy}{' + models' if models else ''}" + (f" (n={grad_samples})" if policy == "iterative" else "")
        contenders[f"ours {label}"] = (ours(SACConfig, SACAgent, policy, models, 0), reps)
        if baseline_sac is not None:
            contenders[f"baseline {label}"] = (ours(baseline_sac.SACConfig, baseline_sac.SACAgent, policy, models, 0),
                                               reps)
    return contenders


def bench_update_cost(args, with_sb3: bool) -> dict:
    baseline = load_baseline_agents(Path(args.baseline)) if args.baseline else None
    contenders = update_contenders(args.task, with_sb3, baseline, args.grad_samples, not args.no_iterative)
    print(f"update cost, {args.rounds} interleaved rounds (CPU ms per update):")
    times = interleave(contenders, args.rounds)
    ref = "sb3" if with_sb3 else None
    summary = summarize(times, ref, "update")
    if baseline is not None:  # before/after: each of ours against the same setup of the baseline
        for name in list(summary):
            if name.startswith("ours "):
                base = "baseline " + name[len("ours "):]
                per_round = [b / t for b, t in zip(times[base], times[name])]
                summary[name]["speedup_vs_baseline"] = statistics.median(per_round)
                summary[name]["speedup_vs_baseline_range"] = [min(per_round), max(per_round)]
    print_table("update cost (median over rounds; ratios: median of per-round ratios, range over rounds)",
                summary, "update", ref)
    if baseline is not None:
        for name, row in summary.items():
            if "speedup_vs_baseline" in row:
                lo, hi = row["speedup_vs_baseline_range"]
                print(f"  {name:34s} {row['speedup_vs_baseline']:.2f}x the baseline tree ({lo:.2f}-{hi:.2f})")
    return {"task": args.task, "batch": BATCH, "rounds": args.rounds, "grad_samples": args.grad_samples,
            "baseline": str(args.baseline) if args.baseline else None, "baseline_label": args.baseline_label,
            "contenders": summary}


# ---------------------------------------------------------------------------------- training speed
def bench_training_speed(args) -> dict:
    from optbench.agents.sac import SACConfig
    from optbench.agents.trainer import Trainer

    chunk = args.chunk
    runs_dir = Path(args.runs_dir)
    env = sb3_make_env(args.task)
    model = sb3_model(env, seed=0)
    print(f"training speed: random phase ({RANDOM_STEPS} steps) and a warm-up chunk for each contender ...")
    model.learn(total_timesteps=RANDOM_STEPS + 200, reset_num_timesteps=True)

    trainers = {}
    setups = [("direct", False), ("direct", True)]
    if not args.no_iterative:
        setups += [("iterative", False), ("iterative", True)]
    for policy, models in setups:
        label = f"ours {policy}{' + models' if models else ''}"
        cfg = SACConfig(task=args.task, policy=policy, steps=10**9, seed=0, models=models, eval_every=10**12,
                        checkpoint_every=10**12, log_every=10**9, grad_samples=args.grad_samples)
        run_dir = runs_dir / f"speed-{label.replace(' ', '-').replace('+', 'plus')}"
        shutil.rmtree(run_dir, ignore_errors=True)
        tr = Trainer(cfg, run_dir, progress=False, echo=lambda *a: None)
        tr.train(stop_after=RANDOM_STEPS + 200)  # random phase, model pre-training, first updates
        trainers[label] = tr

    def sb3_chunk():
        model.learn(total_timesteps=chunk, reset_num_timesteps=False)

    contenders = {"sb3": (sb3_chunk, 1)}
    for label, tr in trainers.items():
        contenders[label] = ((lambda tr=tr: tr.train(stop_after=chunk)), 1)
    print(f"training speed, {args.rounds} interleaved rounds of {chunk} learning steps (CPU ms per step):")
    times = interleave({k: (fn, reps) for k, (fn, reps) in contenders.items()}, args.rounds, warmup=0,
                       echo=lambda s: print(s.replace(" ms", f" ms/{chunk} steps")))
    times = {k: [t / chunk for t in v] for k, v in times.items()}
    summary = summarize(times, "sb3", "step")
    print_table("training speed: environment steps (each with one update) per CPU second", summary, "step", "sb3")
    ratios = iterative_step_ratios(times)
    env_dims_ = (env.observation_space.shape[0], env.action_space.shape[0])
    for key, r in ratios.items():  # what the algorithm asks for: its ratio of matrix-product FLOPs
        models = key == "models on"
        r["flop_ratio"] = (update_flops("iterative", models, *env_dims_, HIDDEN, SACConfig().iterations,
                                        args.grad_samples, BATCH)
                           / update_flops("direct", models, *env_dims_, HIDDEN, 1, 1, BATCH))
    for key, r in ratios.items():
        print(f"  {key}: an iterative step costs {r['ratio']:.2f}x a direct step (rounds {r['range'][0]:.2f}-"
              f"{r['range'][1]:.2f}; target <= {r['target']}); its update has {r['flop_ratio']:.1f}x the FLOPs")
    return {"task": args.task, "chunk": chunk, "rounds": args.rounds, "grad_samples": args.grad_samples,
            "iterations": SACConfig().iterations, "contenders": summary, "iterative_vs_direct": ratios}


def update_flops(policy: str, models: bool, S: int, A: int, hidden: list[int], K: int, n: int, B: int,
                 E: int = 2) -> int:
    """Matrix-product FLOPs of one SAC update (SPEC §3), counted from the network shapes.

    Conventions: a forward pass of a network on one row costs its
    :func:`~optbench.objectives.cost.mlp_forward_flops`; a backward
    pass costs twice that when weight gradients are needed (input and weight gradients), once
    when only the input gradient is (a frozen network); element-wise work is not counted.
    direct: target ``V`` (actor and target ensemble forward on ``B`` next states), critic
    forward and backward on ``B`` pairs, actor loss (actor forward and backward, critic forward
    and input gradient). iterative: the unroll on ``2B`` states (batch and next states) with
    ``K + 1`` estimates of ``J`` and ``∇_λ J`` from ``n`` samples through the target ensemble
    (forward and input gradient) and ``K`` optimizer-network forward and backward passes, then
    the critic; models (both): dynamics and reward networks forward and backward on ``B``
    pairs, plus (iterative) the distilled direct network."""
    q = E * mlp_forward_flops([S + A, *hidden, 1])  # one (s, a) pair through every member
    actor = mlp_forward_flops([S, *hidden, 2 * A])
    if policy == "direct":
        total = B * (actor + q) + 3 * B * q + B * (3 * actor + 2 * q)
    else:
        opt_net = mlp_forward_flops([S + 4 * A, *hidden, 4 * A])
        total = (K + 1) * 2 * B * n * 2 * q + K * 2 * B * 3 * opt_net + 3 * B * q
        if models:
            total += 3 * B * actor  # the distilled direct network
    if models:
        total += 3 * B * (mlp_forward_flops([S + A, *hidden, S]) + mlp_forward_flops([S + A, *hidden, 1]))
    return total


# issue "Agents worth benchmarking": an iterative step may cost at most this many direct steps
ITERATIVE_STEP_TARGETS = {"models off": 2.5, "models on": 3.0}


def iterative_step_ratios(times: dict[str, list[float]]) -> dict:
    """Cost of an iterative training step over a direct one at the same model setting: the
    median over rounds of the per-round ratio (adjacent blocks, the same load), and its range."""
    out = {}
    for key, suffix in (("models off", ""), ("models on", " + models")):
        it, di = times.get(f"ours iterative{suffix}"), times.get(f"ours direct{suffix}")
        if it and di:
            per_round = [a / b for a, b in zip(it, di)]
            out[key] = {"ratio": statistics.median(per_round), "range": [min(per_round), max(per_round)],
                        "target": ITERATIVE_STEP_TARGETS[key]}
    return out


# ---------------------------------------------------------------------------------- returns
def evaluate_policy(policy: Callable[[np.ndarray], np.ndarray], task: str, episodes: int = 10) -> dict:
    from optbench.agents.evaluate import run_episodes

    res = run_episodes(policy, task, episodes, seed=10_000)
    return {"return_mean": res.mean, "return_std": res.std, "returns": res.returns}


def run_ours(task: str, steps: int, seed: int, runs_dir: Path, models: bool = False) -> dict:
    from optbench.agents.sac import SACConfig
    from optbench.agents.trainer import Trainer

    cfg = SACConfig(task=task, policy="direct", steps=steps, seed=seed, models=models, eval_every=10**12,
                    checkpoint_every=10**12, log_every=1000)
    run_dir = runs_dir / f"ours{'-models' if models else ''}-{task}-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # always a fresh run (an old one would be resumed)
    trainer = Trainer(cfg, run_dir, progress=False, echo=lambda *a: None)
    trainer.train(stop_after=cfg.random_steps)
    tic, cpu = time.perf_counter(), time.thread_time()
    trainer.train(stop_after=steps - cfg.random_steps)
    wall, cpu = time.perf_counter() - tic, time.thread_time() - cpu
    ev = evaluate_policy(lambda o: trainer.agent.act(o, deterministic=True), task)
    episodes = [float(r["return"]) for r in trainer.log.episodes.read()]
    return {"impl": "optbench" + (" + models" if models else ""), "seed": seed, "steps": trainer.step, **ev,
            "learn_cpu_s": cpu, "learn_wall_s": wall, "learn_steps_per_cpu_s": (steps - cfg.random_steps) / cpu,
            "train_episode_returns": episodes}


def run_sb3(task: str, steps: int, seed: int) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start = None

        def _on_step(self) -> bool:
            if self.num_timesteps == RANDOM_STEPS:
                self.start = (time.perf_counter(), time.thread_time())
            return True

    env = sb3_make_env(task)
    model = sb3_model(env, seed=seed)
    clock = Clock()
    model.learn(total_timesteps=steps, callback=clock)
    wall, cpu = time.perf_counter() - clock.start[0], time.thread_time() - clock.start[1]
    low, high = env.action_space.low, env.action_space.high

    def policy(obs):  # SB3 acts in the env's box; run_episodes expects [-1, 1]
        a = model.predict(obs, deterministic=True)[0]
        return 2.0 * (a - low) / (high - low) - 1.0

    ev = evaluate_policy(policy, task)
    return {"impl": "sb3", "seed": seed, "steps": int(model.num_timesteps), **ev, "learn_cpu_s": cpu,
            "learn_wall_s": wall, "learn_steps_per_cpu_s": (steps - RANDOM_STEPS) / cpu,
            "train_episode_returns": [float(r) for r in env.get_episode_rewards()]}


def returns_verdict(task: str, steps: int, seeds: list[int], results: list[dict]) -> dict:
    ours = [r for r in results if r["impl"] == "optbench"]
    sb3 = [r for r in results if r["impl"] == "sb3"]
    out = {"task": task, "steps": steps, "seeds": seeds, "runs": results}
    if not ours or not sb3:
        return out

    def summary(rs):
        m = [r["return_mean"] for r in rs]
        return {"seeds": [r["seed"] for r in rs], "return_mean": statistics.mean(m), "return_seed_min": min(m),
                "return_seed_max": max(m), "learn_steps_per_cpu_s": statistics.mean(r["learn_steps_per_cpu_s"] for r in rs)}

    s_ours, s_sb3 = summary(ours), summary(sb3)
    out.update(ours=s_ours, sb3=s_sb3,
               speed_ratio_learn_phase=s_ours["learn_steps_per_cpu_s"] / s_sb3["learn_steps_per_cpu_s"],
               ours_mean_within_sb3_seed_spread=s_sb3["return_seed_min"] <= s_ours["return_mean"] <= s_sb3["return_seed_max"],
               ours_mean_above_sb3_seed_spread=s_ours["return_mean"] > s_sb3["return_seed_max"])
    return out


def bench_returns(args, out: Path) -> dict:
    runs_dir = Path(args.runs_dir)
    results: list[dict] = []
    impls = {"both": ("optbench", "sb3"), "ours": ("optbench",), "sb3": ("sb3",)}[args.impl]
    for seed in args.seeds:
        for impl in impls:
            print(f"{impl} seed {seed}: {args.steps} steps ...", flush=True)
            res = run_ours(args.task, args.steps, seed, runs_dir) if impl == "optbench" else run_sb3(args.task, args.steps, seed)
            results.append(res)
            print(f"  return {res['return_mean']:.0f} ± {res['return_std']:.0f}, "
                  f"{res['learn_steps_per_cpu_s']:.1f} learning steps per CPU s", flush=True)
            merge_out(out, f"returns_{args.task}_{args.steps}", returns_verdict(args.task, args.steps, args.seeds, results))
    verdict = returns_verdict(args.task, args.steps, args.seeds, results)
    if "ours" in verdict:
        o, s = verdict["ours"], verdict["sb3"]
        print(f"{args.task} {args.steps} steps: ours {o['return_mean']:.0f} [{o['return_seed_min']:.0f}, "
              f"{o['return_seed_max']:.0f}] vs SB3 {s['return_mean']:.0f} [{s['return_seed_min']:.0f}, "
              f"{s['return_seed_max']:.0f}]; learning-phase speed ratio {verdict['speed_ratio_learn_phase']:.2f}x")
    return verdict


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--speed", action="store_true", help="update cost and training speed against SB3")
    mode.add_argument("--updates-only", action="store_true", help="update cost of ours (and --baseline) only")
    mode.add_argument("--returns", action="store_true", help="return comparison (long)")
    ap.add_argument("--task", default="HalfCheetah-v5")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=300, help="learning steps per round (training speed)")
    ap.add_argument("--grad-samples", type=int, default=2, help="n of the iterative rows")
    ap.add_argument("--no-iterative", action="store_true", help="skip the (slow) iterative update rows")
    ap.add_argument("--no-training-speed", action="store_true", help="--speed: update cost only")
    ap.add_argument("--baseline", default=None, help="an older optbench tree (e.g. a git worktree) to compare with")
    ap.add_argument("--baseline-label", default=None, help="what --baseline is (e.g. its commit), for the record")
    ap.add_argument("--impl", choices=["both", "ours", "sb3"], default="both",
                    help="--returns: which side to run (two processes can split the work; merge with --merge)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="--returns: merge the runs of these result files into --out instead of training")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--runs-dir", default="/tmp/optbench-bench-sb3")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends.enable()  # as the command line does (recorded by machine())
    out = Path(args.out)
    if not args.updates_only:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            print("stable-baselines3 is not installed (pip install 'stable-baselines3>=2.0')", file=sys.stderr)
            return 2
    if not args.returns:
        merge_out(out, "machine_speed", machine())
    if args.returns and args.merge:
        runs = []
        for f in args.merge:
            data = json.loads(Path(f).read_text())
            runs += data.get(f"returns_{args.task}_{args.steps}", {}).get("runs", [])
            if "machine_returns" in data:
                merge_out(out, "machine_returns", data["machine_returns"])
        runs.sort(key=lambda r: (r["seed"], r["impl"]))
        verdict = returns_verdict(args.task, args.steps, sorted({r["seed"] for r in runs}), runs)
        merge_out(out, f"returns_{args.task}_{args.steps}", verdict)
        print(json.dumps({k: v for k, v in verdict.items() if k != "runs"}, indent=1))
        return 0
    if args.returns:
        merge_out(out, "machine_returns", machine())
        bench_returns(args, out)
        return 0
    merge_out(out, "update_cost", bench_update_cost(args, with_sb3=args.speed))
    if args.speed and not args.no_training_speed:
        merge_out(out, "training_speed", bench_training_speed(args))
    merge_out(out, "machine_speed_end", {"loadavg": list(os.getloadavg()), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
