"""Learned (amortized) policy optimizers loaded from exported objective packages.

* ``direct``: the SAC actor ``λ = f_φ(s)``; one forward pass, no Q evaluation. It yields its
  estimate at iteration 1 and the same ``λ`` (at no cost) for every further iteration.
* ``iterative``: the gated iterative amortized optimizer,
  ``λ ← ω ⊙ λ + (1 − ω) ⊙ δ, (δ, ω) = f_φ(s, λ, ∇_λ J)``; each iteration estimates ``∇_λ J``
  with ``samples`` reparameterized draws through ``objective.value_and_grad`` (so the
  objective's ledger counts every Q evaluation). It runs any number of iterations (an
  optimizer trained with 5 can run for 50) on any objective whose state and action sizes
  match its network, e.g. another agent's Q.

Both are built by :func:`optbench.optimizers.base.make_optimizer` with a package given either
in the context (``make_optimizer("iterative", package=pkg)``) or as a setting
(``"iterative(package='path/to/pkg', samples=10)"``; the path is read by the reader the package
format registers, :func:`register_package_reader`).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import Tensor

from optbench.objectives.cost import module_forward_flops
from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import Iterate, OptimizerError, PolicyOptimizer, register
from optbench.optimizers.unroll import Unroll


class LearnedPackage(Protocol):
    """What the amortized optimizers read from a package: its networks and where they came from
    (:class:`optbench.agents.package.AgentPackage` is one)."""

    direct: torch.nn.Module | None
    iterative: torch.nn.Module | None
    meta: dict[str, Any]
    name: str
    trained_by: str
    trained_on: list[str]


PackageReader = Callable[[str], LearnedPackage]
_READER: list[PackageReader] = []


def register_package_reader(reader: PackageReader) -> None:
    """Set the function that reads a package directory given by path (``package='DIR'``).

    The package file format belongs to the agents (:func:`optbench.agents.package.load_package`
    registers itself when imported), which import the optimizers' networks, so the optimizers
    cannot import the format without a cycle: they name what they need (:class:`LearnedPackage`)
    and take the reader the agents provide."""
    _READER[:] = [reader]


def _package_from(kwargs: dict[str, Any], context: dict[str, Any]) -> tuple[LearnedPackage, str | None]:
    pkg = kwargs.pop("package", None)
    if pkg is None:
        pkg = context.get("package")
    if pkg is None:
        raise OptimizerError("amortized optimizers need an objective package (setting package='DIR' or a suite package)")
    if not isinstance(pkg, (str, os.PathLike)):
        if not all(hasattr(pkg, f) for f in ("meta", "name", "direct", "iterative")):
            raise OptimizerError(f"setting package must be a package directory, got {pkg!r}")
        return pkg, None
    if not _READER:
        raise OptimizerError(f"package={str(pkg)!r}: no package reader is loaded; import optbench.agents.package "
                             "first (the command line and the runner do)")
    return _READER[0](str(pkg)), str(pkg)


def _provenance(pkg) -> dict[str, Any]:
    """Recorded in the optimizer's settings: which package, trained how, with which agents' Q."""
    return {"agent": pkg.name, "trained_by": pkg.trained_by, "trained_on": pkg.trained_on}


def _network_flops(net: torch.nn.Module, states: int) -> float | None:
    """The forward FLOPs of a learned optimizer's network for ``states`` rows (from its layer shapes)."""
    per_row = module_forward_flops(net)
    return None if per_row is None else float(per_row * states)


def _check_dims(name: str, net, objective: PolicyObjective) -> None:
    if (net.state_dim, net.action_dim) != (objective.state_dim, objective.action_dim):
        raise OptimizerError(f"{name} network expects {net.state_dim}-dim states and {net.action_dim}-dim actions, "
                             f"but objective {objective.name!r} has {objective.state_dim} and {objective.action_dim}")


@register("direct")
class DirectAmortized(PolicyOptimizer):
    """``λ = f_φ(s)`` (deterministic, no Q evaluations)."""

    amortized = True
    stochastic = False
    one_shot = True
    not_settings = ("network",)

    def __init__(self, network, **settings: Any):
        if network is None:
            raise OptimizerError("the package has no direct network (iterative agents have one only if trained with models)")
        self.network = network

    @classmethod
    def from_settings(cls, kwargs: dict[str, Any], context: dict[str, Any]) -> "DirectAmortized":
        kwargs = dict(kwargs)
        pkg, path = _package_from(kwargs, context)
        if kwargs:
            raise OptimizerError(f"direct takes no settings besides package, got {sorted(kwargs)}")
        settings = {"package": path} if path else {}
        return cls(pkg.direct, **_provenance(pkg), **settings)

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor | Iterate]:
        _check_dims("direct", self.network, objective)
        net = self.network.to(objective.device)
        with torch.no_grad():
            lam = net(objective.states.to(torch.float32)).to(objective.states.dtype)
        yield Iterate(lam, q_evals=0, grad_evals=0, network_flops=_network_flops(net, objective.batch_size))
        for _ in range(iterations - 1):
            yield Iterate(lam, seconds=0.0, q_evals=0, grad_evals=0, network_flops=0.0)


@register("iterative")
class IterativeAmortized(PolicyOptimizer):
    """Iterative amortized policy optimization with a trained network.

    Settings: ``samples`` (reparameterized draws per gradient; default: the value the
    network was trained with), ``iterations_trained`` (recorded; default from the package),
    ``start`` = ``"network"`` (the network's ``λ₀``: μ = 0, σ = init_std, as in training)
    or ``"given"`` (the driver's start ``λ₀``).
    """

    amortized = True
    stochastic = True
    label_always = ("samples", "iterations_trained", "start")
    not_settings = ("network",)

    def __init__(self, network, samples: int = 10, iterations_trained: int | None = None, start: str = "network",
                 **settings: Any):
        if network is None:
            raise OptimizerError("the package has no iterative network (it was exported from a direct agent)")
        if int(samples) < 1:
            raise OptimizerError(f"samples must be >= 1, got {samples}")
        if start not in ("network", "given"):
            raise OptimizerError(f"start must be 'network' or 'given', got {start!r}")
        self.network, self.samples, self.start = network, int(samples), start
        self.iterations_trained = None if iterations_trained is None else int(iterations_trained)

    def trained_budget(self) -> int | None:
        return self.iterations_trained

    @classmethod
    def from_settings(cls, kwargs: dict[str, Any], context: dict[str, Any]) -> "IterativeAmortized":
        kwargs = dict(kwargs)
        pkg, path = _package_from(kwargs, context)
        arch = pkg.meta.get("architectures", {}).get("iterative", {})
        kwargs.setdefault("samples", int(arch.get("grad_samples", 10)))
        kwargs.setdefault("iterations_trained", arch.get("iterations_trained"))
        if path:
            kwargs["package"] = path
        return cls(pkg.iterative, **_provenance(pkg), **kwargs)

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor | Iterate]:
        _check_dims("iterative", self.network, objective)
        net = self.network.to(objective.device)

        def value_and_grad(lam: Tensor) -> tuple[Tensor, Tensor]:
            value, grad = objective.value_and_grad(lam.unsqueeze(1), objective.noise(self.samples, 1, generator))
            return value[:, 0], grad[:, 0]

        unroll = Unroll(net, objective.states, value_and_grad,
                        start=None if self.start == "network" else start.to(objective.states.dtype))
        flops = _network_flops(net, objective.batch_size)
        for _ in range(iterations):
            yield Iterate(unroll.step(), network_flops=flops)


__all__ = ["DirectAmortized", "IterativeAmortized", "LearnedPackage", "register_package_reader"]
