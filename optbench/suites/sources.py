"""Where a suite's objectives come from: a registry of builders keyed by ``source``.

A builder turns an :class:`~optbench.suites.spec.ObjectiveEntry` plus run settings into a
:class:`BuiltObjective`: the :class:`PolicyObjective`, its known optimum when there is one,
and the context learned optimizers need (e.g. the agent package the objective came from).
New sources register with ``@source("name")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from optbench.agents.models import check_model_based_params
from optbench.agents.package import load_package
from optbench.objectives.analytic import AnalyticQ, KnownOptimum, solve_optimum
from optbench.objectives.policy_objective import PolicyObjective
from optbench.objectives.q_functions import QEnsemble
from optbench.suites.spec import PER_OBJECTIVE, ObjectiveEntry, Suite, SuiteError


@dataclass
class BuiltObjective:
    objective: PolicyObjective
    optimum: KnownOptimum | None = None
    context: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[ObjectiveEntry, Suite, dict[str, Any]], BuiltObjective]
SOURCES: dict[str, Builder] = {}


def source(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        SOURCES[name] = fn
        return fn

    return deco


def build_objective(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """Build one objective of ``suite`` with the run's ``settings`` (states, device, ...)."""
    if entry.source not in SOURCES:
        raise SuiteError(f"objective {entry.name!r}: unknown source {entry.source!r}; known: {', '.join(sorted(SOURCES))}")
    try:
        return SOURCES[entry.source](entry, suite, settings)
    except KeyError as exc:
        raise SuiteError(f"objective {entry.name!r} (source {entry.source}) is missing field {exc}") from None
    except TypeError as exc:
        raise SuiteError(f"objective {entry.name!r} (source {entry.source}) has a field of the wrong type: {exc}") from None


def _gaussian_states(entry: ObjectiveEntry, n: int, state_dim: int, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(10_000 + int(entry.get("seed", 0)))
    return torch.randn(n, state_dim, generator=gen).to(device)


def _fields(entry: ObjectiveEntry, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    f = dict(entry.fields)
    missing = [k for k in required if k not in f]
    if missing:
        raise SuiteError(f"objective {entry.name!r} (source {entry.source}) is missing field(s) {missing}")
    unknown = set(f) - set(required) - set(optional)
    if unknown:
        raise SuiteError(f"objective {entry.name!r} (source {entry.source}) has unknown field(s) {sorted(unknown)}")
    return f


@source("analytic")
def build_analytic(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """Separable analytic Q (``profile``: quadratic | multimodal | saturating), exact optimum."""
    f = _fields(entry, ("profile", "state_dim", "action_dim", "alpha"), ("seed",))
    q = AnalyticQ(f["profile"], int(f["state_dim"]), int(f["action_dim"]), seed=int(f.get("seed", 0)))
    states = _gaussian_states(entry, settings["states"], q.state_dim, settings["device"])
    objective = PolicyObjective(q, states, float(f["alpha"]), score_samples=settings["score_samples"],
                                score_seed=settings["score_seed"], name=entry.name)
    optimum = solve_optimum(q, states.cpu(), float(f["alpha"]))
    return BuiltObjective(objective, optimum, info={"profile": f["profile"], "modes": optimum.modes.shape[1]})


@source("random-network")
def build_random_network(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """A randomly initialized 2×256 Q-ensemble of MuJoCo size; ``output_scale`` multiplies
    the last layer so Q varies over ``a`` on the scale of the entropy term."""
    f = _fields(entry, ("state_dim", "action_dim", "alpha"), ("seed", "beta", "output_scale", "ensemble_size"))
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(int(f.get("seed", 0)))
    q = QEnsemble(int(f["state_dim"]), int(f["action_dim"]), ensemble_size=int(f.get("ensemble_size", 2)))
    torch.random.set_rng_state(torch_state)
    with torch.no_grad():
        q.weights[-1].mul_(float(f.get("output_scale", 1.0)))
    q = q.to(settings["device"])
    states = _gaussian_states(entry, settings["states"], q.state_dim, settings["device"])
    objective = PolicyObjective(q, states, float(f["alpha"]), beta=float(f.get("beta", 1.0)),
                                score_samples=settings["score_samples"], score_seed=settings["score_seed"],
                                name=entry.name)
    return BuiltObjective(objective, info={"flops_per_pair": q.flops_per_pair()})


@source("package")
def build_package(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """A trained agent's frozen objective from an exported package (``optbench export``).

    ``package`` (relative to the suite directory) gives the Q-ensemble, α and the states;
    ``split`` picks the state set (``benchmark`` or ``heldout``); ``beta`` the pessimism.
    The package is also the context of ``direct``/``iterative`` optimizers that name none.
    """
    f = _fields(entry, ("package",), ("split", "beta"))
    pkg = load_package(suite.directory / f["package"])
    objective = pkg.objective(split=str(f.get("split", "benchmark")), beta=float(f.get("beta", 1.0)),
                              n_states=settings["states"], score_samples=settings["score_samples"],
                              score_seed=settings["score_seed"], device=settings["device"])
    objective.name = entry.name
    return BuiltObjective(objective, context={"package": pkg}, info=_package_info(pkg, f["package"]))


def _package_info(pkg, path: str) -> dict[str, Any]:
    """What a package objective's record says about the agent it came from."""
    return {"task": pkg.task, "agent": pkg.name, "package": str(path), "alpha": pkg.alpha,
            "training_steps": pkg.meta.get("training", {}).get("steps"), "eval_return": pkg.meta.get("eval")}


@source("package-model-based")
def build_package_model_based(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """A trained agent's model-based objective: ``Q_MB`` (SPEC §3) from the package's learned
    dynamics and reward models and its direct rollout network in place of ``Q̂``.

    Fields: ``package`` (as for ``source = "package"``), ``horizon`` (model steps ``h ≥ 0``;
    ``0`` is the model-free objective, seed 000's ``h_paper`` is ``h − 1``), ``lam`` (Retrace λ
    in ``[0, 1]``); optional ``split``, ``beta``, ``value_samples`` (fixed draws per ``V``, default 8).
    """
    f = _fields(entry, ("package", "horizon", "lam"), ("split", "beta", "value_samples"))
    horizon, lam, value_samples = f["horizon"], f["lam"], f.get("value_samples", 8)
    try:
        check_model_based_params(horizon, lam, value_samples)
    except ValueError as exc:
        raise SuiteError(f"objective {entry.name!r} (source {entry.source}): {exc}") from None
    pkg = load_package(suite.directory / f["package"])
    objective = pkg.model_based_objective(split=str(f.get("split", "benchmark")), beta=float(f.get("beta", 1.0)),
                                          n_states=settings["states"], score_samples=settings["score_samples"],
                                          score_seed=settings["score_seed"], horizon=horizon, lam=float(lam),
                                          value_samples=value_samples, device=settings["device"])
    objective.name = entry.name
    info = {**_package_info(pkg, f["package"]), "model_based": True, "horizon": horizon, "lam": float(lam), "value_samples": value_samples,
            "horizon_convention": "model steps h; Retrace sum k = 0..h-1; h = 0 is the model-free objective",
            "q_evals_per_pair": objective.pair_cost}
    return BuiltObjective(objective, context={"package": pkg}, info=info)


def resolve_context(context: dict[str, Any], suite: Suite, objective: str | None = None) -> dict[str, Any]:
    """An optimizer entry's context for ``objective``: its ``package`` (one path, or the one
    given for this objective) made relative to the suite directory."""
    ctx = dict(context)
    pkg = ctx.get("package")
    if isinstance(pkg, tuple) and len(pkg) == 2 and pkg[0] == PER_OBJECTIVE:
        per = dict(pkg[1])
        if objective not in per:
            raise SuiteError(f"no package given for objective {objective!r} (packages for {sorted(per)})")
        pkg = ctx["package"] = per[objective]
    if isinstance(pkg, str):
        ctx["package"] = str(suite.directory / pkg)
    return ctx