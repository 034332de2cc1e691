"""Analytic Q-functions whose policy optimum is known, for the synthetic suite and tests.

Each is *separable* over action dimensions, ``Q(s, a) = Σ_i q(a_i; θ_i(s))``, with
state-dependent 1-D profiles ``θ_i(s)`` from a fixed random projection of the state. Since
the uniform prior and a diagonal tanh-Gaussian also factorize, ``J`` is a sum of independent
2-D problems over ``(μ_i, log σ_i)``. :func:`solve_optimum` evaluates each exactly with
Gauss–Hermite quadrature and maximizes it by Newton's method (float64), from a start in
every basin, so optima and their values are known to ~1e-9, independent of Monte Carlo.

Profiles:

* ``quadratic``: ``q(a) = −w (a − c)²``, one optimum, ``c ∈ [−0.7, 0.7]``.
* ``multimodal``: ``q(a) = Σ_k h_k exp(−(a − c_k)² / 2w²)``, bumps at ``c = ±0.6`` with
  different heights per dimension, so ``2^|A|`` separated local optima of known value.
* ``saturating``: ``q(a) = k a``, pushes actions toward a bound; the tanh correction in
  ``log π`` keeps the optimum finite.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from optbench.objectives.distributions import LOG2, log_one_minus_tanh_sq

PROFILES = ("quadratic", "multimodal", "saturating")
_BUMP_CENTERS = (-0.6, 0.6)
_BUMP_WIDTH = 0.15


class AnalyticQ:
    """A one-member "ensemble" ``Q(s, a) = Σ_i q(a_i; θ_i(s))`` (see module docstring)."""

    ensemble_size = 1

    def __init__(self, profile: str, state_dim: int, action_dim: int, seed: int = 0):
        if profile not in PROFILES:
            raise ValueError(f"unknown analytic profile {profile!r}; known: {', '.join(PROFILES)}")
        self.profile, self.state_dim, self.action_dim = profile, state_dim, action_dim
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(state_dim, action_dim, generator=g, dtype=torch.float64) / math.sqrt(state_dim)
        self.scale = 0.5 + 1.5 * torch.rand(action_dim, generator=g, dtype=torch.float64)  # w, h_max or |k|

    def params(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Per-state, per-dimension profile parameters ``(location, scale)``, both ``[B, |A|]``."""
        z = torch.tanh(states.double() @ self.proj)  # [B,A] in (-1, 1)
        if self.profile == "quadratic":
            return 0.7 * z, self.scale.expand_as(z)
        if self.profile == "multimodal":
            return z, self.scale.expand_as(z)  # sign(z): which bump is higher; |z| the height gap
        return torch.sign(z) + (z == 0), self.scale.expand_as(z)  # direction of the slope

    @staticmethod
    def profile_values(profile: str, a: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """``q(a; loc, scale)`` element-wise (loc/scale broadcast against ``a``)."""
        if profile == "quadratic":
            return -scale * (a - loc) ** 2
        if profile == "multimodal":
            low, high = _BUMP_CENTERS
            h_high = scale * (0.6 + 0.4 * loc.clamp_min(0))  # bump at +0.6
            h_low = scale * (0.6 + 0.4 * (-loc).clamp_min(0))  # bump at -0.6
            bump = lambda c: torch.exp(-((a - c) ** 2) / (2 * _BUMP_WIDTH**2))  # noqa: E731
            return h_low * bump(low) + h_high * bump(high)
        return scale * loc * a

    def __call__(self, states: Tensor, actions: Tensor) -> Tensor:
        loc, scale = self.params(states)
        q = self.profile_values(self.profile, actions.double(), loc.unsqueeze(1), scale.unsqueeze(1))
        return q.sum(-1).to(actions.dtype).unsqueeze(0)  # [1,B,M]

    def basin_starts(self) -> list[float]:
        """Pre-tanh means from which local optimization reaches every local optimum of a dimension."""
        if self.profile == "multimodal":
            return [math.atanh(c) for c in _BUMP_CENTERS]
        return [0.0]


@dataclass
class KnownOptimum:
    """Exact local optima of an analytic objective.

    ``params [B, 2|A|]`` is the global optimum and ``value [B]`` its exact ``J``.
    ``modes [B, K, 2|A|]`` and ``mode_values [B, K]`` list every local optimum (``K = 1``
    unless multimodal), sorted by value, best first.
    """

    params: Tensor
    value: Tensor
    modes: Tensor
    mode_values: Tensor


def _quadrature(n: int = 96) -> tuple[Tensor, Tensor]:
    x, w = np.polynomial.hermite_e.hermegauss(n)  # ∫ f(x) e^{-x²/2} dx
    return torch.tensor(x), torch.tensor(w / math.sqrt(2 * math.pi))


def exact_dimension_objective(q: AnalyticQ, mu: Tensor, log_std: Tensor, loc: Tensor, scale: Tensor,
                              alpha: float | Tensor) -> Tensor:
    """Exact per-dimension ``J_i(μ_i, log σ_i)`` by Gauss–Hermite quadrature (float64).

    ``J_i = E[q(tanh u)] − α (E[log N(u)] − E[log(1 − tanh² u)] + log 2)``,
    with ``E[log N(u; μ, σ)] = −log σ − ½ log 2π − ½``.
    """
    x, w = _quadrature()
    u = mu.unsqueeze(-1) + log_std.exp().unsqueeze(-1) * x
    qv = AnalyticQ.profile_values(q.profile, torch.tanh(u), loc.unsqueeze(-1), scale.unsqueeze(-1))
    e_q = (qv * w).sum(-1)
    e_corr = (log_one_minus_tanh_sq(u) * w).sum(-1)
    e_logn = -log_std - 0.5 * math.log(2 * math.pi) - 0.5
    return e_q - alpha * (e_logn - e_corr + LOG2)


def solve_optimum(q: AnalyticQ, states: Tensor, alpha: float, newton_steps: int = 100) -> KnownOptimum:
    """Exact optima of ``J`` for ``states`` (see module docstring)."""
    loc, scale = q.params(states)  # [B,A]
    B, A = loc.shape
    dim_modes, dim_values = [], []
    for mu0 in q.basin_starts():
        p = torch.stack([torch.full_like(loc, mu0), torch.full_like(loc, math.log(0.3))], -1)  # [B,A,2]
        p = _newton(lambda p: exact_dimension_objective(q, p[..., 0], p[..., 1], loc, scale, alpha), p, newton_steps)
        dim_modes.append(p)
        dim_values.append(exact_dimension_objective(q, p[..., 0], p[..., 1], loc, scale, alpha))
    modes, values = [], []
    for choice in itertools.product(range(len(dim_modes)), repeat=A):
        p = torch.stack([dim_modes[c][:, i] for i, c in enumerate(choice)], 1)  # [B,A,2]
        modes.append(torch.cat([p[..., 0], p[..., 1]], -1))
        values.append(sum(dim_values[c][:, i] for i, c in enumerate(choice)))
    modes_t, values_t = torch.stack(modes, 1), torch.stack(values, 1)  # [B,K,2A], [B,K]
    order = values_t.argsort(1, descending=True)
    modes_t = modes_t.gather(1, order.unsqueeze(-1).expand_as(modes_t))
    values_t = values_t.gather(1, order)
    return KnownOptimum(modes_t[:, 0].float(), values_t[:, 0].float(), modes_t.float(), values_t.float())


def _newton(f, p: Tensor, steps: int) -> Tensor:
    """Damped Newton ascent on independent 2-D problems ``f: [..., 2] -> [...]``.

    The problems are independent, so the gradient and Hessian of ``Σf`` are every problem's
    own. Where a Hessian is not negative definite a small gradient step is taken instead;
    steps are halved per problem until ``f`` does not decrease.
    """
    shape = p.shape[:-1]
    flat = p.reshape(-1, 2).clone()
    value = lambda x: f(x.reshape(*shape, 2)).reshape(-1)  # noqa: E731
    for _ in range(steps):
        x = flat.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(value(x).sum(), x, create_graph=True)
        H = torch.stack([torch.autograd.grad(g[:, k].sum(), x, retain_graph=True)[0] for k in range(2)], 1).detach()
        g = g.detach()
        if g.abs().max() < 1e-10:
            break
        negdef = (H[:, 0, 0] < 0) & (torch.linalg.det(H) > 0)
        H_safe = torch.where(negdef[:, None, None], H, -torch.eye(2, dtype=H.dtype))
        newton = -torch.linalg.solve(H_safe, g.unsqueeze(-1)).squeeze(-1)
        step = torch.where(negdef.unsqueeze(-1), newton, 0.1 * g).clamp(-0.5, 0.5)
        with torch.no_grad():
            f_old = value(flat)
            for _ in range(30):
                ok = value(flat + step) >= f_old - 1e-12
                if ok.all():
                    break
                step = torch.where(ok.unsqueeze(-1), step, 0.5 * step)
        flat = flat + step
    return flat.reshape(*shape, 2)
