"""CMA-ES on ``λ``, one independent strategy per state, all states in lockstep as tensors.

The standard (µ/µ_w, λ)-CMA-ES of Hansen's tutorial ("The CMA Evolution Strategy: A
Tutorial", 2016, Algorithm in App. A, default parameters of Table 1): weighted
recombination, cumulative step-size adaptation, rank-one update with ``h_σ`` stall, and
rank-µ update. Every quantity carries a leading state dimension ``B``; the covariance
eigendecomposition is one batched ``torch.linalg.eigh`` per iteration.

Fitness of a candidate is its ``n``-sample estimate of ``J``, with the same draws for all
candidates of a state in an iteration (common random numbers) and fresh draws each
iteration. The estimate after an iteration is the distribution mean.

Cost: ``B·popsize·n`` Q-evaluations per iteration, no gradients.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor

from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.optimizers.settings import number


@register("cmaes")
class CMAES(PolicyOptimizer):
    """Batched CMA-ES. ``popsize=None`` uses the default ``4 + ⌊3 ln N⌋``, ``N = 2|A|``."""

    label_always = ("sigma0", "popsize", "samples")

    def __init__(self, sigma0: float = 0.5, popsize: int | None = None, samples: int = 10):
        number("cmaes", "sigma0", sigma0, low=0, above=True)
        number("cmaes", "samples", samples, low=1, integer=True)
        if popsize is not None:
            number("cmaes", "popsize", popsize, low=2, integer=True)
        self.sigma0, self.popsize, self.samples = sigma0, popsize, samples

    @torch.no_grad()
    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor]:
        B, N = start.shape
        dev, dt = start.device, start.dtype
        lam_pop = self.popsize or 4 + int(3 * math.log(N))
        mu = lam_pop // 2
        w = math.log(mu + 0.5) - torch.log(torch.arange(1, mu + 1, dtype=dt, device=dev))
        w = w / w.sum()
        mueff = float(1.0 / (w**2).sum())
        cc = (4 + mueff / N) / (N + 4 + 2 * mueff / N)
        cs = (mueff + 2) / (N + mueff + 5)
        c1 = 2 / ((N + 1.3) ** 2 + mueff)
        cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((N + 2) ** 2 + mueff))
        damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (N + 1)) - 1) + cs
        chi_n = math.sqrt(N) * (1 - 1 / (4 * N) + 1 / (21 * N**2))

        mean = start.clone()
        sigma = torch.full((B, 1), self.sigma0, dtype=dt, device=dev)
        C = torch.eye(N, dtype=dt, device=dev).expand(B, N, N).clone()
        pc = torch.zeros(B, N, dtype=dt, device=dev)
        ps = torch.zeros(B, N, dtype=dt, device=dev)
        for gen in range(iterations):
            C = (C + C.transpose(1, 2)) / 2
            evals, evecs = torch.linalg.eigh(C)
            D = evals.clamp_min(1e-20).sqrt()  # [B,N]
            z = torch.randn(B, lam_pop, N, generator=generator, dtype=dt, device=dev)
            y = (z * D.unsqueeze(1)) @ evecs.transpose(1, 2)  # rows: B D z
            x = mean.unsqueeze(1) + sigma.unsqueeze(1) * y
            fitness = objective.estimate(x, objective.noise(self.samples, 1, generator))  # [B,λ]
            order = fitness.argsort(dim=1, descending=True)[:, :mu]
            y_sel = y.gather(1, order.unsqueeze(-1).expand(-1, -1, N))  # [B,µ,N]
            z_sel = z.gather(1, order.unsqueeze(-1).expand(-1, -1, N))
            y_w = torch.einsum("m,bmn->bn", w, y_sel)
            z_w = torch.einsum("m,bmn->bn", w, z_sel)
            mean = mean + sigma * y_w
            # C^{-1/2} y_w = B D^{-1} B^T B D z_w = B z_w
            ps = (1 - cs) * ps + math.sqrt(cs * (2 - cs) * mueff) * (z_w.unsqueeze(1) @ evecs.transpose(1, 2))[:, 0]
            ps_norm = ps.norm(dim=1, keepdim=True)
            hsig = (ps_norm / math.sqrt(1 - (1 - cs) ** (2 * (gen + 1))) / chi_n < 1.4 + 2 / (N + 1)).to(dt)
            pc = (1 - cc) * pc + hsig * math.sqrt(cc * (2 - cc) * mueff) * y_w
            rank_one = pc.unsqueeze(2) * pc.unsqueeze(1)
            rank_mu = torch.einsum("m,bmi,bmj->bij", w, y_sel, y_sel)
            decay = 1 - c1 - cmu + (1 - hsig.unsqueeze(-1)) * c1 * cc * (2 - cc)
            C = decay * C + c1 * rank_one + cmu * rank_mu
            sigma = sigma * torch.exp((cs / damps) * (ps_norm / chi_n - 1))
            yield mean.clone()
