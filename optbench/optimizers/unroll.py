"""The iterative amortized optimizer's unroll, the one implementation every user shares.

    λ_0 = start (default: the network's λ₀),   λ_{k+1} = f_φ(s, λ_k, ∇_λ J(λ_k))

Users: the SAC agent with an iterative policy (acting, and its update, which trains ``φ``),
meta-training (:mod:`optbench.agents.meta_training`) and the ``iterative`` optimizer
(:class:`optbench.optimizers.amortized.IterativeAmortized`), which yields every iterate.

``value_and_grad(λ [B, 2A]) -> (J [B], ∇_λ J [B, 2A])`` is whatever estimate the caller uses
(its noise, its Q, its β); it must not build a graph to ``φ`` and is called lazily: once per
iterate whose gradient or value is needed, so ``K`` iterations cost ``K`` gradient calls when
only the iterates are used and ``K + 1`` when ``J(λ_K)`` is also read.

Training (``train=True``) is truncated backprop (SPEC §2; seed 000 App. A.4): the loss is
``−mean_k mean_states J(λ_k)`` over the ``K`` iterates, the network's inputs are detached
between iterations, and ``Q`` is differentiated w.r.t. ``λ`` only, so the gradient reaching
``φ`` is ``Σ_k dλ_k/dφ · (−∇_λ J(λ_k) / (K·B))``; :meth:`Unroll.backward` accumulates it
into the network's ``.grad``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

ValueAndGrad = Callable[[Tensor], tuple[Tensor, Tensor]]


class Unroll:
    """One unroll of an iterative optimizer network on a batch of states.

    Args:
        net: the network, ``net(states, λ, ∇_λ J, **net_kwargs) -> λ'`` with an
            ``initial_params(batch, device, dtype)`` method
            (:class:`optbench.optimizers.networks.IterativeOptimizerNet`).
        states: ``[B, S]``.
        value_and_grad: the estimate of ``J`` and ``∇_λ J`` (see the module docstring).
        start: ``λ_0 [B, 2A]``; default the network's ``λ₀``.
        train: keep each iterate's graph to ``φ`` for :meth:`backward`.
        net_kwargs: passed to every network call (e.g. the SAC update's ``use_onednn``).
    """

    def __init__(self, net, states: Tensor, value_and_grad: ValueAndGrad, start: Tensor | None = None,
                 train: bool = False, **net_kwargs):
        self.net, self.states, self.value_and_grad, self.train = net, states, value_and_grad, train
        self.net_kwargs = net_kwargs
        self.params = (net.initial_params(len(states), states.device, states.dtype) if start is None
                       else start.detach())
        self._estimate: tuple[Tensor, Tensor] | None = None
        self._outputs: list[Tensor] = []  # (train) the iterates, attached to φ
        self._output_grads: list[Tensor] = []  # (train) ∇_λ J at each iterate
        self.means: list[Tensor] = []  # mean J over the states at each iterate whose J was computed
        self.iterations = 0

    def estimate(self) -> tuple[Tensor, Tensor]:
        """``(J, ∇_λ J)`` at the current iterate, computed once."""
        if self._estimate is None:
            value, grad = self.value_and_grad(self.params)
            self._estimate = value, grad
            if self.iterations > 0:
                self.means.append(value.mean())
                if self.train:
                    self._output_grads.append(grad)
        return self._estimate

    def step(self) -> Tensor:
        """One iteration; returns the new ``λ`` (detached)."""
        _, grad = self.estimate()
        with torch.set_grad_enabled(self.train):
            new = self.net(self.states, self.params, grad, **self.net_kwargs)
        if self.train:
            self._outputs.append(new)
        self.params, self._estimate = new.detach(), None
        self.iterations += 1
        return self.params

    def run(self, iterations: int) -> tuple[Tensor, Tensor]:
        """``iterations`` steps, then ``(λ_K, J(λ_K))``."""
        for _ in range(iterations):
            self.step()
        return self.params, self.estimate()[0]

    def backward(self) -> None:
        """(train) Accumulate the truncated-backprop gradient of ``−mean_k mean_states J(λ_k)``
        into the network's ``.grad``; needs ``J`` at every iterate (:meth:`run` computes it)."""
        if not self.train:
            raise RuntimeError("backward() of an unroll made without train=True")
        self.estimate()
        K, B = len(self._outputs), len(self.states)
        torch.autograd.backward(self._outputs, [g / (-K * B) for g in self._output_grads])


__all__ = ["Unroll", "ValueAndGrad"]
