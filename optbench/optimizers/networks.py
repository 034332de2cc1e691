"""Policy networks: the direct actor ``λ = f_φ(s)`` and the iterative amortized optimizer.

Both output ``λ = (μ, log σ)`` of a tanh-Gaussian (see :mod:`optbench.objectives.distributions`).

Iterative amortized optimizer (SPEC §2; seed 000 §3.1, App. A.4)::

    (δ, ω) = f_φ(s, λ, ∇_λ J)        ω = sigmoid(gate logits)
    λ ← ω ⊙ λ + (1 − ω) ⊙ δ          (separately for μ and log σ)

Inputs: the state and the four blocks ``μ, log σ, ∇_μ J, ∇_{log σ} J``, each block standardized
on its own across the action dimensions of each example (layer norm without affine), all
detached. A 2×256 ReLU trunk, zero-initialized linear heads (so the gate starts at 0.5 and
the update at 0). ``log σ`` is kept in ``[LOG_STD_MIN, LOG_STD_MAX]`` by soft clamps.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optbench.backends import onednn
from optbench.objectives.distributions import join_params, split_params

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
STANDARDIZE_EPS = 1e-5


def soft_clamp(x: Tensor, lo: float = LOG_STD_MIN, hi: float = LOG_STD_MAX) -> Tensor:
    """Smooth clamp: ``hi − softplus(hi − x)`` then ``lo + softplus(x − lo)``."""
    x = hi - F.softplus(hi - x)
    return lo + F.softplus(x - lo)


def hard_clamp(x: Tensor, lo: float = LOG_STD_MIN, hi: float = LOG_STD_MAX) -> Tensor:
    """``clamp(x, lo, hi)`` (Stable-Baselines3's actor)."""
    return x.clamp(lo, hi)


def tanh_rescale(x: Tensor, lo: float = LOG_STD_MIN, hi: float = LOG_STD_MAX) -> Tensor:
    """``lo + ½ (hi − lo)(tanh(x) + 1)`` (CleanRL's actor, after SpinningUp)."""
    return lo + 0.5 * (hi - lo) * (torch.tanh(x) + 1.0)


# How a direct actor's raw log σ head becomes log σ (the package field ``log_std_transform``).
LOG_STD_TRANSFORMS: dict[str, Callable[[Tensor, float, float], Tensor]] = {
    "soft_clamp": soft_clamp, "clamp": hard_clamp, "tanh": tanh_rescale}


def standardize(x: Tensor, eps: float = STANDARDIZE_EPS) -> Tensor:
    """Layer norm without affine over the last dim: ``(x − mean) / sqrt(var + eps)`` (population var)."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + eps)


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(i, o))
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _relu_trunk(trunk: nn.Sequential, x: Tensor, head: nn.Linear | None = None, use_onednn: bool = False) -> Tensor:
    """``head(trunk(x))`` (or ``trunk(x)``) for a stack of ``Linear``/``ReLU`` modules: the same
    products, with the ReLUs applied in place to each fresh linear output and no per-module call
    overhead. ``use_onednn`` (the SAC update's batches): the products on oneDNN where it is
    usable (:mod:`optbench.backends.onednn`); acting and evaluation keep torch's default products."""
    if use_onednn and onednn.usable(x):
        linears = list(trunk[0::2])  # the trunk is Linear, ReLU, Linear, ReLU, ...
        relus = [True] * len(linears)
        if head is not None:
            linears, relus = [*linears, head], [*relus, False]
        return onednn.linear_stack(x, linears, relus)
    fresh = False  # x is a new tensor made here (safe to overwrite)
    for m in trunk:
        if type(m) is nn.Linear:
            x, fresh = F.linear(x, m.weight, m.bias), True
        elif type(m) is nn.ReLU and fresh:
            x = x.relu_()
        else:
            x, fresh = m(x), False
    return x if head is None else head(x)


class DirectActor(nn.Module):
    """SAC actor: 2×256 ReLU trunk, linear heads for ``μ`` and ``log σ`` (soft-clamped).

    ``log_std_transform`` maps the head's raw ``log σ`` into ``log_std_range`` (see
    :data:`LOG_STD_TRANSFORMS`): optbench's own agents use ``"soft_clamp"``; imported agents
    keep their library's parameterization (Stable-Baselines3: ``"clamp"`` to [−20, 2];
    CleanRL: ``"tanh"`` onto [−5, 2]) so that the imported actor is the agent's own."""

    kind = "direct"

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256),
                 log_std_transform: str = "soft_clamp",
                 log_std_range: Sequence[float] = (LOG_STD_MIN, LOG_STD_MAX)):
        super().__init__()
        if log_std_transform not in LOG_STD_TRANSFORMS:
            raise ValueError(f"unknown log_std_transform {log_std_transform!r}; known: {', '.join(LOG_STD_TRANSFORMS)}")
        lo, hi = (float(x) for x in log_std_range)
        if not lo < hi:
            raise ValueError(f"log_std_range must be [min, max] with min < max, got {list(log_std_range)}")
        self.state_dim, self.action_dim, self.hidden = state_dim, action_dim, tuple(int(h) for h in hidden)
        self.log_std_transform, self.log_std_range = log_std_transform, (lo, hi)
        self.trunk = mlp([state_dim, *self.hidden])
        self.trunk.append(nn.ReLU())
        self.head = nn.Linear(self.hidden[-1], 2 * action_dim)

    def forward(self, states: Tensor, use_onednn: bool = False) -> Tensor:
        return join_params(*self.mu_log_std(states, use_onednn))

    def mu_log_std(self, states: Tensor, use_onednn: bool = False) -> tuple[Tensor, Tensor]:
        """``split_params(self(states))`` without joining and splitting again (``use_onednn``: see
        :func:`_relu_trunk`)."""
        mu, log_std = split_params(_relu_trunk(self.trunk, states, self.head, use_onednn))
        return mu, LOG_STD_TRANSFORMS[self.log_std_transform](log_std, *self.log_std_range)

    def architecture(self) -> dict:
        return {"kind": self.kind, "state_dim": self.state_dim, "action_dim": self.action_dim,
                "hidden": list(self.hidden), "activation": "relu", "log_std_range": list(self.log_std_range),
                "log_std_transform": self.log_std_transform}


class IterativeOptimizerNet(nn.Module):
    """``f_φ(s, λ, ∇_λ J) -> (δ, ω)`` and the gated update, for any number of iterations.

    ``init_mu``/``init_std`` set the start ``λ₀`` (paper: μ = 0, σ = 1).
    """

    kind = "iterative"

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256),
                 init_mu: float = 0.0, init_std: float = 1.0):
        super().__init__()
        self.state_dim, self.action_dim, self.hidden = state_dim, action_dim, tuple(int(h) for h in hidden)
        self.init_mu, self.init_std = float(init_mu), float(init_std)
        self.trunk = mlp([state_dim + 4 * action_dim, *self.hidden])
        self.trunk.append(nn.ReLU())
        # heads: [δ_μ, δ_logσ] and gate logits [ω_μ, ω_logσ]
        self.update_head = nn.Linear(self.hidden[-1], 2 * action_dim)
        self.gate_head = nn.Linear(self.hidden[-1], 2 * action_dim)
        for head in (self.update_head, self.gate_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def initial_params(self, batch: int, device=None, dtype=torch.float32) -> Tensor:
        lam = torch.empty(batch, 2 * self.action_dim, device=device, dtype=dtype)
        lam[:, : self.action_dim] = self.init_mu
        lam[:, self.action_dim:] = float(torch.log(torch.tensor(self.init_std)))
        return lam

    def features(self, states: Tensor, lam: Tensor, grad: Tensor) -> Tensor:
        """Network input: state and the four separately standardized blocks, all detached."""
        mu, log_std = split_params(lam.detach())
        g_mu, g_log_std = split_params(grad.detach())
        return torch.cat([states.detach(), standardize(mu), standardize(log_std),
                          standardize(g_mu), standardize(g_log_std)], dim=-1)

    def forward(self, states: Tensor, lam: Tensor, grad: Tensor, use_onednn: bool = False) -> Tensor:
        """One gated update: returns the new ``λ`` (differentiable w.r.t. φ only). ``use_onednn``:
        the trunk's products on oneDNN where it is usable (see :func:`_relu_trunk`)."""
        h = _relu_trunk(self.trunk, self.features(states, lam, grad), use_onednn=use_onednn)
        delta = self.update_head(h)
        gate = torch.sigmoid(self.gate_head(h))
        return gated_update(lam.detach(), delta, gate)

    def architecture(self) -> dict:
        return {"kind": self.kind, "state_dim": self.state_dim, "action_dim": self.action_dim,
                "hidden": list(self.hidden), "activation": "relu", "init_mu": self.init_mu,
                "init_std": self.init_std, "log_std_range": [LOG_STD_MIN, LOG_STD_MAX],
                "inputs": "state, standardize(mu), standardize(log_std), standardize(dJ/dmu), standardize(dJ/dlog_std)"}


def gated_update(lam: Tensor, delta: Tensor, gate: Tensor) -> Tensor:
    """``λ' = ω ⊙ λ + (1 − ω) ⊙ δ``, then ``log σ`` soft-clamped."""
    new = gate * lam + (1.0 - gate) * delta
    mu, log_std = split_params(new)
    return join_params(mu, soft_clamp(log_std))
