"""The :class:`PolicyOptimizer` interface and its registry.

Every optimizer, classical or learned, is a :class:`PolicyOptimizer`: given an objective
(``B`` states), a start ``λ₀ [B, 2|A|]``, an iteration budget and a torch generator, its
:meth:`~PolicyOptimizer.iterate` yields the current estimate after every iteration, for all
states at once. The runner's driver (:func:`optbench.runner.drive.run_optimizer`) times each
iteration, reads the objective's cost ledger and scores every estimate; optimizers never
score, time or store anything themselves.

Optimizers are registered by name (``@register("adam")``) and built from a spec string:
``"adam"``, ``"adam(lr=0.05)"``, ``"nevergrad:NGOpt"``, ``"scipy:L-BFGS-B(maxcor=5)"``.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from optbench.objectives.policy_objective import PolicyObjective
from optbench.spec_syntax import OptimizerError, format_spec, parse_spec


@dataclass
class Iterate:
    """One iteration's result. Optimizers that run ahead of the driver (scipy) report their
    own per-iteration seconds and counts; otherwise the driver measures them.
    ``network_flops`` is the FLOPs of the optimizer's own network in this iteration, all states
    together (a learned optimizer's forward passes; :mod:`optbench.objectives.cost`); the
    Q-network FLOPs are counted by the driver from the objective's ledger."""

    params: Tensor
    seconds: float | None = None
    q_evals: int | None = None
    grad_evals: int | None = None
    network_flops: float | None = None


def _as_comparable(v: Any) -> Any:
    """Lists and tuples compare alike (a TOML list against a tuple default)."""
    return tuple(_as_comparable(x) for x in v) if isinstance(v, (list, tuple)) else v


def _same_value(a: Any, b: Any) -> bool:
    try:
        return bool(_as_comparable(a) == _as_comparable(b))
    except Exception:  # noqa: BLE001 - values without a truthy ==, e.g. arrays: never "the default"
        return False


def _recording(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a subclass's ``__init__`` so the outermost constructor call records the settings.

    The arguments are bound to the constructor's signature with its defaults applied, so a result
    says exactly what ran, including every default (as ``torch.optim`` keeps ``defaults``);
    ``super().__init__`` calls of parent classes find the settings recorded and leave them alone."""
    sig = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: "PolicyOptimizer", *args: Any, **kwargs: Any) -> None:
        if "_settings" not in self.__dict__:
            bound = sig.bind(self, *args, **kwargs)  # a TypeError for an unknown setting, as the call would
            settings: dict[str, Any] = {}
            defaults: dict[str, Any] = {}
            for i, (name, param) in enumerate(sig.parameters.items()):
                if i == 0 or name in type(self).not_settings or param.kind is param.VAR_POSITIONAL:
                    continue
                if param.kind is param.VAR_KEYWORD:
                    settings.update(bound.arguments.get(name, {}))
                    continue
                if param.default is not param.empty:
                    defaults[name] = param.default
                if name in bound.arguments:
                    settings[name] = bound.arguments[name]
                elif param.default is not param.empty:
                    settings[name] = param.default
            self._settings, self.defaults = settings, defaults
        init(self, *args, **kwargs)

    return recording_init


class PolicyOptimizer(ABC):
    """Base class of every optimizer.

    Subclasses set ``name`` (the registry key, filled in by :func:`register`) and implement
    :meth:`iterate`. Settings are the keyword arguments of ``__init__``: the base class records
    them from the constructor's signature, defaults included (:meth:`settings`, and
    :attr:`defaults` for the signature's defaults), so a result always says exactly what ran;
    a subclass never passes its settings on by hand. A constructor may still correct a recorded
    value (``self._settings[key] = canonical``) or drop one that does not apply.

    :meth:`label` is the canonical spec string: the name, then the settings in :attr:`label_always`
    and every other setting whose value differs from its default (so adding a setting with a default
    leaves the labels of existing results unchanged). Class attributes that shape it:

    * ``label_always``: settings named in the label even at their default value;
    * ``name_settings``: settings that are part of the name (``nevergrad:NGOpt``), not of its arguments;
    * ``not_settings``: constructor arguments that are not settings (a network object).

    ``amortized`` optimizers (direct, iterative) own a network, may be trained, and
    take their start from it rather than from ``λ₀``.
    """

    name: str = "?"
    amortized: bool = False
    stochastic: bool = True
    one_shot: bool = False  # its estimate is final after one iteration (direct): usable as a warm start
    label_always: tuple[str, ...] = ()
    name_settings: tuple[str, ...] = ()
    not_settings: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, **settings: Any):
        if "_settings" not in self.__dict__:  # a subclass without its own constructor
            self._settings, self.defaults = dict(settings), {}

    @classmethod
    def from_settings(cls, kwargs: dict[str, Any], context: dict[str, Any]) -> "PolicyOptimizer":
        """Build from a spec's settings and a suite's ``context`` (e.g. the objective's ``package``).

        The default ignores the context; optimizers that load something (a network) override it."""
        return cls(**kwargs)

    def settings(self) -> dict[str, Any]:
        """Every setting this optimizer runs with (defaults included)."""
        return dict(self._settings)

    def label(self) -> str:
        """Canonical spec string, e.g. ``adam(lr=0.01,samples=10)`` or ``adam(betas=(0.5, 0.9),lr=0.01,samples=10)``."""
        shown = {k: v for k, v in self._settings.items() if k not in self.name_settings and (
            k in self.label_always or k not in self.defaults or not _same_value(v, self.defaults[k]))}
        args = ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in sorted(shown.items()))
        return f"{self.name}({args})" if args else self.name

    def initial_estimate(self, objective: PolicyObjective) -> "Iterate | None":
        """The optimizer's own start ``λ₀`` (a warm start, with the cost of computing it), or ``None``
        to start from the driver's ``λ₀``."""
        return None

    def trained_budget(self) -> int | None:
        """The iteration budget a learned optimizer was trained for (``None``: not trained for one)."""
        return None

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


def make_optimizer(spec: str | dict[str, Any], **context: Any) -> PolicyOptimizer:
    """Build an optimizer from a spec string or a ``{"name": ..., **settings}`` mapping.

    ``context`` carries things a suite provides (e.g. the package an amortized optimizer
    loads its network from); optimizers that do not take them ignore them. A name
    ``FIRST+SECOND`` (``direct+adam``) builds a :class:`WarmStart`: ``SECOND`` with its settings,
    started from the estimate of the one-shot optimizer ``FIRST``.
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        name, method, kwargs = spec.pop("name"), spec.pop("method", None), spec
    else:
        name, method, kwargs = parse_spec(spec)
    if "+" in name:
        first, second = name.split("+", 1)
        return WarmStart.build(first, second, method, kwargs, context)
    cls = _registered(name)
    if method is not None:
        kwargs["method"] = method
    try:
        return cls.from_settings(kwargs, context)
    except TypeError as exc:
        raise OptimizerError(f"bad settings for optimizer {name!r}: {exc}") from None


def _registered(name: str) -> type[PolicyOptimizer]:
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise OptimizerError(f"unknown optimizer {name!r}; known: {known} (and FIRST+SECOND warm starts, e.g. direct+adam)")
    return REGISTRY[name]


def spec_needs_context(spec: str) -> bool:
    """Whether building ``spec`` needs a suite's context (an amortized optimizer's package), so it can
    only be built once its objective is known. Unknown names: ``False`` (building reports them)."""
    name = parse_spec(spec)[0]
    return any(part in REGISTRY and REGISTRY[part].amortized for part in name.split("+"))


class WarmStart(PolicyOptimizer):
    """``FIRST+SECOND``: the optimizer ``SECOND`` started from the estimate of the one-shot ``FIRST``.

    ``direct+adam(lr=0.03)`` is Adam refining the SAC actor's output, the natural rival of a learned
    optimizer ("the actor's output refined by a few classical steps"); ``direct+iterative`` is the
    iterative amortized optimizer started from the direct network's estimate instead of its own
    ``λ₀``. Iteration 0 of a run is ``FIRST``'s estimate (scored like every start); its cost (the
    network's forward pass) is the run's start cost, and iterations 1..N are ``SECOND``'s own, with
    ``SECOND``'s settings. The label is ``FIRST+`` followed by ``SECOND``'s label; the recorded
    settings are ``SECOND``'s, plus ``warm_start``: ``FIRST``'s settings.
    """

    not_settings = ("first", "second")

    def __init__(self, first: PolicyOptimizer, second: PolicyOptimizer):
        if not first.one_shot:
            raise OptimizerError(f"a warm start needs a one-shot optimizer before '+' (e.g. direct), got {first.name!r}")
        self.first, self.second = first, second
        self.name = f"{first.name}+{second.name}"
        self.amortized, self.stochastic = second.amortized, second.stochastic
        self.label_always, self.name_settings = second.label_always, (*second.name_settings, "warm_start")
        self._settings = {**second.settings(), "warm_start": first.settings()}
        self.defaults = dict(second.defaults)

    @classmethod
    def build(cls, first: str, second: str, method: str | None, kwargs: dict[str, Any],
              context: dict[str, Any]) -> "WarmStart":
        """``first`` from the context alone (its package may be given as the ``package`` setting), ``second``
        from the spec's settings; a second optimizer with a ``start`` setting (iterative) is told to start
        from the given estimate."""
        second_cls = _registered(second)
        kwargs = dict(kwargs)
        first_context = dict(context)
        if "package" in kwargs:
            first_context["package"] = kwargs["package"]
            if not second_cls.amortized:
                kwargs.pop("package")
        if "start" in inspect.signature(second_cls.__init__).parameters:
            if kwargs.setdefault("start", "given") != "given":
                raise OptimizerError(f"{first}+{second} starts {second} from {first}'s estimate: start must be 'given'")
        spec_second = format_spec(second, method, kwargs)
        return cls(make_optimizer(first, **first_context), make_optimizer(spec_second, **context))

    def initial_estimate(self, objective: PolicyObjective) -> Iterate:
        generator = torch.Generator(device=objective.device).manual_seed(0)  # one-shot starters are deterministic
        steps = self.first.iterate(objective, objective.initial_params(), 1, generator)
        out = next(steps)
        steps.close()
        return out if isinstance(out, Iterate) else Iterate(out)

    def trained_budget(self) -> int | None:
        return self.second.trained_budget()

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor | Iterate]:
        return self.second.iterate(objective, start, iterations, generator)


__all__ = ["Iterate", "OptimizerError", "PolicyOptimizer", "REGISTRY", "WarmStart", "format_spec", "make_optimizer",
           "parse_spec", "register", "spec_needs_context"]
