"""Gradient ascent on ``λ`` with Adam, all states in lockstep.

Adam is element-wise, so one ``torch.optim.Adam`` over the ``[B, 2|A|]`` tensor is exactly
``B`` independent Adam runs. Each iteration draws fresh noise and uses the reparameterized
``n``-sample gradient of ``J``: ``B·n`` Q-evaluations (and gradient evaluations) per iteration.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import PolicyOptimizer, register


@register("adam")
class Adam(PolicyOptimizer):
    """Adam on ``λ = (μ, log σ)``. Paper setting: ``lr=0.01``, ``samples=10``."""

    label_always = ("lr", "samples")  # betas appear in the label only when not the default

    def __init__(self, lr: float = 0.01, samples: int = 10, betas: tuple[float, float] = (0.9, 0.999)):
        if lr <= 0 or samples < 1:
            raise ValueError("adam needs lr > 0 and samples >= 1")
        if len(tuple(betas)) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError("adam needs two betas in [0, 1)")
        self.lr, self.samples, self.betas = lr, samples, tuple(betas)

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor]:
        lam = start.detach().clone().unsqueeze(1).requires_grad_(True)  # [B,1,2A]
        opt = torch.optim.Adam([lam], lr=self.lr, betas=self.betas)
        for _ in range(iterations):
            _, grad = objective.value_and_grad(lam, objective.noise(self.samples, 1, generator))
            lam.grad = -grad  # Adam minimizes; we ascend J
            opt.step()
            yield lam.detach()[:, 0].clone()
