"""The :class:`PolicyOptimizer` interface, its registry, and the anytime trace it produces.

Every optimizer, classical or learned, is a :class:`PolicyOptimizer`: given an objective
(``B`` states), a start ``λ₀ [B, 2|A|]``, an iteration budget and a torch generator, its
:meth:`~PolicyOptimizer.iterate` yields the current estimate after every iteration, for all
states at once. :func:`run_optimizer` drives it, times each iteration, reads the objective's
cost ledger, and scores every estimate on the objective's fixed scoring draws; that is the
:class:`Trace` that the runner stores.

Optimizers are registered by name (``@register("adam")``) and built from a spec string:
``"adam"``, ``"adam(lr=0.05)"``, ``"nevergrad:NGOpt"``, ``"scipy:L-BFGS-B(maxcor=5)"``.
"""

from __future__ import annotations

import ast
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from optbench.objectives.policy_objective import PolicyObjective


class OptimizerError(ValueError):
    """A bad optimizer name or setting, or an optimizer that produced NaN/inf."""


@dataclass
class Iterate:
    """One iteration's result. Optimizers that run ahead of the driver (scipy) report their
    own per-iteration seconds and counts; otherwise the driver measures them."""

    params: Tensor
    seconds: float | None = None
    q_evals: int | None = None
    grad_evals: int | None = None


class PolicyOptimizer(ABC):
    """Base class of every optimizer.

    Subclasses set ``name`` (the registry key, filled in by :func:`register`) and implement
    :meth:`iterate`. Settings are keyword arguments of ``__init__`` and are recorded by
    :meth:`settings` so a result always says exactly what ran.

    ``amortized`` optimizers (direct, iterative) own a network, may be trained, and
    take their start from it rather than from ``λ₀``.
    """

    name: str = "?"
    amortized: bool = False
    stochastic: bool = True

    def __init__(self, **settings: Any):
        self._settings = settings

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def label(self) -> str:
        """Canonical spec string, e.g. ``adam(lr=0.01,samples=10)``."""
        args = ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sorted(self._settings.items()))
        return f"{self.name}({args})" if args else self.name

    @abstractmethod
    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor | Iterate]:
        """Yield the estimate ``λ [B, 2|A|]`` after each of ``iterations`` iterations."""


REGISTRY: dict[str, type[PolicyOptimizer]] = {}


def register(name: str) -> Callable[[type[PolicyOptimizer]], type[PolicyOptimizer]]:
    """Class decorator adding an optimizer to :data:`REGISTRY` under ``name``."""

    def deco(cls: type[PolicyOptimizer]) -> type[PolicyOptimizer]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z_][\w\-]*)(?::(?P<method>[\w\-.]+))?\s*(?:\((?P<args>.*)\))?\s*$")


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """``"cem(population=100,elites=10)"`` -> ``("cem", None, {...})``;
    ``"scipy:L-BFGS-B"`` -> ``("scipy", "L-BFGS-B", {})``."""
    m = _SPEC.match(spec)
    if not m:
        raise OptimizerError(f"malformed optimizer spec {spec!r} (expected NAME, NAME:METHOD or NAME(key=value,...))")
    kwargs: dict[str, Any] = {}
    if m["args"]:
        try:
            call = ast.parse(f"f({m['args']})", mode="eval").body
            assert isinstance(call, ast.Call) and not call.args
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError, AssertionError):
            raise OptimizerError(f"malformed settings in optimizer spec {spec!r}") from None
    return m["name"], m["method"], kwargs


def format_spec(name: str, method: str | None, kwargs: dict[str, Any]) -> str:
    """The inverse of :func:`parse_spec`: ``("adam", None, {"lr": 0.03})`` -> ``"adam(lr=0.03)"``."""
    head = name if method is None else f"{name}:{method}"
    return head if not kwargs else head + "(" + ",".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def make_optimizer(spec: str | dict[str, Any], **context: Any) -> PolicyOptimizer:
    """Build an optimizer from a spec string or a ``{"name": ..., **settings}`` mapping.

    ``context`` carries things a suite provides (e.g. the package an amortized optimizer
    loads its network from); optimizers that do not take them ignore them.
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        name, method, kwargs = spec.pop("name"), spec.pop("method", None), spec
    else:
        name, method, kwargs = parse_spec(spec)
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise OptimizerError(f"unknown optimizer {name!r}; known: {known}")
    cls = REGISTRY[name]
    if method is not None:
        kwargs["method"] = method
    try:
        return cls.from_settings(kwargs, context) if hasattr(cls, "from_settings") else cls(**kwargs)
    except TypeError as exc:
        raise OptimizerError(f"bad settings for optimizer {name!r}: {exc}") from None


@dataclass
class Trace:
    """Anytime record of one optimizer run on one objective.

    ``iterations[t]`` is the iteration count at which ``scores[t]`` (one scored ``J`` per
    state) was taken; iteration 0 is the start. Costs are per iteration (length
    ``budget``), for all states together.
    """

    iterations: list[int]
    scores: Tensor  # [T, B] scored J
    final_params: Tensor  # [B, 2|A|]
    seconds: list[float]  # wall clock of each iteration (excludes scoring)
    q_evals: list[int]
    grad_evals: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        return len(self.seconds)


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
                  on_iteration: Callable[[int], None] | None = None) -> Trace:
    """Run ``optimizer`` for ``iterations`` iterations on all states in lockstep.

    ``start`` defaults to ``μ = 0, σ = 1``; ``on_iteration(t)`` is called after each
    iteration (progress bars).

    Raises :class:`OptimizerError` on a negative budget or a non-finite estimate.
    """
    if iterations < 0:
        raise OptimizerError(f"iteration budget must be >= 0, got {iterations}")
    schedule = score_schedule(iterations, score_at) if isinstance(score_at, str) else sorted(set(score_at))
    to_score = set(schedule)
    generator = torch.Generator(device=objective.device).manual_seed(seed)
    start = objective.initial_params() if start is None else start.to(objective.device)
    iters, scores = [0], [objective.score(start)]
    seconds: list[float] = []
    q_evals: list[int] = []
    grad_evals: list[int] = []
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
        seconds.append(elapsed if it.seconds is None else it.seconds)
        q_evals.append(objective.counts.q_evals - before.q_evals if it.q_evals is None else it.q_evals)
        grad_evals.append(objective.counts.grad_evals - before.grad_evals if it.grad_evals is None else it.grad_evals)
        if t in to_score:
            iters.append(t)
            scores.append(objective.score(params))
            if not torch.isfinite(scores[-1]).all():
                raise OptimizerError(f"{optimizer.label()} reached a policy whose scored J is NaN/inf at iteration {t}")
        if on_iteration is not None:
            on_iteration(t)
    steps.close()
    return Trace(iters, torch.stack(scores).cpu(), params.cpu(), seconds, q_evals, grad_evals)


__all__ = ["Iterate", "OptimizerError", "PolicyOptimizer", "REGISTRY", "Trace", "make_optimizer", "parse_spec",
           "register", "run_optimizer", "score_schedule"]
