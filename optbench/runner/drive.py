"""The driver of one optimizer run: :func:`run_optimizer` and the anytime :class:`Trace` it records.

An optimizer only proposes estimates (:meth:`~optbench.optimizers.base.PolicyOptimizer.iterate`);
this driver runs it on all states in lockstep, times each iteration, reads the objective's cost
ledger, scores every scheduled estimate on the objective's fixed scoring draws, and refuses a
non-finite estimate. Everything that runs an optimizer (a run's cells, the analyses of
``optbench analyze``, the learning-curve gap, benchmarks) goes through it, so every number
optbench reports was measured the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from optbench.objectives.cost import q_cost
from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import Iterate, OptimizerError, PolicyOptimizer


TIMING = "warm-up iteration before the timed run"
"""How a trace's wall clock was taken (stored with every cell as ``timing``): one untimed iteration of
the optimizer, on its own generator and uncounted, runs before the timed run, so the one-time costs of
a process (kernel selection, weight preparation, allocator growth) never land in an iteration."""


@dataclass
class Trace:
    """Anytime record of one optimizer run on one objective.

    ``iterations[t]`` is the iteration count at which ``scores[t]`` (one scored ``J`` per
    state) was taken; iteration 0 is the start. Costs are per iteration (length
    ``budget``), for all states together: wall clock (scoring excluded, warm-up excluded: see
    :data:`TIMING`), Q-evaluations and gradient evaluations from the objective's ledger, and
    network FLOPs (:mod:`optbench.objectives.cost`: the Q-networks' forward and backward passes
    plus the optimizer's own network; ``None`` when the Q-function's shape is not known).
    ``start_cost`` is what computing the start cost (non-zero only for an optimizer that makes its
    own start, a warm start), in the same units; ``params_at`` keeps the estimate at chosen
    iterations (a learned optimizer's trained budget), ``cost_model`` the FLOPs per ledger entry.
    """

    iterations: list[int]
    scores: Tensor  # [T, B] scored J
    final_params: Tensor  # [B, 2|A|]
    seconds: list[float]  # wall clock of each iteration (excludes scoring)
    q_evals: list[int]
    grad_evals: list[int]
    extra: dict[str, Any] = field(default_factory=dict)
    flops: list[float] | None = None
    start_cost: dict[str, float | None] = field(default_factory=dict)
    params_at: dict[int, Tensor] = field(default_factory=dict)
    cost_model: dict[str, Any] | None = None
    timing: str = TIMING

    @property
    def budget(self) -> int:
        return len(self.seconds)

    def cost_record(self) -> dict[str, Any]:
        """The cost fields a results store keeps beside the per-iteration seconds and counts."""
        return {"flops": self.flops, "start_cost": self.start_cost, "cost_model": self.cost_model,
                "timing": self.timing,
                "params_at": {str(k): v.detach().cpu().double().tolist() for k, v in self.params_at.items()}}


def score_schedule(budget: int, mode: str = "all") -> list[int]:
    """Iterations at which a run is scored: ``"all"`` (0..budget), or ``"log"``: every
    iteration up to 10, then about 10 per decade (COCO-style), always ending at ``budget``."""
    if mode == "all" or budget <= 10:
        return list(range(budget + 1))
    if mode != "log":
        raise OptimizerError(f"unknown score schedule {mode!r} (all or log)")
    points = set(range(11))
    k = 10
    while True:
        t = int(round(10 ** (k / 10)))
        if t >= budget:
            break
        points.add(t)
        k += 1
    points.add(budget)
    return sorted(points)


def run_optimizer(optimizer: PolicyOptimizer, objective: PolicyObjective, iterations: int, *,
                  seed: int = 0, start: Tensor | None = None, score_at: str | list[int] = "all",
                  on_iteration: Callable[[int], None] | None = None, warmup: bool = True,
                  keep_params_at: list[int] | tuple[int, ...] = ()) -> Trace:
    """Run ``optimizer`` for ``iterations`` iterations on all states in lockstep.

    ``start`` defaults to the optimizer's own start (:meth:`PolicyOptimizer.initial_estimate`, a
    warm start) if it has one, else ``μ = 0, σ = 1``; ``on_iteration(t)`` is called after each
    iteration (progress bars). ``warmup`` runs one untimed, uncounted iteration first
    (:data:`TIMING`). ``keep_params_at`` lists iterations whose estimates the trace keeps.

    Raises :class:`OptimizerError` on a negative budget or a non-finite estimate.
    """
    if iterations < 0:
        raise OptimizerError(f"iteration budget must be >= 0, got {iterations}")
    schedule = score_schedule(iterations, score_at) if isinstance(score_at, str) else sorted(set(score_at))
    to_score = set(schedule)
    keep = {int(k) for k in keep_params_at if 0 <= int(k) <= iterations}
    qc = q_cost(objective.q)
    if warmup and iterations > 0:
        _warm_up(optimizer, objective, start, seed)
    generator = torch.Generator(device=objective.device).manual_seed(seed)
    start_cost: dict[str, float | None] = {"seconds": 0.0, "q_evals": 0, "grad_evals": 0, "flops": 0.0}
    if start is None:
        before = objective.counts.copy()
        tic = time.perf_counter()
        own = optimizer.initial_estimate(objective)
        if own is not None:
            elapsed = time.perf_counter() - tic
            start_cost = _iteration_cost(own, elapsed, objective, before, qc)
        start = objective.initial_params() if own is None else own.params.detach()
    start = start.to(objective.device)
    iters, scores = [0], [objective.score(start)]
    seconds: list[float] = []
    q_evals: list[int] = []
    grad_evals: list[int] = []
    flops: list[float] | None = [] if qc is not None else None
    params_at = {0: start.cpu()} if 0 in keep else {}
    params = start
    steps = optimizer.iterate(objective, start.clone(), iterations, generator)
    for t in range(1, iterations + 1):
        before = objective.counts.copy()
        tic = time.perf_counter()
        try:
            out = next(steps)
        except StopIteration:
            raise OptimizerError(f"{optimizer.label()} stopped after {t - 1} of {iterations} iterations") from None
        elapsed = time.perf_counter() - tic
        it = out if isinstance(out, Iterate) else Iterate(out)
        params = it.params.detach()
        if not torch.isfinite(params).all():
            bad = int((~torch.isfinite(params)).any(-1).sum())
            raise OptimizerError(f"{optimizer.label()} produced NaN/inf parameters at iteration {t} for {bad} state(s)")
        cost = _iteration_cost(it, elapsed, objective, before, qc)
        seconds.append(cost["seconds"])
        q_evals.append(cost["q_evals"])
        grad_evals.append(cost["grad_evals"])
        if flops is not None:
            flops.append(cost["flops"])
        if t in keep:
            params_at[t] = params.cpu()
        if t in to_score:
            iters.append(t)
            scores.append(objective.score(params))
            if not torch.isfinite(scores[-1]).all():
                raise OptimizerError(f"{optimizer.label()} reached a policy whose scored J is NaN/inf at iteration {t}")
        if on_iteration is not None:
            on_iteration(t)
    steps.close()
    return Trace(iters, torch.stack(scores).cpu(), params.cpu(), seconds, q_evals, grad_evals, flops=flops,
                 start_cost=start_cost, params_at=params_at, cost_model=None if qc is None else qc.record(),
                 timing=TIMING if warmup else "no warm-up")


def _iteration_cost(it: Iterate, elapsed: float, objective: PolicyObjective, before: Any, qc: Any) -> dict[str, Any]:
    """Seconds, ledger counts and FLOPs of one step (an iteration, or an optimizer's own start)."""
    q = objective.counts.q_evals - before.q_evals if it.q_evals is None else it.q_evals
    g = objective.counts.grad_evals - before.grad_evals if it.grad_evals is None else it.grad_evals
    flops = None if qc is None else float(q * qc.forward + g * qc.backward + (it.network_flops or 0.0))
    return {"seconds": elapsed if it.seconds is None else it.seconds, "q_evals": q, "grad_evals": g, "flops": flops}


def _warm_up(optimizer: PolicyOptimizer, objective: PolicyObjective, start: Tensor | None, seed: int) -> None:
    """One iteration of ``optimizer`` that is neither timed nor counted nor seen by the timed run: its own
    generator, and the objective's ledger restored (in place: subsets share it)."""
    ledger = objective.counts.copy()
    generator = torch.Generator(device=objective.device).manual_seed(seed + 7_919_003)
    try:
        if start is None:
            own = optimizer.initial_estimate(objective)
            start = objective.initial_params() if own is None else own.params.detach()
        steps = optimizer.iterate(objective, start.to(objective.device).clone(), 1, generator)
        next(steps, None)
        steps.close()
    finally:
        objective.counts.q_evals, objective.counts.grad_evals = ledger.q_evals, ledger.grad_evals


__all__ = ["TIMING", "Trace", "run_optimizer", "score_schedule"]
