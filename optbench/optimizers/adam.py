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
from optbench.optimizers.base import OptimizerError, PolicyOptimizer, register
from optbench.optimizers.settings import number


@register("adam")
class Adam(PolicyOptimizer):
    """Adam on ``λ = (μ, log σ)``. Paper setting: ``lr=0.01``, ``samples=10``."""

    label_always = ("lr", "samples")  # betas appear in the label only when not the default

    def __init__(self, lr: float = 0.01, samples: int = 10, betas: tuple[float, float] = (0.9, 0.999)):
        number("adam", "lr", lr, low=0, above=True)
        number("adam", "samples", samples, low=1, integer=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise OptimizerError(f"adam: setting betas must be a pair of numbers in [0, 1), got {betas!r}")
        for b in betas:
            number("adam", "betas", b, low=0, high=1, below=True)
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
