"""Cross-entropy method over actions, all states in lockstep.

Each iteration samples ``population`` pre-tanh actions ``u ~ N(μ, σ²)`` per state, ranks them
by their soft value ``Q̂(s, tanh u) − α(log π_λ(tanh u) + |A| log 2)`` (the integrand of
``J``), and refits ``(μ, σ)`` to the top ``elites`` **in pre-tanh space**. (The reference code
of the source paper refit tanh-squashed samples and wrote them back as pre-tanh parameters;
we do not.) ``smoothing`` ``η`` blends the refit into the current policy,
``μ ← η μ_fit + (1 − η) μ`` and likewise for ``σ``; ``η = 1`` is plain CEM.
``min_std`` keeps ``σ`` from collapsing to zero (where the entropy term of ``J`` diverges).

Cost: ``B·population`` Q-evaluations per iteration, no gradients.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from optbench.objectives.distributions import join_params, split_params
from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.optimizers.settings import number


@register("cem")
class CEM(PolicyOptimizer):
    """CEM in pre-tanh action space. Paper setting: 100 samples, top 10."""

    label_always = ("population", "elites", "smoothing", "min_std")

    def __init__(self, population: int = 100, elites: int = 10, smoothing: float = 1.0, min_std: float = 1e-3):
        number("cem", "population", population, low=1, integer=True)
        number("cem", "elites", elites, low=1, high=population, integer=True)
        number("cem", "smoothing", smoothing, low=0, above=True, high=1)
        number("cem", "min_std", min_std, low=0, above=True)
        self.population, self.elites, self.smoothing, self.min_log_std = population, elites, smoothing, math.log(min_std)

    @torch.no_grad()
    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor]:
        mu, log_std = split_params(start.clone())
        eta = self.smoothing
        for _ in range(iterations):
            eps = objective.noise(self.population, 1, generator)  # [B,1,P,A]
            values = objective.soft_values(join_params(mu, log_std).unsqueeze(1), eps)[:, 0]  # [B,P]
            top = values.topk(self.elites, dim=1).indices  # [B,k]
            u = mu.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps[:, 0]  # [B,P,A] pre-tanh samples
            elite = u.gather(1, top.unsqueeze(-1).expand(-1, -1, u.shape[-1]))
            fit_mu, fit_std = elite.mean(1), elite.std(1, correction=0)
            mu = eta * fit_mu + (1 - eta) * mu
            std = eta * fit_std + (1 - eta) * log_std.exp()
            log_std = std.log().clamp_min(self.min_log_std)
            yield join_params(mu, log_std)
