"""Where a suite's objectives come from: a registry of builders keyed by ``source``.

A builder turns an :class:`~optbench.suites.spec.ObjectiveEntry` plus run settings into a
:class:`BuiltObjective`: the :class:`PolicyObjective`, its known optimum when there is one,
and the context learned optimizers need (e.g. the agent package the objective came from).
New sources register with ``@source("name", fields={...}, check=...)``.

``fields`` declares a source's fields with a :data:`FieldCheck` each (types and ranges:
``state_dim = 3.5``, ``action_dim = 0`` or a NaN ``alpha`` are refused, never truncated), and
``check`` (optional) validates what the fields point to (files, checksums, shapes) without
building the objective. :func:`check_objective` runs both; the runner calls it for every
objective of a suite before the first cell runs, so a typo in the last objective fails
before any work. A source registered without ``fields`` gets no field validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from optbench.agents.models import check_model_based_params
from optbench.agents.package import PackageError, load_package
from optbench.objectives.analytic import PROFILES, AnalyticQ, KnownOptimum, solve_optimum
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
FieldCheck = Callable[[Any], Any]  # the value to use, or ValueError(why it is not acceptable)
Checker = Callable[[ObjectiveEntry, Suite, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Fields:
    """A source's fields: ``required`` and ``optional`` ones, each with its check; ``defaults``
    for optional fields that are absent."""

    required: dict[str, FieldCheck]
    optional: dict[str, FieldCheck]
    defaults: dict[str, Any]


SOURCES: dict[str, Builder] = {}
FIELDS: dict[str, Fields] = {}
CHECKS: dict[str, Checker] = {}


def source(name: str, *, fields: dict[str, FieldCheck] | None = None, optional: dict[str, tuple[FieldCheck, Any]] | None = None,
           check: Checker | None = None) -> Callable[[Builder], Builder]:
    """Register a builder as source ``name``; ``fields`` (required) and ``optional`` (``name:
    (check, default)``) declare its fields, ``check`` validates what they refer to."""

    def deco(fn: Builder) -> Builder:
        SOURCES[name] = fn
        if fields is not None or optional is not None:
            opt = optional or {}
            FIELDS[name] = Fields(dict(fields or {}), {k: c for k, (c, _) in opt.items()},
                                  {k: d for k, (_, d) in opt.items() if d is not None})
        if check is not None:
            CHECKS[name] = check
        return fn

    return deco


# ------------------------------------------------------------------------------ field checks
def _integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"must be an integer, got {v!r}")
    return v


def positive_int(v: Any) -> int:
    if _integer(v) < 1:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return v


def number(low: float | None = None, *, above: bool = False) -> FieldCheck:
    """A finite number (not a bool), ``>= low`` (``> low`` with ``above``)."""

    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v!r}")
        if low is not None and (v <= low if above else v < low):
            raise ValueError(f"must be {'>' if above else '>='} {low:g}, got {v!r}")
        return float(v)

    return check


def one_of(*choices: str) -> FieldCheck:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(repr(c) for c in choices)}, got {v!r}")
        return v

    return check


def string(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v


# ------------------------------------------------------------------------------ entry points
def _who(entry: ObjectiveEntry) -> str:
    return f"objective {entry.name!r} (source {entry.source})"


def fields_of(entry: ObjectiveEntry) -> dict[str, Any]:
    """An entry's fields, checked against its source's declaration (defaults filled in)."""
    f = dict(entry.fields)
    spec = FIELDS.get(entry.source)
    if spec is None:
        return f
    missing = [k for k in spec.required if k not in f]
    if missing:
        raise SuiteError(f"{_who(entry)} is missing field(s) {missing}")
    unknown = set(f) - set(spec.required) - set(spec.optional)
    if unknown:
        raise SuiteError(f"{_who(entry)} has unknown field(s) {sorted(unknown)}; allowed: "
                         f"{sorted({*spec.required, *spec.optional})}")
    out = dict(spec.defaults)
    for k, v in f.items():
        try:
            out[k] = {**spec.required, **spec.optional}[k](v)
        except ValueError as exc:
            raise SuiteError(f"{_who(entry)}: field {k!r}: {exc}") from None
    return out


def check_objective(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> dict[str, Any]:
    """Validate one objective of ``suite`` for a run with ``settings`` without building it:
    its source, its fields, and what they refer to. Returns what is known of it
    (``state_dim``, ``action_dim``; ``package`` for package sources) for checking the
    optimizers that run on it; :class:`SuiteError` (one line) otherwise."""
    if entry.source not in SOURCES:
        raise SuiteError(f"objective {entry.name!r}: unknown source {entry.source!r}; known: {', '.join(sorted(SOURCES))}")
    f = fields_of(entry)
    if entry.source in CHECKS:
        return CHECKS[entry.source](entry, suite, settings)
    return {k: f[k] for k in ("state_dim", "action_dim") if k in f}


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


@source("analytic", fields={"profile": one_of(*PROFILES), "state_dim": positive_int, "action_dim": positive_int,
                            "alpha": number(0)}, optional={"seed": (_integer, 0)})
def build_analytic(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """Separable analytic Q (``profile``: quadratic | multimodal | saturating), exact optimum."""
    f = fields_of(entry)
    q = AnalyticQ(f["profile"], f["state_dim"], f["action_dim"], seed=f["seed"])
    states = _gaussian_states(entry, settings["states"], q.state_dim, settings["device"])
    objective = PolicyObjective(q, states, f["alpha"], score_samples=settings["score_samples"],
                                score_seed=settings["score_seed"], name=entry.name)
    optimum = solve_optimum(q, states.cpu(), f["alpha"])
    return BuiltObjective(objective, optimum, info={"profile": f["profile"], "modes": optimum.modes.shape[1]})


@source("random-network", fields={"state_dim": positive_int, "action_dim": positive_int, "alpha": number(0)},
        optional={"seed": (_integer, 0), "beta": (number(0), 1.0), "output_scale": (number(), 1.0),
                  "ensemble_size": (positive_int, 2)})
def build_random_network(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """A randomly initialized 2×256 Q-ensemble of MuJoCo size; ``output_scale`` multiplies
    the last layer so Q varies over ``a`` on the scale of the entropy term."""
    f = fields_of(entry)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(f["seed"])
    q = QEnsemble(f["state_dim"], f["action_dim"], ensemble_size=f["ensemble_size"])
    torch.random.set_rng_state(torch_state)
    with torch.no_grad():
        q.weights[-1].mul_(f["output_scale"])
    q = q.to(settings["device"])
    states = _gaussian_states(entry, settings["states"], q.state_dim, settings["device"])
    objective = PolicyObjective(q, states, f["alpha"], beta=f["beta"],
                                score_samples=settings["score_samples"], score_seed=settings["score_seed"],
                                name=entry.name)
    return BuiltObjective(objective, info={"flops_per_pair": q.flops_per_pair()})


def _package_of(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any], model_based: bool = False):
    """The verified package of a package objective, checked to serve the run's settings
    (its split holds enough states; a model-based objective's package has the models)."""
    f = fields_of(entry)
    path = suite.directory / f["package"]
    if not (path / "package.json").is_file():
        raise SuiteError(f"{_who(entry)}: field 'package': no objective package at {path}")
    try:
        pkg = load_package(path)
        if pkg.q is None:
            raise PackageError(f"{path} is an optimizer package (networks only, no Q-function or states)")
        split = f["split"]
        if split not in pkg.states:
            raise PackageError(f"package {path} has no state split {split!r} (has {sorted(pkg.states)})")
        if settings.get("states") is not None and settings["states"] > len(pkg.states[split]):
            raise PackageError(f"package {path} has {len(pkg.states[split])} {split} states, the run asks for "
                               f"{settings['states']}")
        missing = [what for what, m in (("dynamics model", pkg.dynamics), ("reward model", pkg.reward),
                                        ("direct rollout network", pkg.direct)) if m is None]
        if model_based and missing:
            raise PackageError(f"package {path} has no {' / '.join(missing)} (a model-based objective needs them)")
    except PackageError as exc:
        raise SuiteError(f"{_who(entry)}: {exc}") from None
    return pkg, f


def _check_package(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> dict[str, Any]:
    pkg, _ = _package_of(entry, suite, settings, model_based=entry.source == "package-model-based")
    return {"state_dim": pkg.state_dim, "action_dim": pkg.action_dim, "package": pkg}


@source("package", fields={"package": string}, optional={"split": (string, "benchmark"), "beta": (number(0), 1.0)},
        check=_check_package)
def build_package(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """A trained agent's frozen objective from an exported package (``optbench export``).

    ``package`` (relative to the suite directory) gives the Q-ensemble, α and the states;
    ``split`` picks the state set (``benchmark`` or ``heldout``); ``beta`` the pessimism.
    The package is also the context of ``direct``/``iterative`` optimizers that name none.
    """
    pkg, f = _package_of(entry, suite, settings)
    objective = pkg.objective(split=f["split"], beta=f["beta"],
                              n_states=settings["states"], score_samples=settings["score_samples"],
                              score_seed=settings["score_seed"], device=settings["device"])
    objective.name = entry.name
    return BuiltObjective(objective, context={"package": pkg}, info=_package_info(pkg, f["package"]))


def _package_info(pkg, path: str) -> dict[str, Any]:
    """What a package objective's record says about the agent it came from."""
    return {"task": pkg.task, "agent": pkg.name, "package": str(path), "alpha": pkg.alpha,
            "training_steps": pkg.meta.get("training", {}).get("steps"), "eval_return": pkg.meta.get("eval")}


def _model_param(name: str) -> FieldCheck:
    """A model-based objective's ``horizon``/``lam``/``value_samples``, checked by the models' own rule."""
    def check(v: Any) -> Any:
        check_model_based_params(**{"horizon": 0, "lam": 0.0, "value_samples": 1, name: v})
        return v

    return check


@source("package-model-based", fields={"package": string, "horizon": _model_param("horizon"), "lam": _model_param("lam")},
        optional={"split": (string, "benchmark"), "beta": (number(0), 1.0), "value_samples": (_model_param("value_samples"), 8)},
        check=_check_package)
def build_package_model_based(entry: ObjectiveEntry, suite: Suite, settings: dict[str, Any]) -> BuiltObjective:
    """A trained agent's model-based objective: ``Q_MB`` (SPEC §3) from the package's learned
    dynamics and reward models and its direct rollout network in place of ``Q̂``.

    Fields: ``package`` (as for ``source = "package"``), ``horizon`` (model steps ``h ≥ 0``;
    ``0`` is the model-free objective, seed 000's ``h_paper`` is ``h − 1``), ``lam`` (Retrace λ
    in ``[0, 1]``); optional ``split``, ``beta``, ``value_samples`` (fixed draws per ``V``, default 8).
    """
    pkg, f = _package_of(entry, suite, settings, model_based=True)
    horizon, lam, value_samples = f["horizon"], f["lam"], f["value_samples"]
    objective = pkg.model_based_objective(split=f["split"], beta=f["beta"],
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