"""Core cost benchmark of optbench (a script, not a test).

In one run, on this machine:

(a) the fp32 matrix-product rate (GFLOP/s, large square ``torch.mm`` and the Q-network's own
    ``bmm`` shapes); the Q-network's FLOPs per (s, a) pair (``QEnsemble.flops_per_pair()``,
    per member); and the throughput of ``PolicyObjective.estimate`` (no grad) and of
    ``value_and_grad`` at MuJoCo sizes (|S|, |A|) = (11, 3), (17, 6), (27, 8), in (s, a)
    pairs/s (the ledger's unit: one pair through the whole ensemble) and as a fraction of the
    FLOP floor ``rate / (E · flops_per_pair)`` (``value_and_grad``: ``rate / (2 · E ·
    flops_per_pair)``, since Q is frozen and the backward pass only propagates to the inputs,
    which costs one more forward's worth of matrix products);
(b) our batched ``cmaes`` against the ``pycma`` wrapper (one ``cma.CMAEvolutionStrategy``
    per state, all candidates evaluated in one batched call) and against a plain per-state
    pycma loop (each state's candidates evaluated by their own call), on B = 100 states of a
    randomly initialized (17, 6) Q-ensemble, at equal iterations and equal settings: wall
    clock, the part of it spent in Q evaluations, and the final scored J (median over
    states, with the scoring standard error of each state's J).

``--profile`` adds, at 10⁴ pairs per call, the objective variants we tried when the
throughput fell short (state chunking, one thread, a fused/chunked Q forward, ``torch.compile``
of the Q forward and of the whole estimator).

    python benchmarks/bench_core.py                 # prints one table, writes benchmarks/results/core.json
    python benchmarks/bench_core.py --quick         # smaller, for a smoke run
    python benchmarks/bench_core.py --profile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from optbench.objectives.policy_objective import PolicyObjective
from optbench.objectives.q_functions import QEnsemble
from optbench.optimizers import make_optimizer, run_optimizer

from bench_common import ObjectiveTimer, machine

SIZES = [(11, 3, "Hopper"), (17, 6, "HalfCheetah"), (27, 8, "Ant")]
# (states B, candidates P, samples n): B·P·n pairs per call
CALLS = [(10, 10, 10), (100, 10, 10), (100, 100, 10)]


def time_call(fn: Callable[[], object], min_time: float = 0.25, rounds: int = 5) -> dict[str, float]:
    """Seconds per call: best and median over ``rounds`` rounds of at least ``min_time`` each.

    The best round is the machine's capability when nothing else competes for the cores; the
    median shows what sharing the machine costs.
    """
    fn()  # warm up (allocator, MKL/oneDNN kernel selection)
    reps, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < min_time / 4:
        fn()
        reps += 1
    per = (time.perf_counter() - tic) / reps
    reps = max(1, int(min_time / per))
    results = []
    for _ in range(rounds):
        tic = time.perf_counter()
        for _ in range(reps):
            fn()
        results.append((time.perf_counter() - tic) / reps)
    return {"best": min(results), "median": statistics.median(results)}


def matmul_rates(quick: bool) -> dict[str, float]:
    """fp32 GFLOP/s of a large square product and of the Q-network's hidden-layer bmm."""
    out = {}
    n = 1024 if quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_call(lambda: torch.mm(a, b), min_time=0.5)
    out["square_n"] = n
    out["square_gflops"] = 2 * n**3 / t["best"] / 1e9
    out["square_gflops_median"] = 2 * n**3 / t["median"] / 1e9
    # Q's 256x256 layer on 10^4 pairs, 2 members, with bias (baddbmm), as the objective runs it
    rows = 10_000
    h, w, bias = torch.randn(2, rows, 256), torch.randn(2, 256, 256), torch.randn(2, 1, 256)
    t = time_call(lambda: torch.baddbmm(bias, h, w), min_time=0.5)
    out["qlayer_gflops"] = 2 * 2 * rows * 256 * 256 / t["best"] / 1e9
    out["qlayer_gflops_median"] = 2 * 2 * rows * 256 * 256 / t["median"] / 1e9
    return out


def make_objective(S: int, A: int, B: int, seed: int = 0, output_scale: float = 1.0, alpha: float = 0.05,
                   score_samples: int = 1000) -> PolicyObjective:
    torch.manual_seed(seed)
    q = QEnsemble(S, A)
    with torch.no_grad():
        q.weights[-1].mul_(output_scale)
    states = torch.randn(B, S, generator=torch.Generator().manual_seed(seed + 1))
    return PolicyObjective(q, states, alpha, score_samples=score_samples, score_seed=seed)


def throughput(quick: bool, rate: float, profile: bool) -> list[dict]:
    rows = []
    calls = CALLS[:2] if quick else CALLS
    for S, A, task in SIZES:
        for B, P, n in calls:
            obj = make_objective(S, A, B)
            E, fpp = obj.q.ensemble_size, obj.q.flops_per_pair()
            gen = torch.Generator().manual_seed(0)
            lam = 0.3 * torch.randn(B, P, 2 * A, generator=gen)
            eps = obj.noise(n, 1, gen)
            pairs = B * P * n
            floor = rate * 1e9 / (E * fpp)

            def est():
                with torch.no_grad():
                    return obj.estimate(lam, eps)

            actions = torch.tanh(torch.randn(B, P * n, A, generator=gen))

            def q_only():
                with torch.no_grad():
                    return obj.q(obj.states, actions)

            variants = {"estimate": (est, 1), "value_and_grad": (lambda: obj.value_and_grad(lam, eps), 2),
                        "Q forward only": (q_only, 1)}
            saved = obj.counts.copy()
            if profile and pairs >= 10_000:
                variants.update(profile_variants(obj, lam, eps, S, A, full=pairs == 10_000))
            for name, (fn, mult) in variants.items():
                t = time_call(fn, min_time=0.15 if quick else 0.3)
                obj.counts = saved.copy()
                rows.append({
                    "task": task, "S": S, "A": A, "B": B, "P": P, "n": n, "pairs": pairs, "variant": name,
                    "seconds_per_call": t["best"], "seconds_per_call_median": t["median"],
                    "pairs_per_s": pairs / t["best"], "pairs_per_s_median": pairs / t["median"],
                    "floor_pairs_per_s": floor / mult, "fraction_of_floor": pairs / t["best"] / (floor / mult),
                    "fraction_of_floor_median": pairs / t["median"] / (floor / mult),
                    "flops_per_pair": fpp, "ensemble_size": E,
                })
            print(f"  ({S:2d},{A}) pairs={pairs:>6d}: " + ", ".join(
                f"{r['variant']} {r['fraction_of_floor']:.0%}" for r in rows if r["S"] == S and r["pairs"] == pairs),
                file=sys.stderr, flush=True)
    return rows


class FusedQ(torch.nn.Module):
    """Same function as a :class:`QEnsemble` (same weights), evaluated the way we propose:
    the state block of layer 1 enters as a per-state bias of one ``baddbmm`` over (member,
    state) batches, ReLUs run in place, and pairs go through in chunks of ``chunk`` so each
    layer's activations stay in cache. Used by ``--profile`` only."""

    def __init__(self, q: QEnsemble, chunk: int | None = 2048):
        super().__init__()
        self.q, self.chunk = q, chunk
        self.state_dim, self.action_dim, self.ensemble_size = q.state_dim, q.action_dim, q.ensemble_size

    def _forward(self, states, actions):
        q = self.q
        E, (B, M, A) = q.ensemble_size, actions.shape
        w0, b0 = q.weights[0], q.biases[0]
        H = w0.shape[-1]
        hs = torch.baddbmm(b0, states.unsqueeze(0).expand(E, B, -1), w0[:, : q.state_dim])  # [E,B,H]
        h = torch.baddbmm(hs.reshape(E * B, 1, H), actions.unsqueeze(0).expand(E, B, M, A).reshape(E * B, M, A),
                          w0[:, q.state_dim :].unsqueeze(1).expand(E, B, A, H).reshape(E * B, A, H))
        h = h.view(E, B * M, H).relu_()
        n_layers = len(q.weights)
        for k in range(1, n_layers):
            h = torch.baddbmm(q.biases[k], h, q.weights[k])
            if k < n_layers - 1:
                h.relu_()
        return h.view(E, B, M)

    def forward(self, states, actions):
        B, M, _ = actions.shape
        if self.chunk is None or B * M <= self.chunk:
            return self._forward(states, actions)
        if M >= self.chunk:  # chunk the actions of each state
            return torch.cat([self._forward(states, actions[:, lo : lo + self.chunk])
                              for lo in range(0, M, self.chunk)], dim=2)
        per = max(1, self.chunk // M)  # chunk the states
        return torch.cat([self._forward(states[lo : lo + per], actions[lo : lo + per]) for lo in range(0, B, per)], dim=1)


def profile_variants(obj: PolicyObjective, lam, eps, S: int, A: int, full: bool = True) -> dict[str, tuple[Callable, int]]:
    """Objective variants that do not change what is computed, only how (``full``: all of them,
    else only the state-chunked estimator, the one we propose)."""
    out: dict[str, tuple[Callable, int]] = {}
    B, P, n = lam.shape[0], lam.shape[1], eps.shape[2]

    def chunked_values(lam_, per):
        return torch.cat([obj._soft_values(lam_[lo:lo + per], eps[lo:lo + per], slice(lo, lo + per)).mean(-1)
                          for lo in range(0, B, per)])

    for chunk in ((1024, 2048, 4096) if full else (2048,)):
        per = max(1, chunk // (P * n))
        if per >= B:
            continue

        def chunked(per=per):
            with torch.no_grad():
                return chunked_values(lam, per)

        out[f"estimate, state chunks of {per * P * n} pairs"] = (chunked, 1)
        if chunk == 2048:
            def chunked_grad(per=per):
                with torch.enable_grad():
                    lam_ = lam.detach().requires_grad_(True)
                    value = chunked_values(lam_, per)
                    return value.detach(), torch.autograd.grad(value.sum(), lam_)[0]

            out[f"value_and_grad, state chunks of {per * P * n} pairs"] = (chunked_grad, 2)

            def chunked_fwd_bwd(per=per):  # forward and backward chunk by chunk (states are independent)
                values, grads = [], []
                with torch.enable_grad():
                    for lo in range(0, B, per):
                        lam_ = lam[lo:lo + per].detach().requires_grad_(True)
                        value = obj._soft_values(lam_, eps[lo:lo + per], slice(lo, lo + per)).mean(-1)
                        grads.append(torch.autograd.grad(value.sum(), lam_)[0])
                        values.append(value.detach())
                return torch.cat(values), torch.cat(grads)

            out[f"value_and_grad, forward+backward per chunk of {per * P * n} pairs"] = (chunked_fwd_bwd, 2)
    if not full:
        return out

    def one_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                return obj.estimate(lam, eps)
        finally:
            torch.set_num_threads(threads)

    if torch.get_num_threads() > 1:
        out["estimate, 1 thread"] = (one_thread, 1)

    def with_q(q):
        other = PolicyObjective(q, obj.states, obj.alpha, score_noise=obj.score_noise)

        def est():
            with torch.no_grad():
                return other.estimate(lam, eps)

        return other, est

    for chunk in (None, 1024, 2048, 4096):
        fused, est = with_q(FusedQ(obj.q, chunk))
        with torch.no_grad():
            ref = obj._soft_values(lam, eps)
            assert torch.allclose(fused._soft_values(lam, eps), ref, rtol=1e-4, atol=1e-4), "FusedQ must match QEnsemble"
        out[f"estimate, fused Q{'' if chunk is None else f', chunks of {chunk}'}"] = (est, 1)
        if chunk == 2048:
            out["value_and_grad, fused Q, chunks of 2048"] = (lambda fused=fused: fused.value_and_grad(lam, eps), 2)
    try:
        compiled = torch.compile(obj.q, dynamic=False)
        compiled.state_dim, compiled.action_dim, compiled.ensemble_size = S, A, obj.q.ensemble_size
        _, est = with_q(compiled)
        est()
        out["estimate, torch.compile(Q)"] = (est, 1)
        compiled_sv = torch.compile(obj._soft_values, dynamic=False)

        def est_all():
            with torch.no_grad():
                return compiled_sv(lam, eps).mean(-1)

        est_all()
        out["estimate, torch.compile(estimator)"] = (est_all, 1)
    except Exception as exc:  # no compiler toolchain: report and go on
        print(f"torch.compile unavailable: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
    return out


# ------------------------------------------------------------------------------------- (b)
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
def print_tables(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m, r = result["machine"], result["matmul"]
    console = Console(width=max(Console().width, 160))
    table = Table(title=(f"optbench core costs — {m['cpu']}, {m['torch_threads']} threads, torch {m['torch']}, "
                         f"load {m['loadavg'][0]:.1f} at start" if m["loadavg"] else ""),
                  show_lines=False)
    for col, just in [("measurement", "left"), ("size", "left"), ("pairs/call", "right"), ("pairs/s", "right"),
                      ("floor pairs/s", "right"), ("of floor", "right"), ("note", "left")]:
        table.add_column(col, justify=just)
    table.add_row("fp32 matmul", f"{r['square_n']}² mm", "", "", "", "",
                  f"{r['square_gflops']:.0f} GFLOP/s (median {r['square_gflops_median']:.0f})")
    table.add_row("Q layer bmm", "2×10⁴×256×256", "", "", "", "",
                  f"{r['qlayer_gflops']:.0f} GFLOP/s (median {r['qlayer_gflops_median']:.0f})")
    seen = set()
    for row in result["throughput"]:
        size = f"({row['S']},{row['A']}) {row['task']}"
        if size not in seen:
            seen.add(size)
            table.add_section()
            table.add_row("Q FLOPs/pair", size, "", "", "", "",
                          f"{row['flops_per_pair']:,} per member × {row['ensemble_size']} members")
        table.add_row(row["variant"], size, f"{row['pairs']:,}", f"{row['pairs_per_s'] / 1e6:.2f} M",
                      f"{row['floor_pairs_per_s'] / 1e6:.2f} M", f"{row['fraction_of_floor']:.0%}",
                      f"median {row['fraction_of_floor_median']:.0%}")
    if "cma" in result:
        c = result["cma"]
        table.add_section()
        label = f"B={c['states']}, {c['iterations']} it, pop {c['popsize']}, n={c['samples']}, {len(c['seeds'])} seed(s)"
        for key, name in [("cmaes", "cmaes (batched torch)"), ("pycma", "pycma wrapper (batched eval)"),
                          ("pycma_loop", "pycma per-state loop")]:
            if key not in c:
                continue
            s = c[key]
            ratio = s["seconds_per_run"] / c["cmaes"]["seconds_per_run"]
            table.add_row(name, label, "", "", "", "",
                          f"{s['seconds_per_run']:.2f} s/run ({ratio:.1f}× cmaes): {s['eval_seconds_per_run']:.2f} s in "
                          f"estimate + {s['overhead_seconds']:.3f} s own ({s['overhead_seconds'] / c['cmaes']['overhead_seconds']:.0f}×); "
                          f"J median {s['J_median']:.3f} "
                          f"[IQR {s['J_q25']:.3f}, {s['J_q75']:.3f}], scoring s.e. {s['scoring_se_median']:.3f}")
        d = c["diff_cmaes_minus_pycma"]
        table.add_row("J(cmaes) − J(pycma)", "per state", "", "", "", "",
                      f"median {d['median']:+.4f}, mean {d['mean']:+.4f} ± {d['stderr_of_mean']:.4f}, "
                      f"{d['within_2se_fraction']:.0%} of states within 2 s.e.")
        table.add_row("J at the start", "", "", "", "", "", f"median {c['J_start_median']:.3f}")
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
    ap.add_argument("--quick", action="store_true", help="small sizes, one seed (smoke run)")
    ap.add_argument("--profile", action="store_true", help="also time objective variants (chunks, threads, compile)")
    ap.add_argument("--skip-cma", action="store_true", help="only part (a)")
    ap.add_argument("--no-loop", action="store_true", help="skip the per-state pycma loop (slowest part)")
    ap.add_argument("--states", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "core.json")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    print("matmul rate ...", file=sys.stderr, flush=True)
    result["matmul"] = matmul_rates(args.quick)
    rate = result["matmul"]["square_gflops"]
    print(f"  {rate:.0f} GFLOP/s; objective throughput ...", file=sys.stderr, flush=True)
    result["throughput"] = throughput(args.quick, rate, args.profile)
    if not args.skip_cma:
        print("cmaes vs pycma ...", file=sys.stderr, flush=True)
        seeds = args.seeds[:1] if args.quick else args.seeds
        result["cma"] = cma_comparison(20 if args.quick else args.states, 10 if args.quick else args.iterations,
                                       seeds, loop=not args.no_loop)
    result["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(to_jsonable(result), indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
