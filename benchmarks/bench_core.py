"""Batched ``cmaes`` against ``pycma`` (a script, not a test).

Our batched ``cmaes`` against the ``pycma`` wrapper (one ``cma.CMAEvolutionStrategy`` per
state, all candidates evaluated in one batched call) and against a plain per-state pycma
loop (each state's candidates evaluated by their own call), on B = 100 (``--states``) states
of a randomly initialized (17, 6) Q-ensemble, at equal iterations and equal settings: wall clock, the part
of it spent in Q evaluations, and the final scored J (median over states, with the scoring
standard error of each state's J). Written under the key ``cma``, which ``summary.py`` reads.
(The objective against the FLOP floor is ``bench_scaling.py`` part (a).)

    python benchmarks/bench_core.py --threads 1     # prints one table, writes benchmarks/results/core.json
    python benchmarks/bench_core.py --quick --out /tmp/core.json   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from optbench import backends

from optbench.objectives.policy_objective import PolicyObjective
from optbench.objectives.q_functions import QEnsemble
from optbench.optimizers import make_optimizer
from optbench.runner.drive import run_optimizer

from bench_common import ObjectiveTimer, machine


def make_objective(S: int, A: int, B: int, seed: int = 0, output_scale: float = 1.0, alpha: float = 0.05,
                   score_samples: int = 1000) -> PolicyObjective:
    torch.manual_seed(seed)
    q = QEnsemble(S, A)
    with torch.no_grad():
        q.weights[-1].mul_(output_scale)
    states = torch.randn(B, S, generator=torch.Generator().manual_seed(seed + 1))
    return PolicyObjective(q, states, alpha, score_samples=score_samples, score_seed=seed)


def scoring_error(obj: PolicyObjective, lam: torch.Tensor) -> torch.Tensor:
    """Standard error of each state's scored J (std of the per-draw integrand / sqrt(N))."""
    with torch.no_grad():
        v = obj._soft_values(lam.unsqueeze(1), obj.score_noise.unsqueeze(1)).squeeze(1)  # [B, N], uncounted
    return v.std(-1) / v.shape[-1] ** 0.5


def pycma_loop(obj: PolicyObjective, iterations: int, seed: int, sigma0: float, samples: int) -> dict:
    """The plain way: one pycma strategy per state, each state's candidates evaluated by its own call."""
    import warnings

    import cma
    import numpy as np

    B = obj.batch_size
    gen = torch.Generator().manual_seed(seed)
    x0 = obj.initial_params().double().numpy()
    strategies = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(B):
            rng = np.random.default_rng(seed * 100_003 + i)
            strategies.append(cma.CMAEvolutionStrategy(x0[i], sigma0, {
                "verbose": -9, "verb_log": 0, "verb_disp": 0, "seed": float("nan"),
                "randn": lambda *shape, rng=rng: rng.standard_normal(shape)}))
        subs = [obj.subset([i]) for i in range(B)]
        q_before = obj.counts.q_evals
        tic = time.perf_counter()
        for _ in range(iterations):
            for i, es in enumerate(strategies):
                X = es.ask()
                lam = torch.as_tensor(np.asarray(X), dtype=torch.float32).unsqueeze(0)
                with torch.no_grad():
                    J = subs[i].estimate(lam, subs[i].noise(samples, 1, gen))[0]
                es.tell(X, (-J.double()).tolist())
        seconds = time.perf_counter() - tic
    final = torch.as_tensor(np.stack([es.mean for es in strategies]), dtype=torch.float32)
    return {"seconds": seconds, "q_evals": obj.counts.q_evals - q_before, "final_params": final}


def cma_comparison(states: int, iterations: int, seeds: list[int], loop: bool) -> dict:
    S, A = 17, 6
    sigma0, samples = 0.5, 10
    popsize = 4 + int(3 * __import__("math").log(2 * A))
    runs = []
    warm = make_objective(S, A, 4, seed=99, output_scale=20.0, alpha=0.05)
    for spec in ("cmaes", "pycma"):  # first-call costs (kernel selection, imports) are not the optimizer's
        run_optimizer(make_optimizer(spec), warm, 2, seed=0, score_at=[0, 2])
    for seed in seeds:
        # the synthetic suite's randnet-halfcheetah recipe: last layer x20 so Q matters next to α
        obj = make_objective(S, A, states, seed=2 + seed, output_scale=20.0, alpha=0.05)
        row: dict = {"seed": seed}
        specs = [("cmaes", f"cmaes(sigma0={sigma0},samples={samples})"),
                 ("pycma", f"pycma(sigma0={sigma0},samples={samples})")]
        for key, spec in specs:
            opt = make_optimizer(spec)
            tic = time.perf_counter()
            with ObjectiveTimer() as timer:
                trace = run_optimizer(opt, obj, iterations, seed=seed, score_at=[0, iterations])
            wall = time.perf_counter() - tic
            row[key] = {"seconds": sum(trace.seconds), "wall_with_scoring": wall, "eval_seconds": timer.seconds,
                        "q_evals": sum(trace.q_evals), "J0": trace.scores[0], "J": trace.scores[-1],
                        "se": scoring_error(obj, trace.final_params)}
            print(f"  seed {seed} {key}: {row[key]['seconds']:.2f} s, median J {row[key]['J'].median():.3f}",
                  file=sys.stderr, flush=True)
        if loop:
            with ObjectiveTimer() as timer:
                res = pycma_loop(obj, iterations, seed, sigma0, samples)
            J = obj.score(res["final_params"])
            row["pycma_loop"] = {"seconds": res["seconds"], "eval_seconds": timer.seconds, "q_evals": res["q_evals"], "J": J,
                                 "se": scoring_error(obj, res["final_params"])}
            print(f"  seed {seed} pycma per-state loop: {res['seconds']:.2f} s, median J {J.median():.3f}",
                  file=sys.stderr, flush=True)
        runs.append(row)

    def summary(key: str) -> dict:
        secs = [r[key]["seconds"] for r in runs]
        J = torch.cat([r[key]["J"] for r in runs])
        se = torch.cat([r[key]["se"] for r in runs])
        evals = [r[key]["eval_seconds"] for r in runs]
        over = [r[key]["seconds"] - r[key]["eval_seconds"] for r in runs]
        return {"seconds_per_run": statistics.median(secs), "seconds_all": secs,
                "eval_seconds_per_run": statistics.median(evals), "overhead_seconds": statistics.median(over),
                "overhead_seconds_all": over,
                "q_evals_per_run": runs[0][key]["q_evals"],
                "J_median": float(J.median()), "J_q25": float(J.quantile(0.25)), "J_q75": float(J.quantile(0.75)),
                "scoring_se_median": float(se.median())}

    out = {"states": states, "iterations": iterations, "seeds": seeds, "S": S, "A": A, "popsize": popsize,
           "sigma0": sigma0, "samples": samples,
           "J_start_median": float(torch.cat([r["cmaes"]["J0"] for r in runs]).median()),
           "cmaes": summary("cmaes"), "pycma": summary("pycma")}
    diff = torch.cat([r["cmaes"]["J"] - r["pycma"]["J"] for r in runs])
    se2 = torch.cat([(r["cmaes"]["se"] ** 2 + r["pycma"]["se"] ** 2).sqrt() for r in runs])
    out["diff_cmaes_minus_pycma"] = {"median": float(diff.median()), "q25": float(diff.quantile(0.25)),
                                     "q75": float(diff.quantile(0.75)), "mean": float(diff.mean()),
                                     "stderr_of_mean": float(diff.std() / len(diff) ** 0.5),
                                     "within_2se_fraction": float((diff.abs() <= 2 * se2).float().mean())}
    out["speedup_vs_pycma"] = out["pycma"]["seconds_per_run"] / out["cmaes"]["seconds_per_run"]
    # the optimizer's own time: its run minus the time spent inside estimate (Q evaluations)
    out["overhead_ratio_vs_pycma"] = out["pycma"]["overhead_seconds"] / out["cmaes"]["overhead_seconds"]
    if loop:
        out["pycma_loop"] = summary("pycma_loop")
        out["speedup_vs_pycma_loop"] = out["pycma_loop"]["seconds_per_run"] / out["cmaes"]["seconds_per_run"]
        out["overhead_ratio_vs_pycma_loop"] = out["pycma_loop"]["overhead_seconds"] / out["cmaes"]["overhead_seconds"]
    return out


# ---------------------------------------------------------------------------------- main
def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m, c = result["machine"], result["cma"]
    console = Console(width=max(Console().width, 160))
    load = f", load {m['loadavg'][0]:.1f} at start" if m["loadavg"] else ""
    table = Table(title=f"cmaes vs pycma — {m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}{load}")
    for col in ("contestant", "setting", "result"):
        table.add_column(col, justify="left")
    label = f"B={c['states']}, {c['iterations']} it, pop {c['popsize']}, n={c['samples']}, {len(c['seeds'])} seed(s)"
    for key, name in [("cmaes", "cmaes (batched torch)"), ("pycma", "pycma wrapper (batched eval)"),
                      ("pycma_loop", "pycma per-state loop")]:
        if key not in c:
            continue
        s = c[key]
        ratio = s["seconds_per_run"] / c["cmaes"]["seconds_per_run"]
        table.add_row(name, label,
                      f"{s['seconds_per_run']:.2f} s/run ({ratio:.1f}× cmaes): {s['eval_seconds_per_run']:.2f} s in "
                      f"estimate + {s['overhead_seconds']:.3f} s own ({s['overhead_seconds'] / c['cmaes']['overhead_seconds']:.0f}×); "
                      f"J median {s['J_median']:.3f} "
                      f"[IQR {s['J_q25']:.3f}, {s['J_q75']:.3f}], scoring s.e. {s['scoring_se_median']:.3f}")
    d = c["diff_cmaes_minus_pycma"]
    table.add_row("J(cmaes) − J(pycma)", "per state",
                  f"median {d['median']:+.4f}, mean {d['mean']:+.4f} ± {d['stderr_of_mean']:.4f}, "
                  f"{d['within_2se_fraction']:.0%} of states within 2 s.e.")
    table.add_row("J at the start", "", f"median {c['J_start_median']:.3f}")
    console.print(table)


def to_jsonable(x):  # noqa: D103
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: to_jsonable(v) for k, v in x.items() if k not in ("final_params",)}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 states, 10 iterations, one seed (smoke run)")
    ap.add_argument("--no-loop", action="store_true", help="skip the per-state pycma loop (slowest contestant)")
    ap.add_argument("--states", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "core.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends.enable()  # as the command line does (recorded by machine())
    result: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    print("cmaes vs pycma ...", file=sys.stderr, flush=True)
    seeds = args.seeds[:1] if args.quick else args.seeds
    result["cma"] = cma_comparison(20 if args.quick else args.states, 10 if args.quick else args.iterations,
                                   seeds, loop=not args.no_loop)
    result["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_jsonable(result), indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
