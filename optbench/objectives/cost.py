"""Network FLOPs, counted from the networks' shapes: the hardware-independent cost axis.

Wall clock depends on the machine and the back-end; Q-evaluations hide that a pair costs
more in a bigger network and that a gradient costs a backward pass. FLOPs count the work
itself. Every function here is a pure function of layer sizes (or of the ``nn.Linear``
layers a module holds), so the count of a stored run can be checked by hand:

* a linear layer ``in → out`` applied to one row costs ``2·in·out`` FLOPs (a multiply and an
  add per weight); biases, activations, layer norms and the policy's closed-form math (tanh,
  log-probabilities) are not counted: they are a few per cent of the matrix products at the
  sizes benchmarked (2×256 hidden layers);
* **forward** of an MLP with sizes ``[d₀, d₁, …, d_L]``: ``Σ_k 2·d_{k−1}·d_k`` per row;
* **backward** to the inputs only (the policy gradient needs ``∂Q/∂a``, never weight
  gradients): ``2·d_{k−1}·d_k`` per layer for the input-gradient products, except the first
  layer, which needs only the columns of the inputs differentiated (the action block):
  ``2·c·d₁`` for ``c`` such columns;
* a Q-evaluation (one ``(s, a)`` pair in the objective's ledger) costs the forward pass of
  **every ensemble member**; a gradient evaluation adds the backward pass of every member.

The count is *nominal*: every pair pays its whole first layer, whereas
:class:`~optbench.objectives.q_functions.QEnsemble` computes the state block of layer 1 once
per state and reuses it for all of a state's actions, so the FLOPs executed are lower by up
to ``2·|S|·d₁`` per pair and member. Nominal counts are what a paper would report and do not
depend on how an implementation batches its work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn


def mlp_forward_flops(sizes: Sequence[int]) -> int:
    """FLOPs of one row through an MLP with layer sizes ``[d₀, …, d_L]`` (matrix products only)."""
    return sum(2 * int(i) * int(o) for i, o in zip(sizes[:-1], sizes[1:]))


def mlp_input_grad_flops(sizes: Sequence[int], input_columns: int | None = None) -> int:
    """FLOPs of the backward pass of one row to (``input_columns`` of) the MLP's inputs.

    ``input_columns`` is how many of the ``d₀`` inputs are differentiated (``None``: all)."""
    if len(sizes) < 2:
        return 0
    first = int(sizes[0] if input_columns is None else input_columns)
    rest = sum(2 * int(i) * int(o) for i, o in zip(sizes[1:-1], sizes[2:]))
    return 2 * first * int(sizes[1]) + rest


def module_forward_flops(module: nn.Module) -> int | None:
    """Forward FLOPs per row of a module, as the sum over its ``nn.Linear`` layers of ``2·in·out``.

    Assumes each linear layer is applied once per row (true of MLPs, of the SAC actor and of the
    iterative optimizer's network); ``None`` for a module with no linear layer (no network to count)."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not layers:
        return None
    return sum(2 * m.in_features * m.out_features for m in layers)


@dataclass(frozen=True)
class QCost:
    """FLOPs per ledger entry of a Q-function: ``forward`` per Q-evaluation (one (s, a) pair through
    every member), ``backward`` per gradient evaluation (the pass back to the action, every member)."""

    forward: int
    backward: int
    members: int
    sizes: tuple[int, ...] | None  # layer sizes of one member, when it is an MLP of known shape

    def record(self) -> dict[str, Any]:
        return {"forward_flops_per_q_eval": self.forward, "backward_flops_per_grad_eval": self.backward,
                "members": self.members, "member_sizes": list(self.sizes) if self.sizes else None}


def q_cost(q: Any) -> QCost | None:
    """FLOPs of one Q-evaluation and one gradient evaluation of ``q``, or ``None`` when they are not
    known from its shape (an analytic Q-function, a model-based estimate whose pairs also run
    dynamics and reward networks).

    Recognized: ensembles with stacked MLP weights (``weights[k]`` of shape ``[E, in, out]``, as
    :class:`~optbench.objectives.q_functions.QEnsemble`), and lists of member modules
    (``members``, as :class:`~optbench.objectives.q_functions.ModuleEnsemble`; every linear layer
    of a member counted once per pair, its backward over the full input width).
    """
    weights = getattr(q, "weights", None)
    if isinstance(weights, nn.ParameterList) and len(weights) and getattr(q, "q_evals_per_pair", 1) == 1:
        members = int(weights[0].shape[0])
        sizes = (int(weights[0].shape[1]), *(int(w.shape[2]) for w in weights))
        action_dim = int(getattr(q, "action_dim", sizes[0]))
        return QCost(members * mlp_forward_flops(sizes), members * mlp_input_grad_flops(sizes, action_dim),
                     members, sizes)
    modules = getattr(q, "members", None)
    if isinstance(modules, nn.ModuleList) and len(modules):
        per = [module_forward_flops(m) for m in modules]
        if any(f is None for f in per):
            return None
        return QCost(sum(per), sum(per), len(modules), None)
    return None


__all__ = ["QCost", "mlp_forward_flops", "mlp_input_grad_flops", "module_forward_flops", "q_cost"]
