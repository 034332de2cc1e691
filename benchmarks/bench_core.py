"""Batched ``cmaes`` against ``pycma``, evosax and nevergrad (a script, not a test).

Our batched ``cmaes`` against the ``pycma`` wrapper (one ``cma.CMAEvolutionStrategy`` per
state, all candidates evaluated in one batched call), against a plain per-state pycma
loop (each state's candidates evaluated by their own call), and against the batched peer
built for many instances at once: **evosax** (JAX) strategies ``jax.vmap``-ed over the
states and ``jax.jit``-ed — its CMA-ES, Sep-CMA-ES and SNES — asking for all states'
candidates in one call and told all their fitnesses in one call, the candidates handed to
torch and the fitnesses back to JAX through DLPack (no copies on the CPU: checked per run);
and nevergrad's CMA per state (first seed only, a reference: nevergrad's own step size).
All on B = 100 (``--states``) states of a randomly initialized (17, 6) Q-ensemble, on the
same objective (our Q evaluations, one ``estimate`` call per iteration for all states), at
equal population, samples and iterations: wall clock, the part of it spent in Q
evaluations, the optimizer's own work per iteration (the rest), and the final scored J
(median over states, with the scoring standard error of each state's J, and the per-state
difference from ``cmaes``). JAX's compilation is not the optimizer's per-iteration work: each
evosax strategy is compiled and run for 3 iterations at the benchmark's shapes before it is
timed. Written under the key ``cma``, which ``summary.py`` reads. (The objective against
the FLOP floor is ``bench_scaling.py`` part (a).)

    python benchmarks/bench_core.py --threads 1     # prints one table, writes benchmarks/results/core.json
    python benchmarks/bench_core.py --quick --out /tmp/core.json   # smoke run

evosax needs ``pip install 'optbench[bench]'`` (jax, jaxlib, evosax); without it its rows are
skipped. With ``--threads 1``, XLA runs on one thread too (``XLA_FLAGS``), as torch does.
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
from optbench.optimizers.base import PolicyOptimizer
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


# ---------------------------------------------------------------------------------- evosax
EVOSAX_STRATEGIES = {"evosax_cma_es": "CMA_ES", "evosax_sep_cma_es": "Sep_CMA_ES", "evosax_snes": "SNES"}


def evosax_available() -> str | None:
    """evosax's version, or ``None`` if it (or JAX) is not installed."""
    try:
        import evosax  # noqa: F401
        import jax  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import version

    return f"evosax {version('evosax')}, jax {version('jax')}"


class EvosaxStrategy(PolicyOptimizer):
    """An evosax strategy (``evosax.algorithms.NAME``, evosax >= 0.2's ``init/ask/tell`` API),
    one instance per state through ``jax.vmap``, asked and told for all states in one jitted
    call each. Candidates go to torch and fitnesses (``-J``: evosax minimizes) back to JAX by
    DLPack. The estimate after an iteration is the strategy's mean. Not registered: a
    benchmark contestant, run by ``run_optimizer`` exactly as ``cmaes`` is."""

    label_always = ("strategy", "sigma0", "popsize", "samples")

    def __init__(self, strategy: str = "CMA_ES", sigma0: float = 0.5, popsize: int = 11, samples: int = 10):
        self.strategy, self.sigma0, self.popsize, self.samples = strategy, sigma0, popsize, samples
        self._compiled: dict[tuple[int, int], tuple] = {}
        self.copies = 0  # DLPack hand-overs that copied (0: every array shared its buffer)

    def _functions(self, B: int, N: int) -> tuple:
        """(init, ask, tell) for B states of dimension N, jitted once per shape and kept."""
        if (B, N) in self._compiled:
            return self._compiled[(B, N)]
        import jax
        import jax.numpy as jnp
        from evosax import algorithms

        es = getattr(algorithms, self.strategy)(population_size=self.popsize, solution=jnp.zeros(N, jnp.float32))
        params = es.default_params.replace(std_init=jnp.asarray(self.sigma0, jnp.float32))

        @jax.jit
        def init(key, mean):
            return jax.vmap(es.init, in_axes=(0, 0, None))(jax.random.split(key, B), mean, params)

        @jax.jit
        def ask(key, state):
            key, sub = jax.random.split(key)
            pop, state = jax.vmap(es.ask, in_axes=(0, 0, None))(jax.random.split(sub, B), state, params)
            return pop, state, key

        @jax.jit
        def tell(key, pop, fitness, state):
            key, sub = jax.random.split(key)
            state, _ = jax.vmap(es.tell, in_axes=(0, 0, 0, 0, None))(jax.random.split(sub, B), pop, fitness,
                                                                      state, params)
            return state, key

        self._compiled[(B, N)] = (init, ask, tell)
        return init, ask, tell

    @torch.no_grad()
    def iterate(self, objective, start, iterations, generator):
        import jax
        import jax.numpy as jnp

        init, ask, tell = self._functions(*start.shape)
        key = jax.random.key(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        state = init(key, jnp.from_dlpack(start.contiguous()))
        for _ in range(iterations):
            pop, state, key = ask(key, state)
            x = torch.from_dlpack(pop)  # [B, P, N], JAX's buffer
            self.copies += x.data_ptr() != pop.unsafe_buffer_pointer()
            fitness = objective.estimate(x, objective.noise(self.samples, 1, generator)).neg_()
            f = jnp.from_dlpack(fitness)
            self.copies += f.unsafe_buffer_pointer() != fitness.data_ptr()
            state, key = tell(key, pop, f, state)
            yield torch.from_dlpack(state.mean)


def cma_comparison(states: int, iterations: int, seeds: list[int], loop: bool, nevergrad: bool = True) -> dict:
    S, A = 17, 6
    sigma0, samples = 0.5, 10
    popsize = 4 + int(3 * __import__("math").log(2 * A))
    runs = []
    warm = make_objective(S, A, 4, seed=99, output_scale=20.0, alpha=0.05)
    for spec in ("cmaes", "pycma"):  # first-call costs (kernel selection, imports) are not the optimizer's
        run_optimizer(make_optimizer(spec), warm, 2, seed=0, score_at=[0, 2])
    evosax = evosax_available()
    contestants: dict = {"cmaes": lambda: make_optimizer(f"cmaes(sigma0={sigma0},samples={samples})"),
                         "pycma": lambda: make_optimizer(f"pycma(sigma0={sigma0},samples={samples})")}
    if evosax:
        for key, name in EVOSAX_STRATEGIES.items():
            opt = EvosaxStrategy(name, sigma0=sigma0, popsize=popsize, samples=samples)  # compiled once, reused
            contestants[key] = lambda opt=opt: opt
    else:
        print("  evosax not installed (pip install 'optbench[bench]'): its rows are skipped", file=sys.stderr)
    ng_spec = f"nevergrad:CMA(batch={popsize},samples={samples})"
    for seed in seeds:
        # the synthetic suite's randnet-halfcheetah recipe: last layer x20 so Q matters next to α
        obj = make_objective(S, A, states, seed=2 + seed, output_scale=20.0, alpha=0.05)
        row: dict = {"seed": seed}
        mine = dict(contestants)
        if nevergrad and seed == seeds[0]:
            mine["nevergrad_cma"] = lambda: make_optimizer(ng_spec)
        for key, build in mine.items():
            opt = build()
            if isinstance(opt, EvosaxStrategy):  # JAX compiles at these shapes: not per-iteration work
                run_optimizer(opt, obj, 3, seed=seed + 1000, score_at=[0])
            tic = time.perf_counter()
            with ObjectiveTimer() as timer:
                trace = run_optimizer(opt, obj, iterations, seed=seed, score_at=[0, iterations])
            wall = time.perf_counter() - tic
            row[key] = {"seconds": sum(trace.seconds), "wall_with_scoring": wall, "eval_seconds": timer.seconds,
                        "q_evals": sum(trace.q_evals), "J0": trace.scores[0], "J": trace.scores[-1],
                        "se": scoring_error(obj, trace.final_params)}
            if isinstance(opt, EvosaxStrategy):
                row[key]["dlpack_copies"] = opt.copies
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
        mine = [r for r in runs if key in r]
        secs = [r[key]["seconds"] for r in mine]
        J = torch.cat([r[key]["J"] for r in mine])
        se = torch.cat([r[key]["se"] for r in mine])
        evals = [r[key]["eval_seconds"] for r in mine]
        over = [r[key]["seconds"] - r[key]["eval_seconds"] for r in mine]
        out = {"seconds_per_run": statistics.median(secs), "seconds_all": secs, "runs": len(mine),
               "eval_seconds_per_run": statistics.median(evals), "overhead_seconds": statistics.median(over),
               "overhead_seconds_all": over, "overhead_ms_per_iteration": 1e3 * statistics.median(over) / iterations,
               "q_evals_per_run": mine[0][key]["q_evals"],
               "J_median": float(J.median()), "J_q25": float(J.quantile(0.25)), "J_q75": float(J.quantile(0.75)),
               "scoring_se_median": float(se.median())}
        if "dlpack_copies" in mine[0][key]:
            out["dlpack_copies"] = sum(r[key]["dlpack_copies"] for r in mine)
        return out

    def difference(key: str) -> dict:
        """Per state, J(cmaes) − J(key) over the seeds both ran, with its uncertainty."""
        mine = [r for r in runs if key in r]
        diff = torch.cat([r["cmaes"]["J"] - r[key]["J"] for r in mine])
        se2 = torch.cat([(r["cmaes"]["se"] ** 2 + r[key]["se"] ** 2).sqrt() for r in mine])
        sem = float(diff.std() / len(diff) ** 0.5)
        return {"median": float(diff.median()), "q25": float(diff.quantile(0.25)), "q75": float(diff.quantile(0.75)),
                "mean": float(diff.mean()), "stderr_of_mean": sem,
                # equal final J: the mean difference within 2 standard errors of zero
                "equal_within_2se": abs(float(diff.mean())) <= 2 * sem,
                "within_2se_fraction": float((diff.abs() <= 2 * se2).float().mean())}

    out = {"states": states, "iterations": iterations, "seeds": seeds, "S": S, "A": A, "popsize": popsize,
           "sigma0": sigma0, "samples": samples, "evosax": evosax, "nevergrad_spec": ng_spec if nevergrad else None,
           "J_start_median": float(torch.cat([r["cmaes"]["J0"] for r in runs]).median())}
    keys = [k for k in ("cmaes", "pycma", "pycma_loop", *EVOSAX_STRATEGIES, "nevergrad_cma") if any(k in r for r in runs)]
    for key in keys:
        out[key] = summary(key)
    for key in keys[1:]:
        out[f"diff_cmaes_minus_{key}"] = difference(key)
        out[f"speedup_vs_{key}"] = out[key]["seconds_per_run"] / out["cmaes"]["seconds_per_run"]
        # the optimizer's own time: its run minus the time spent inside estimate (Q evaluations);
        # > 1: ours does less own work than the other
        out[f"overhead_ratio_vs_{key}"] = out[key]["overhead_seconds"] / out["cmaes"]["overhead_seconds"]
        out[f"overhead_ours_over_theirs_{key}"] = out["cmaes"]["overhead_seconds"] / out[key]["overhead_seconds"]
    return out


# ---------------------------------------------------------------------------------- main
CONTESTANTS = [("cmaes", "cmaes (batched torch)"), ("pycma", "pycma wrapper (batched eval)"),
               ("pycma_loop", "pycma per-state loop"), ("evosax_cma_es", "evosax CMA_ES (vmap, jit)"),
               ("evosax_sep_cma_es", "evosax Sep_CMA_ES (vmap, jit)"), ("evosax_snes", "evosax SNES (vmap, jit)"),
               ("nevergrad_cma", "nevergrad CMA (per state)")]


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m, c = result["machine"], result["cma"]
    console = Console(width=max(Console().width, 160))
    load = f", load {m['loadavg'][0]:.1f} at start" if m["loadavg"] else ""
    table = Table(title=f"cmaes vs pycma — {m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}{load}")
    for col in ("contestant", "setting", "result"):
        table.add_column(col, justify="left")
    for key, name in CONTESTANTS:
        if key not in c:
            continue
        s = c[key]
        label = f"B={c['states']}, {c['iterations']} it, pop {c['popsize']}, n={c['samples']}, {s.get('runs', len(c['seeds']))} seed(s)"
        ratio = s["seconds_per_run"] / c["cmaes"]["seconds_per_run"]
        own = s["overhead_seconds"] / c["cmaes"]["overhead_seconds"]
        copies = f"; DLPack copies {s['dlpack_copies']}" if "dlpack_copies" in s else ""
        table.add_row(name, label,
                      f"{s['seconds_per_run']:.2f} s/run ({ratio:.2f}× cmaes): {s['eval_seconds_per_run']:.2f} s in "
                      f"estimate + {s['overhead_seconds']:.3f} s own = {s['overhead_ms_per_iteration']:.2f} ms/iteration "
                      f"({own:.2f}× cmaes's); J median {s['J_median']:.3f} "
                      f"[IQR {s['J_q25']:.3f}, {s['J_q75']:.3f}], scoring s.e. {s['scoring_se_median']:.3f}{copies}")
    for key, name in CONTESTANTS[1:]:
        if f"diff_cmaes_minus_{key}" not in c:
            continue
        d = c[f"diff_cmaes_minus_{key}"]
        table.add_row(f"J(cmaes) − J({name.split(' (')[0]})", "per state",
                      f"median {d['median']:+.4f}, mean {d['mean']:+.4f} ± {d['stderr_of_mean']:.4f} "
                      f"({'equal' if d.get('equal_within_2se') else 'NOT equal'} within 2 s.e.), "
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
    ap.add_argument("--no-nevergrad", action="store_true", help="skip nevergrad's CMA (per state, first seed)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads, and XLA's (default: the libraries' choice)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "core.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        if args.threads == 1:  # before JAX is imported: XLA's CPU client reads it once
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    backends.enable()  # as the command line does (recorded by machine())
    result: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    print("cmaes vs pycma ...", file=sys.stderr, flush=True)
    seeds = args.seeds[:1] if args.quick else args.seeds
    result["cma"] = cma_comparison(20 if args.quick else args.states, 10 if args.quick else args.iterations,
                                   seeds, loop=not args.no_loop, nevergrad=not args.no_nevergrad)
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
