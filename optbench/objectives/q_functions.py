"""Q-function ensembles: the value side of every policy objective.

The objective talks to Q through one protocol (:class:`QFunction`):
``q(states [B, S], actions [B, M, A]) -> values [E, B, M]`` for an ensemble of ``E``
members. States are given once per state (not once per action), so implementations may
compute the state part of their first layer once and reuse it for all ``M`` actions.

:class:`QEnsemble` is the fused MLP ensemble used by the trainer and by exported agents:
the ``E`` members' weights are stacked and evaluated as batched matrix products, one
kernel per layer for the whole ensemble. :class:`ModuleEnsemble` wraps any list of user
modules ``(s, a) -> value`` into the same protocol.
"""

from __future__ import annotations

import math
import weakref
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor, nn

from optbench.backends import onednn
from optbench.objectives.cost import mlp_forward_flops


@runtime_checkable
class QFunction(Protocol):
    """An ensemble of state-action value functions, evaluated in one call."""

    state_dim: int
    action_dim: int
    ensemble_size: int

    def __call__(self, states: Tensor, actions: Tensor) -> Tensor:  # [B,S], [B,M,A] -> [E,B,M]
        ...


class QEnsemble(nn.Module):
    """``E`` ReLU MLPs ``(s, a) -> Q`` with stacked weights (one batched matmul per layer).

    Layer ``k`` holds ``weight_k [E, in, out]`` and ``bias_k [E, 1, out]``. Initialization
    matches ``nn.Linear`` (Kaiming-uniform), member by member.
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256), ensemble_size: int = 2):
        super().__init__()
        self.state_dim, self.action_dim, self.ensemble_size = state_dim, action_dim, ensemble_size
        self.hidden = tuple(int(h) for h in hidden)
        sizes = [state_dim + action_dim, *self.hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(ensemble_size, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(ensemble_size, 1, fan_out).uniform_(-bound, bound)))

    def flops_per_pair(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of one (s, a) evaluation, per ensemble member."""
        return mlp_forward_flops([self.state_dim + self.action_dim, *self.hidden, 1])

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        """``states [B, S]``, ``actions [B, M, A]`` -> ``[E, B, M]``.

        The first layer is split into its state and action blocks, so the state block is
        computed once per state and broadcast over the ``M`` actions.
        """
        return self.forward_features(self.state_features(states), actions)

    def state_features(self, states: Tensor) -> Tensor:
        """The state block of layer 1 (with its bias): ``states [B, S] -> [E, B, H]``.

        Frozen on oneDNN, the last result is kept for the same ``states`` tensor, unmodified (a
        policy objective passes its fixed states on every call); callers must not modify it in
        place."""
        frozen = None if torch.is_grad_enabled() and states.requires_grad else self._frozen_split(states)
        if frozen is not None and frozen.kept_states[0] is states and frozen.kept_states[1] == states._version:
            return frozen.kept_states[2]
        B = states.shape[0]
        hs = torch.baddbmm(self.biases[0], states.unsqueeze(0).expand(self.ensemble_size, B, -1),
                           self.weights[0][:, : self.state_dim])
        if frozen is not None:
            frozen.kept_states = (states, states._version, hs)
        return hs

    def forward_features(self, hs: Tensor, actions: Tensor) -> Tensor:
        """The rest of :meth:`forward`: ``hs [E, B, H]`` from :meth:`state_features`,
        ``actions [B, M, A]`` -> ``[E, B, M]``. Each (state, action) row is computed on its
        own, so callers may evaluate a batch in pieces (see ``PolicyObjective``).

        With frozen weights (a policy objective's Q) on the CPU in float32, the products run on
        oneDNN (:func:`optbench.backends.onednn.split_ensemble`), about 2x faster than the batched
        products below on AVX-512 CPUs; the values differ from theirs in the last bits."""
        frozen = self._frozen_split(actions)
        if frozen is not None:
            if torch.is_grad_enabled() and (hs.requires_grad or actions.requires_grad):
                return onednn.split_ensemble(hs, actions, list(self.weights), list(self.biases), self.state_dim)
            return frozen(hs, actions)
        E = self.ensemble_size
        B, M, _ = actions.shape
        wa = self.weights[0][:, self.state_dim :]
        ha = torch.bmm(actions.reshape(1, B * M, -1).expand(E, -1, -1), wa)  # [E,BM,H]
        if torch.is_grad_enabled():  # (in-place ops on a view would make autograd copy it back)
            h = (ha.view(E, B, M, -1) + hs.unsqueeze(2)).relu_().view(E, B * M, -1)
        else:  # in place: the same values as relu(ha + hs), without more activation-sized tensors
            h = ha.view(E, B, M, -1).add_(hs.unsqueeze(2)).relu_().view(E, B * M, -1)
        n_layers = len(self.weights)
        for k in range(1, n_layers):
            h = torch.baddbmm(self.biases[k], h, self.weights[k])
            if k < n_layers - 1:
                h = h.relu_()
        return h.view(E, B, M)

    def forward_features_vjp(self, hs: Tensor, actions: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """``(values [E, B, M], vjp)`` of :meth:`forward_features` (no gradient to ``hs``), with
        ``vjp(dL/dvalues) = dL/dactions`` callable once: the policy objective's gradient. Frozen on
        oneDNN it runs without autograd (:meth:`optbench.backends.onednn.FrozenSplitEnsemble.vjp`)."""
        frozen = self._frozen_split(actions)
        if frozen is not None:
            return frozen.vjp(hs, actions)
        a = actions.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.forward_features(hs.detach(), a)
        return out.detach(), lambda grad: torch.autograd.grad(out, a, grad)[0]

    def _frozen_split(self, x: Tensor) -> onednn.FrozenSplitEnsemble | None:
        """The weights prepared for oneDNN, or None unless they are frozen (a policy objective's
        Q, or any call without gradients) and oneDNN is usable for ``x``. Built again when a parameter changed (its
        storage or its version counter, which every in-place update bumps); kept outside the
        module (weakly keyed), so that copying or pickling the module is unaffected."""
        if not onednn.usable(x):
            return None
        # the parameters in order, read from the lists' dicts: iterating a ParameterList (or
        # self.parameters()) costs ~10 µs, a few per cent of a policy objective's gradient call
        params = (*self.weights._parameters.values(), *self.biases._parameters.values())
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return None  # a Q being trained: its products, and its parameters' gradients, stay torch's
        key = tuple((p.data_ptr(), p._version) for p in params)
        cached = _FROZEN_SPLITS.get(self)
        if cached is None or cached[0] != key:
            cached = _FROZEN_SPLITS[self] = [key, onednn.FrozenSplitEnsemble(params[:len(self.weights)],
                                                                            params[len(self.weights):],
                                                                            self.state_dim, pack=False), 0]
        cached[2] += 1
        if cached[2] == PACK_AFTER_CALLS:  # the same bits, fewer reorders from now on
            packed = onednn.FrozenSplitEnsemble(params[:len(self.weights)], params[len(self.weights):], self.state_dim)
            packed.kept_states = cached[1].kept_states
            cached[1] = packed
        return cached[1]

    def pairs(self, states: Tensor, actions: Tensor, frozen: bool = False) -> Tensor:
        """Per-pair evaluation ``states [N, S]``, ``actions [N, A]`` -> ``[E, N]`` (the SAC update's
        critic, target and actor losses). ``frozen``: no gradient to the parameters, only to the
        inputs (the direct actor's loss).

        ``[s, a]`` goes through layer 1 in one product: on oneDNN where it is usable
        (:mod:`optbench.backends.onednn`, one autograd node per call), else as batched products whose
        ReLUs run in place and whose last layer (one output unit) is a multiply-and-sum, which
        on the CPU is ~5x cheaper than a batched matrix-vector product and its backward (an
        outer product) ~10x cheaper."""
        W, b = list(self.weights), list(self.biases)
        x = torch.cat([states, actions], -1)
        if onednn.usable(x):
            return onednn.ensemble_mlp(x, W, b, frozen=frozen)
        if frozen:
            W, b = [w.detach() for w in W], [v.detach() for v in b]
        h = torch.baddbmm(b[0], x.expand(self.ensemble_size, -1, -1), W[0]).relu_()
        for k in range(1, len(W) - 1):
            h = torch.baddbmm(b[k], h, W[k]).relu_()
        return (h * W[-1].view(self.ensemble_size, 1, -1)).sum(-1) + b[-1].view(self.ensemble_size, 1)


# Calls with the same weights after which they are packed for oneDNN (packing costs about as
# much as the reorders of ~100 calls saves; a SAC agent's target ensemble, which changes every
# update, is called ~6 times per version, a policy objective's thousands of times).
PACK_AFTER_CALLS = 16

_FROZEN_SPLITS: "weakref.WeakKeyDictionary[QEnsemble, tuple]" = weakref.WeakKeyDictionary()


class ModuleEnsemble(nn.Module):
    """Adapts a list of user modules, each ``(s [N,S], a [N,A]) -> [N] or [N,1]``, to :class:`QFunction`."""

    def __init__(self, members: Sequence[nn.Module], state_dim: int, action_dim: int):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.state_dim, self.action_dim, self.ensemble_size = state_dim, action_dim, len(members)

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        B, M, A = actions.shape
        s = states.unsqueeze(1).expand(B, M, -1).reshape(B * M, -1)
        a = actions.reshape(B * M, A)
        return torch.stack([m(s, a).reshape(B, M) for m in self.members])


def pessimistic_value(q: Tensor, beta: float) -> Tensor:
    """``Q̂ = mean − β·std`` over the ensemble dim 0, population std (β = 1, E = 2 gives the min).

    Two members (every shipped agent) take the closed form ``std = |q₀ − q₁| / 2``: the same
    value, ~20x faster than torch's generic ``std`` reduction on CPU, and a zero (not NaN)
    gradient where the members agree."""
    if q.shape[0] == 1:
        return q[0]
    if q.shape[0] == 2:
        q0, q1 = q.unbind(0)
        return _two_member_value(q0, q1, q0 - q1, beta)
    return q.mean(0) - beta * q.std(0, correction=0)


def _two_member_value(q0: Tensor, q1: Tensor, gap: Tensor, beta: float) -> Tensor:
    """``Q̂`` of two members given their difference ``gap = q₀ − q₁``."""
    return 0.5 * (q0 + q1) - (0.5 * beta) * gap.abs()


def pessimistic_value_and_grad(q: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """:func:`pessimistic_value` ``[B, M]`` and its gradient w.r.t. ``q`` ``[E, B, M]``, in closed
    form for one or two members (``dQ̂/dq₀,₁ = ½ ∓ ½β·sign(q₀ − q₁)``, as autograd gives it)."""
    if q.shape[0] == 1:
        return q[0], torch.ones_like(q)
    if q.shape[0] == 2:
        q0, q1 = q.unbind(0)
        gap = q0 - q1
        value = _two_member_value(q0, q1, gap, beta)
        s = gap.sign_().mul_(0.5 * beta)
        return value, torch.stack([0.5 - s, 0.5 + s])
    with torch.enable_grad():
        q = q.detach().requires_grad_(True)
        value = pessimistic_value(q, beta)
        (grad,) = torch.autograd.grad(value.sum(), q)
    return value.detach(), grad
