"""Scaling benchmark of optbench (a script, not a test): one table, ratios in one run.

(a) **Objective at the suite's call shapes.** On the ``mujoco-states`` objectives (the
    shipped agents' Q-ensembles, their 100 benchmark states), the calls the suite's
    optimizers actually make: Adam's ``value_and_grad`` (P = 1, n = 10), CEM's
    ``soft_values`` (n = 100), CMA-ES's ``estimate`` (P = popsize, n = 10) and scoring
    (``score_samples`` = 256 draws per state); in (s, a) pairs/s and as a fraction of the
    Q-network FLOP floor ``rate / (E · flops_per_pair)`` (``value_and_grad``: half of it, a
    backward pass through every member), with the machine's fp32 matrix-product rate measured in
    the same run, interleaved with the
    objective timings (best round against best round): the fastest of torch's CPU kernels
    for a 2048² product, ``torch.mm`` (MKL), oneDNN's linear, and oneDNN's linear with the
    weight packed once as the frozen Q-ensembles keep theirs (on AVX-512 AMD CPUs oneDNN's is
    ~2.3x MKL's, so a floor from ``mm`` alone would flatter every figure). Variants: the
    default (Q on oneDNN, in cache-sized pieces, ``Q_CHUNK_PAIRS``), the same on torch's
    batched products (``plain products``, what runs where oneDNN is unusable), one piece,
    other piece sizes, and ``torch.compile`` of the Q forward (opt-in measurement only).
    Each call takes the next of 8 noise draws, as the optimizers draw fresh noise every
    iteration. ``value_and_grad`` runs its backward pass only through the members' rows with a nonzero
    ``dQ̂/dq`` (for the minimum of two members: one member per pair); its rows also give that
    share and the fraction of the floor counting the backward pass through those rows only,
    ``rate / (E · flops_per_pair · (1 + share))``. (The floor counts layer 1's state block for
    every pair; the Q-ensembles compute it once per state.)
(b) **Wall clock of whole runs** (``optbench run`` in a fresh process, plots off): the full
    default ``mujoco-states`` run (100 states, the suite's budgets), on 1 and 2 cores
    (in-process with 1 or 2 torch threads; 2 worker processes of 1 thread); with 10 states;
    and, since the shipped packages hold 100 benchmark states, a mirror suite with the same
    optimizers and settings on randomly initialized Q-ensembles of the same sizes (Hopper
    11/3, HalfCheetah 17/6) at 100 and 1000 states, every optimizer at ``MIRROR_ITERATIONS``
    (50) iterations: the mirror measures how a run's time grows with states, and at full
    budgets its 1000-state runs alone would take most of an hour. ``direct`` and
    ``iterative`` need an agent package, so the mirror runs the classical optimizers.
(c) **Optimizers' own work and per-iteration cost** on one shipped objective
    (``HalfCheetah-v5/direct``, its 100 benchmark states, the suite's settings): the suite's
    Adam, CEM and CMA-ES entries and its iterative optimizer on that objective (the
    ``halfcheetah-iterative`` package's network), that one also at the paper's 10 gradient
    samples, built as ``optbench run`` builds them, in interleaved rounds of equal
    iterations. Each run times the objective's evaluations inside it (``soft_values``,
    ``estimate``, ``value_and_grad``; ``bench_common.ObjectiveTimer``): an optimizer's own
    work is the rest of its iteration time (target ≤ 10 % for Adam, CEM and CMA-ES). And the
    iterative optimizer's time per iteration against paper-setting Adam (lr 0.01, 10
    samples) and CEM (100 samples, top 10), as the median of per-round ratios (paper:
    ≈ 1.15× Adam, ≈ 1.25× CEM).

    python benchmarks/bench_scaling.py                    # all parts; writes benchmarks/results/scaling.json
    python benchmarks/bench_scaling.py --part objective   # (a) only, ~3 min
    python benchmarks/bench_scaling.py --part optimizers  # (c) only, ~1 min
    python benchmarks/bench_scaling.py --quick            # smoke run: short budgets, fewer rounds
    python benchmarks/bench_scaling.py --ray              # (b) also with --executor ray (2 workers)

``benchmarks/summary.py`` reads the results into one table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Callable

import torch

from optbench import backends

from optbench.backends import onednn
from optbench.objectives import policy_objective as po
from optbench.objectives.distributions import sample_tanh_gaussian, split_params
from optbench.objectives.q_functions import pessimistic_value_and_grad
from optbench.optimizers.base import PolicyOptimizer, format_spec, make_optimizer, parse_spec
from optbench.runner.grid import RunPlan, plan_run
from optbench.suites.sources import BuiltObjective, build_objective, resolve_context
from optbench.suites.spec import load_suite

from bench_common import CLOCKS, ObjectiveTimer, gemm_fns, interleaved, machine

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("objective", "optimizers", "scaling")  # (a), (c), (b): the order they run in


# ------------------------------------------------------------------------------------- (a)
def suite_calls(objective: po.PolicyObjective) -> list[tuple[str, str, int, int, int]]:
    """(optimizer, kind, B, P, n) of the mujoco-states optimizers' objective calls."""
    import math

    B, A = objective.batch_size, objective.action_dim
    popsize = 4 + int(3 * math.log(2 * A))
    return [("adam", "value_and_grad", B, 1, 10), ("cem", "soft_values", B, 1, 100),
            ("cmaes", "estimate", B, popsize, 10), ("scoring", "score", B, 1, objective.score_noise.shape[1])]


def call_fn(obj: po.PolicyObjective, kind: str, lam: torch.Tensor, draws: list[torch.Tensor]) -> Callable[[], object]:
    """The call, with the noise draws in turn (as optimizers draw fresh noise every iteration:
    ``value_and_grad``'s gathered backward rows then change in number from call to call)."""
    eps = itertools.cycle(draws).__next__
    if kind == "value_and_grad":
        return lambda: obj.value_and_grad(lam, eps())
    if kind == "score":
        return lambda: obj.score(lam[:, 0])

    def fn():
        with torch.no_grad():
            return obj.soft_values(lam, eps()) if kind == "soft_values" else obj.estimate(lam, eps())

    return fn


NOISE_DRAWS = 8  # noise draws each call of (a) cycles through


def backward_share(obj: po.PolicyObjective, lam: torch.Tensor, eps: torch.Tensor) -> float:
    """Share of the members' (s, a) rows that ``value_and_grad``'s backward pass on oneDNN runs
    through: those whose ``dQ̂/dq`` is nonzero (``onednn.FrozenSplitEnsemble.vjp``)."""
    with torch.no_grad():
        mu, log_std = split_params(lam.unsqueeze(2))
        actions, _ = sample_tanh_gaussian(mu, log_std, eps)
        B, P, n, A = actions.shape
        _, grad = pessimistic_value_and_grad(obj.q(obj.states, actions.reshape(B, P * n, A)), obj.beta)
    return float((grad != 0).float().mean())


def compiled_q(q: torch.nn.Module):
    """A copy of ``q`` whose ``forward_features`` is ``torch.compile``d for static shapes
    (one copy per call shape, so that its 1–3 piece shapes stay within dynamo's recompile limit)."""
    import copy

    import torch._dynamo

    # compiled copies share the code object of forward_features, and with it dynamo's cache
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    qc = copy.deepcopy(q)
    qc.forward_features = torch.compile(qc.forward_features, dynamic=False)
    return qc


def objective_part(quick: bool, chunks: list[int], compile_: bool, clock: str) -> dict:
    suite = load_suite("mujoco-states")
    settings = {"states": 100, "score_samples": suite.settings.get("score_samples", 256),
                "score_seed": suite.settings.get("score_seed", 12345), "device": "cpu"}
    n = 1024 if quick else 2048
    gemm = {f"matmul {k}": fn for k, fn in gemm_fns(n).items()}
    rows = []
    rates = {k.removeprefix("matmul "): 0.0 for k in gemm}
    for entry in suite.objectives:
        base = build_objective(entry, suite, settings).objective
        E, fpp = base.q.ensemble_size, base.q.flops_per_pair()
        for opt, kind, B, P, n_s in suite_calls(base):
            gen = torch.Generator().manual_seed(0)
            lam = 0.3 * torch.randn(B, P, base.param_dim, generator=gen)
            draws = [torch.randn(B, 1, n_s, base.action_dim, generator=gen) for _ in range(NOISE_DRAWS)]
            variants = {f"pieces of {po.Q_CHUNK_PAIRS} (default)": base}
            variants["one piece"] = po.PolicyObjective(base.q, base.states, base.alpha, beta=base.beta,
                                                       score_noise=base.score_noise, q_chunk_pairs=None)
            for c in chunks:
                if c != po.Q_CHUNK_PAIRS:
                    variants[f"pieces of {c}"] = po.PolicyObjective(base.q, base.states, base.alpha, beta=base.beta,
                                                                    score_noise=base.score_noise, q_chunk_pairs=c)
            if compile_ and kind != "value_and_grad":
                variants[f"pieces of {po.Q_CHUNK_PAIRS}, torch.compile(Q)"] = po.PolicyObjective(
                    compiled_q(base.q), base.states, base.alpha, beta=base.beta, score_noise=base.score_noise)
            fns = {name: call_fn(o, kind, lam, draws) for name, o in variants.items()}
            fns[PLAIN] = plain_products(call_fn(base, kind, lam, draws))
            ref = {}
            for name in list(fns):
                try:
                    ref[name] = fns[name]()
                except Exception as exc:  # torch.compile without a working compiler toolchain
                    print(f"  {name} unavailable: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
                    del fns[name]
            first = next(iter(ref.values()))
            same = {name: all(torch.equal(x, y) for x, y in zip(_tensors(r), _tensors(first))) for name, r in ref.items()}
            fns.update(gemm)
            t = interleaved(fns, rounds=3 if quick else 9, min_time=0.1 if quick else 0.2, clock=clock)
            for kernel in rates:
                rates[kernel] = max(rates[kernel], 2 * n**3 / t.pop(f"matmul {kernel}")["best"] / 1e9)
            pairs = B * P * n_s
            share = statistics.mean(backward_share(base, lam, e) for e in draws) if kind == "value_and_grad" else 0.0
            for name, tt in t.items():
                rows.append({"objective": entry.name, "optimizer": opt, "call": kind, "B": B, "P": P, "n": n_s,
                             "pairs": pairs, "variant": name, "seconds_per_call": tt["best"],
                             "seconds_per_call_median": tt["median"], "pairs_per_s": pairs / tt["best"],
                             "grad": kind == "value_and_grad", "flops_per_pair": fpp, "ensemble_size": E,
                             # autograd (one piece, or torch's products) runs the backward pass through every row
                             "backward_share": (share if name != PLAIN and variants[name]._pieced() else 1.0)
                             if kind == "value_and_grad" else 0.0,
                             "bit_identical_to_default": same[name]})
            print(f"  {entry.name} {opt}: " + ", ".join(f"{k} {pairs / v['best'] / 1e3:.0f}k/s" for k, v in t.items()),
                  file=sys.stderr, flush=True)
    rate_best = max(rates.values())
    for r in rows:  # against the best matmul round of the whole part, with the faster kernel
        floor = rate_best * 1e9 / (r["ensemble_size"] * r["flops_per_pair"]) / (2 if r["grad"] else 1)
        r["floor_pairs_per_s"] = floor
        r["fraction_of_floor"] = r["pairs_per_s"] / floor
        executed = rate_best * 1e9 / (r["ensemble_size"] * r["flops_per_pair"] * (1 + r["backward_share"]))
        r["fraction_of_executed_floor"] = r["pairs_per_s"] / executed
    return {"matmul_gflops": rate_best, "matmul_gflops_by_kernel": rates, "matmul_n": n, "clock": clock, "rows": rows}


PLAIN = "plain products (no oneDNN)"


def plain_products(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with :mod:`optbench.backends.onednn` switched off: torch's batched products (MKL)."""
    def run():
        onednn.ENABLED = False
        try:
            return fn()
        finally:
            onednn.ENABLED = True

    return run


def _tensors(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


# ------------------------------------------------------------------------------------- (b)
MIRROR = [("randnet-hopper", 11, 3, 1), ("randnet-halfcheetah", 17, 6, 2)]


def mirror_suite(directory: Path) -> Path:
    """mujoco-states' optimizers, budgets and settings on random Q-ensembles of the same sizes."""
    raw = tomllib.loads((ROOT / "suites/mujoco-states/suite.toml").read_text())
    lines = ['name = "mujoco-states-mirror"', 'description = "bench_scaling: mujoco-states on random Q-ensembles"',
             "optimizers = ["]
    for o in raw["optimizers"]:
        o = {"spec": o} if isinstance(o, str) else o
        if o["spec"].startswith("direct") or o["spec"].startswith("iterative"):
            continue
        lines.append("  { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in o.items()) + " },")
    lines.append("]")
    lines.append("[settings]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in raw["settings"].items()]
    for name, S, A, seed in MIRROR:
        lines += ["[[objectives]]", f'name = "{name}"', 'source = "random-network"', f"state_dim = {S}",
                  f"action_dim = {A}", "alpha = 0.05", "output_scale = 20.0", f"seed = {seed}"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "suite.toml").write_text("\n".join(lines) + "\n")
    return directory


def run_config(label: str, suite: str, states: int, executor: str, workers: int, threads: int, tmp: Path,
               iterations: int | None) -> dict:
    out = tmp / label.replace(" ", "_").replace(",", "")
    cmd = [sys.executable, "-m", "optbench.cli", "run", "--suite", suite, "--states", str(states), "--no-plots",
           "--out", str(out), "--threads", str(threads)]
    if executor != "inprocess":
        cmd += ["--executor", executor, "--workers", str(workers)]
    if iterations is not None:
        cmd += ["--iterations", str(iterations)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "COLUMNS": "200"}
    load0 = os.getloadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if executor == "ray":  # Ray's workers are not our (reaped) descendants: their CPU time is not counted
        cpu = None
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed: {proc.stderr.strip()[-2000:]}")
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    it_seconds = sum(sum(c["seconds"]) for c in cells)
    row = {"label": label, "suite": Path(suite).name, "states": states, "executor": executor, "workers": workers,
           "threads": threads, "cells": len(cells), "wall_s": wall, "cpu_s": cpu, "optimizer_s": it_seconds,
           "q_evals": sum(sum(c["q_evals"]) for c in cells), "loadavg_before": load0, "loadavg_after": os.getloadavg()}
    print(f"  {label}: {wall:.1f} s wall, {cpu or 0:.1f} s CPU, {it_seconds:.1f} s in optimizer iterations, {len(cells)} cells",
          file=sys.stderr, flush=True)
    return row


MIRROR_ITERATIONS = 50  # the mirror measures how time grows with states, at one budget for every optimizer


def scaling_part(quick: bool, ray: bool) -> dict:
    iterations = 10 if quick else None
    mirror_iterations = iterations or MIRROR_ITERATIONS
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp_:
        tmp = Path(tmp_)
        mirror = str(mirror_suite(tmp / "mirror"))
        mj = "mujoco-states"
        configs = [
            ("mujoco-states 100 states, 1 core", mj, 100, "inprocess", 1, 1),
            ("mujoco-states 100 states, 2 threads", mj, 100, "inprocess", 1, 2),
            ("mujoco-states 100 states, 2 processes", mj, 100, "processes", 2, 1),
            ("mujoco-states 10 states, 1 core", mj, 10, "inprocess", 1, 1),
            ("mirror 100 states, 1 core", mirror, 100, "inprocess", 1, 1),
            ("mirror 1000 states, 1 core", mirror, 1000, "inprocess", 1, 1),
            ("mirror 1000 states, 2 processes", mirror, 1000, "processes", 2, 1),
        ]
        if ray:
            configs.insert(3, ("mujoco-states 100 states, ray 2 workers", mj, 100, "ray", 2, 1))
        for label, suite, states, executor, workers, threads in configs:
            rows.append(run_config(label, suite, states, executor, workers, threads, tmp,
                                   mirror_iterations if suite == mirror else iterations))
    by = {r["label"]: r for r in rows}
    ref = by["mujoco-states 100 states, 1 core"]["wall_s"]
    for r in rows:
        r["ratio_to_full_run_1_core"] = r["wall_s"] / ref
    mirror_ref = by["mirror 100 states, 1 core"]["wall_s"]
    for r in rows:
        if r["suite"] == "mirror":
            r["ratio_to_mirror_100"] = r["wall_s"] / mirror_ref
    return {"iterations_override": iterations, "mirror_iterations": mirror_iterations, "rows": rows}


# ------------------------------------------------------------------------------------- (c)
OPT_OBJECTIVE = "HalfCheetah-v5/direct"
CLASSICAL = ("adam", "cem", "cmaes")
# the paper's settings (seed 000, App. B.2): Adam lr 0.01, CEM 100 samples / top 10, and
# 10-sample gradient estimates, for Adam and for the iterative optimizer alike
PAPER = {"adam": {"lr": 0.01, "samples": 10}, "cem": {"population": 100, "elites": 10, "smoothing": 1.0}}
PAPER_SAMPLES = 10


def is_paper(opt: PolicyOptimizer) -> bool:
    settings = opt.settings()
    return opt.name in PAPER and all(settings.get(k) == v for k, v in PAPER[opt.name].items())


def optimizer_contenders(plan: RunPlan, built: BuiltObjective,
                         objective: str) -> dict[str, tuple[str, PolicyOptimizer]]:
    """label -> (spec, optimizer): the suite's classical (adam, cem, cmaes) and iterative
    optimizers that run on ``objective``, built as the runner builds them, under the suite's
    labels; each iterative one also at the paper's 10 gradient samples; Adam and CEM at the
    paper's settings if the suite has no such entry."""
    out: dict[str, tuple[str, PolicyOptimizer]] = {}
    for entry in plan.optimizers:
        name, method, kwargs = parse_spec(entry.spec)
        if not entry.runs_on(objective) or name not in CLASSICAL + ("iterative",):
            continue
        context = {**built.context, **resolve_context(dict(entry.context), plan.suite, objective)}
        opt = make_optimizer(entry.spec, **context)
        out[entry.label] = (entry.spec, opt)
        if name == "iterative" and opt.samples != PAPER_SAMPLES:
            spec = format_spec(name, method, {**kwargs, "samples": PAPER_SAMPLES})
            out[f"{entry.label}, samples={PAPER_SAMPLES}"] = (spec, make_optimizer(spec, **context))
    for name, settings in PAPER.items():
        if not any(is_paper(opt) for _, opt in out.values()):
            spec = format_spec(name, None, settings)
            out[f"{name} (paper)"] = (spec, make_optimizer(spec))
    return out


def timed_iterations(opt: PolicyOptimizer, obj: po.PolicyObjective, iterations: int, seed: int,
                     clock: Callable[[], float]) -> dict:
    """One run of ``iterations`` iterations from the suite's start, without scoring: time in
    the iterations and inside the objective's evaluations (by ``clock``), Q evaluations."""
    gen = torch.Generator().manual_seed(seed)
    q0 = obj.counts.q_evals
    with ObjectiveTimer(clock=clock) as ev:
        tic = clock()
        for _ in opt.iterate(obj, obj.initial_params(), iterations, gen):
            pass
        seconds = clock() - tic
    return {"seconds": seconds, "eval_seconds": ev.seconds, "q_evals": obj.counts.q_evals - q0}


def optimizers_part(clock: str, rounds: int, iterations: int) -> dict:
    plan = plan_run(load_suite("mujoco-states"))
    entry = next(o for o in plan.suite.objectives if o.name == OPT_OBJECTIVE)
    built = build_objective(entry, plan.suite, plan.settings)
    obj = built.objective
    contenders = optimizer_contenders(plan, built, OPT_OBJECTIVE)
    tick = CLOCKS[clock]
    for _, opt in contenders.values():  # first-call costs (kernel selection, allocations) are nobody's
        timed_iterations(opt, obj, 2, 0, tick)
    runs: dict[str, list[dict]] = {k: [] for k in contenders}
    for r in range(rounds):  # contenders in turn, so that load from other processes falls on all alike
        for label, (_, opt) in contenders.items():
            runs[label].append(timed_iterations(opt, obj, iterations, r, tick))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {v[-1]['seconds'] / iterations * 1e3:.1f} ms/it" for k, v in runs.items()), file=sys.stderr, flush=True)
    rows = []
    for label, rs in runs.items():
        spec, opt = contenders[label]
        own = [1 - x["eval_seconds"] / x["seconds"] for x in rs]
        rows.append({"label": label, "spec": spec, "settings": opt.label(), "optimizer": opt.name,
                     "classical": opt.name in CLASSICAL,
                     "paper_settings": is_paper(opt) or (opt.name == "iterative" and opt.samples == PAPER_SAMPLES),
                     "ms_per_iteration": statistics.median(x["seconds"] for x in rs) / iterations * 1e3,
                     "ms_per_iteration_rounds": [x["seconds"] / iterations * 1e3 for x in rs],
                     "eval_ms_per_iteration": statistics.median(x["eval_seconds"] for x in rs) / iterations * 1e3,
                     "own_fraction": statistics.median(own), "own_fraction_rounds": own,
                     "q_evals_per_iteration_per_state": rs[0]["q_evals"] / iterations / obj.batch_size})
    ratios = []  # each iterative contender against paper-setting Adam and CEM, per round (same load)
    for it in (r for r in rows if r["optimizer"] == "iterative"):
        for ref in (r for r in rows if r["optimizer"] in PAPER and is_paper(contenders[r["label"]][1])):
            per_round = [a["seconds"] / b["seconds"] for a, b in zip(runs[it["label"]], runs[ref["label"]])]
            ratios.append({"iterative": it["label"], "reference": ref["label"], "reference_optimizer": ref["optimizer"],
                           "iterative_samples": contenders[it["label"]][1].samples,
                           "ratio": statistics.median(per_round), "ratio_range": [min(per_round), max(per_round)]})
    return {"objective": OPT_OBJECTIVE, "states": obj.batch_size, "iterations_per_round": iterations,
            "rounds": rounds, "clock": clock, "rows": rows, "ratios": ratios}


# ------------------------------------------------------------------------------------- report
def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    m = result["machine"]
    console.print(f"[bold]bench_scaling[/] {m['date']} · {m['cpu']} · {m['cores']} cores · torch {m['torch']} "
                  f"({m['cpu_capability']}) · load {m['loadavg'][0]:.1f} at start")
    if "objective" in result:
        part = result["objective"]
        by_kernel = ", ".join(f"{k} {v:.0f}" for k, v in part.get("matmul_gflops_by_kernel", {}).items())
        t = Table(title=f"(a) objective at the suite's call shapes · fp32 matmul {part['matmul_gflops']:.0f} GFLOP/s "
                  f"({by_kernel}; best round, same run, {part['clock']} clock) · floor = rate / (E·FLOPs per pair), "
                  "value_and_grad: half · backward rows: share of the members' rows its backward pass runs "
                  "through · of executed: against the floor counting the backward pass through those rows only",
                  title_justify="left")
        for col in ("objective", "optimizer: call", "B·P·n", "variant", "pairs/s", "of floor", "backward rows",
                    "of executed", "× plain", "same bits"):
            t.add_column(col, justify="left" if col in ("objective", "optimizer: call", "variant") else "right")
        plain = {(r["objective"], r["optimizer"]): r["pairs_per_s"] for r in part["rows"] if r["variant"] == PLAIN}
        for r in part["rows"]:
            t.add_row(r["objective"], f"{r['optimizer']}: {r['call']}", f"{r['pairs']:,}", r["variant"],
                      f"{r['pairs_per_s'] / 1e3:,.0f}k", f"{r['fraction_of_floor']:.0%}",
                      f"{r['backward_share']:.0%}" if r["grad"] else "", f"{r['fraction_of_executed_floor']:.0%}",
                      f"{r['pairs_per_s'] / plain[(r['objective'], r['optimizer'])]:.2f}",
                      "yes" if r["bit_identical_to_default"] else "NO")
        console.print(t)
    if "scaling" in result:
        part = result["scaling"]
        extra = f" (--iterations {part['iterations_override']})" if part["iterations_override"] else " (suite budgets)"
        t = Table(title=f"(b) wall clock of whole runs{extra}", title_justify="left")
        for col in ("run", "cells", "wall s", "CPU s", "in iterations s", "× full run (1 core)", "× mirror 100",
                    "load before→after"):
            t.add_column(col, justify="left" if col == "run" else "right")
        for r in part["rows"]:
            cpu = "n/a" if r["cpu_s"] is None else f"{r['cpu_s']:.1f}"
            t.add_row(r["label"], str(r["cells"]), f"{r['wall_s']:.1f}", cpu, f"{r['optimizer_s']:.1f}",
                      f"{r['ratio_to_full_run_1_core']:.2f}",
                      f"{r['ratio_to_mirror_100']:.2f}" if "ratio_to_mirror_100" in r else "",
                      f"{r['loadavg_before'][0]:.1f}→{r['loadavg_after'][0]:.1f}")
        console.print(t)
    if "optimizers" in result:
        part = result["optimizers"]
        t = Table(title=f"(c) optimizers on {part['objective']}, B = {part['states']}: {part['rounds']} interleaved rounds "
                  f"of {part['iterations_per_round']} iterations ({part['clock']} clock, medians over rounds) · own work = "
                  "time outside the objective's evaluations", title_justify="left")
        for col in ("optimizer", "spec", "Q evals/it/state", "ms/it", "in evaluations ms/it", "own work", "own, rounds"):
            t.add_column(col, justify="left" if col in ("optimizer", "spec") else "right")
        for r in part["rows"]:
            lo, hi = min(r["own_fraction_rounds"]), max(r["own_fraction_rounds"])
            t.add_row(r["label"], r["spec"], f"{r['q_evals_per_iteration_per_state']:g}", f"{r['ms_per_iteration']:.2f}",
                      f"{r['eval_ms_per_iteration']:.2f}", f"{r['own_fraction']:.1%}", f"{lo:.1%}–{hi:.1%}")
        for x in part["ratios"]:
            lo, hi = x["ratio_range"]
            t.add_row(f"{x['iterative']} ÷ {x['reference']}", "per iteration, per round", "", f"{x['ratio']:.2f}×",
                      "", "", f"{lo:.2f}–{hi:.2f}×")
        console.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="short budgets and fewer rounds (smoke run)")
    ap.add_argument("--chunks", default="1024,4096", help="other piece sizes to time in (a)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant in (a)")
    ap.add_argument("--ray", action="store_true", help="(b): also run the full suite with --executor ray")
    ap.add_argument("--rounds", type=int, default=None, help="(c): interleaved rounds (default 5, --quick 2)")
    ap.add_argument("--opt-iterations", type=int, default=None,
                    help="(c): iterations per optimizer and round (default 50, --quick 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of (a) and (c) (default 1)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default=None,
                    help="(a), (c): time by this thread's CPU time (default with 1 thread) or by the wall clock")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scaling.json")
    ap.add_argument("--update", action="store_true", help="keep the other parts' results already in --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    backends.enable()  # as the command line does (recorded by machine())
    result: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    if args.update and args.out.exists():  # the other part's results, with the machine they were measured on
        old = json.loads(args.out.read_text())
        for part in PARTS:
            if part in old and args.part not in (part, "all"):
                result[part] = old[part]
                result[f"machine_{part}"] = old.get(f"machine_{part}", old["machine"])
    clock = args.clock or ("cpu" if args.threads == 1 else "wall")
    if args.part in ("objective", "all"):
        print("(a) objective at the suite's call shapes", file=sys.stderr)
        result["objective"] = objective_part(args.quick, [int(c) for c in args.chunks.split(",") if c],
                                             not args.no_compile, clock)
    if args.part in ("optimizers", "all"):
        print(f"(c) optimizers on {OPT_OBJECTIVE}", file=sys.stderr)
        result["optimizers"] = optimizers_part(clock, args.rounds or (2 if args.quick else 5),
                                               args.opt_iterations or (5 if args.quick else 50))
    if args.part in ("scaling", "all"):
        print("(b) whole runs", file=sys.stderr)
        result["scaling"] = scaling_part(args.quick, args.ray)
    for part in PARTS:
        if args.part in (part, "all"):
            result[part]["quick"] = args.quick
    result["machine"]["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
