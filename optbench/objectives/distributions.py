"""The tanh-Gaussian policy family and its log-density, shared by every objective and agent.

A policy is ``λ = (μ, log σ) ∈ R^{2|A|}`` (means first, then log standard deviations).
Actions are ``a = tanh(u)`` with ``u ~ N(μ, diag σ²)``; all sampling is reparameterized
(``u = μ + σ ε``) so gradients w.r.t. ``λ`` flow through samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# exp(80) is finite in float32 (exp(89) is not): larger log σ would overflow to inf·0 = NaN.
# Only policies whose σ already exceeds 10^34 are affected, and their J is ≈ −10^35 either way.
LOG_STD_MAX = 80.0


def split_params(lam: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``λ = (μ, log σ)`` along its last dimension."""
    mu, log_std = lam.chunk(2, dim=-1)
    return mu, log_std


def join_params(mu: Tensor, log_std: Tensor) -> Tensor:
    """Inverse of :func:`split_params`."""
    return torch.cat([mu, log_std], dim=-1)


def log_one_minus_tanh_sq(u: Tensor) -> Tensor:
    """``log(1 − tanh(u)²)`` in the stable form ``2(log 2 − |u| − softplus(−2|u|))`` (even in ``u``)."""
    u = u.abs()
    return 2.0 * (LOG2 - u - F.softplus(-2.0 * u))


def gaussian_log_prob(eps: Tensor, log_std: Tensor) -> Tensor:
    """Log-density of ``u = μ + σ ε`` under ``N(μ, σ²)``, summed over action dims."""
    return (-0.5 * eps.pow(2) - log_std - HALF_LOG_2PI).sum(-1)


def sample_tanh_gaussian(mu: Tensor, log_std: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Reparameterized sample ``a = tanh(μ + σ ε)`` and its log-density ``log π(a)``.

    ``log π(a) = log N(u; μ, σ²) − Σ log(1 − tanh(u)²)`` (change of variables through tanh).
    ``mu``/``log_std`` broadcast against ``eps`` (all ``[..., |A|]``); ``log σ`` is capped at
    :data:`LOG_STD_MAX` so that no finite ``λ`` gives NaN.
    """
    log_std = log_std.clamp(max=LOG_STD_MAX)
    u = mu + log_std.exp() * eps
    log_prob = gaussian_log_prob(eps, log_std) - log_one_minus_tanh_sq(u).sum(-1)
    return torch.tanh(u), log_prob


def soft_value_grad(log_std: Tensor, eps: Tensor, actions: Tensor, grad_actions: Tensor,
                    alpha: float | Tensor) -> Tensor:
    """Closed-form ``∇_λ`` of ``mean_n[Q̂(a) − α (log π(a) + |A| log 2)]`` for the samples
    ``a = tanh(u)``, ``u = μ + σ ε`` of :func:`sample_tanh_gaussian`, given ``dQ̂/da``.

    With ``ε`` fixed, ``d log π(a)/du = 2a`` and ``d log π(a)/d log σ = −1`` directly, so the
    integrand's derivative w.r.t. ``u`` is ``h = dQ̂/da · (1 − a²) − 2αa`` and
    ``dJ/dμ = mean_n h``, ``dJ/d log σ = σ · mean_n(h ε) + α`` (zero above :data:`LOG_STD_MAX`,
    where ``log σ`` is capped). Shapes: ``log_std [B, P, 1, |A|]``, ``eps [B, P or 1, n, |A|]``,
    ``actions``/``grad_actions [B, P, n, |A|]``, ``alpha`` a float or ``[B, 1, 1]``;
    returns ``[B, P, 2|A|]``.
    """
    alpha_n = alpha.unsqueeze(-1) if isinstance(alpha, Tensor) and alpha.dim() else alpha
    h = grad_actions * (1.0 - actions * actions) - (2.0 * alpha_n) * actions
    d_mu = h.mean(2)
    d_log_std = (h * eps).mean(2) * log_std.clamp(max=LOG_STD_MAX).exp().squeeze(2) + alpha
    d_log_std = torch.where(log_std.squeeze(2) <= LOG_STD_MAX, d_log_std, 0.0)
    return join_params(d_mu, d_log_std)


def kl_to_uniform(log_prob: Tensor, action_dim: int) -> Tensor:
    """Single-sample KL estimate to the uniform prior on ``[−1, 1]^|A|``: ``log π(a) + |A| log 2``."""
    return log_prob + action_dim * LOG2


def tanh_gaussian_log_prob(action: Tensor, mu: Tensor, log_std: Tensor, clip: float = 1 - 1e-6) -> Tensor:
    """``log π(a)`` of a given action (not a sample): used for distillation and checks."""
    a = action.clamp(-clip, clip)
    u = torch.atanh(a)
    eps = (u - mu) * torch.exp(-log_std)
    return gaussian_log_prob(eps, log_std) - log_one_minus_tanh_sq(u).sum(-1)
