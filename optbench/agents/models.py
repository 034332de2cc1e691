"""Learned dynamics and reward models and the model-based (Retrace) value estimate (seed 000 App. A.5).

Both models are 2×256 Leaky-ReLU MLPs with LayerNorm, outputting the mean of a Gaussian whose
standard deviation is a separate learnable parameter (one per output dim); they are trained
by maximum likelihood on replay data. The dynamics model is residual: ``s' = s + Δ(s, a)``.

Model-based Q estimate (Retrace with importance weights 1, horizon ``h``)::

    Q_MB(s_t, a_t) = Q(s_t, a_t) + Σ_{k=0}^{h} γ^k λ^k [ r̂(s_{t+k}, a_{t+k}) + γ V(s_{t+k+1}) − Q(s_{t+k}, a_{t+k}) ]

with ``s_{t+k+1}`` from the dynamics model and ``a_{t+k}`` (k ≥ 1) from a rollout policy.
The models have no termination head: model rollouts never terminate.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class GaussianMLP(nn.Module):
    """``x -> mean`` (2×256 LeakyReLU + LayerNorm) with a learned, input-independent log std."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.hidden = tuple(int(h) for h in hidden)
        layers: list[nn.Module] = []
        sizes = [in_dim, *self.hidden]
        for i, o in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(i, o), nn.LayerNorm(o), nn.LeakyReLU()]
        layers.append(nn.Linear(sizes[-1], out_dim))
        self.net = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.zeros(out_dim))

    def forward(self, x: Tensor) -> Tensor:
        # = self.net(x), without per-module call overhead; activations in place on fresh outputs
        fresh = False
        for m in self.net:
            kind = type(m)
            if kind is nn.Linear:
                x, fresh = F.linear(x, m.weight, m.bias), True
            elif kind is nn.LayerNorm:
                x, fresh = F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps), True
            elif kind is nn.LeakyReLU and fresh:
                x = F.leaky_relu_(x, m.negative_slope)
            else:
                x, fresh = m(x), False
        return x

    def nll(self, x: Tensor, target: Tensor) -> Tensor:
        """Mean Gaussian negative log-likelihood per example (summed over output dims)."""
        mean = self(x)
        log_std = self.log_std.clamp(-10.0, 5.0)
        z = (target - mean) * torch.exp(-log_std)
        return (0.5 * z.pow(2) + log_std + HALF_LOG_2PI).sum(-1).mean()


class DynamicsModel(nn.Module):
    """Residual deterministic dynamics ``s' = s + Δ(s, a)`` (Gaussian likelihood for training)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.delta = GaussianMLP(state_dim + action_dim, state_dim, hidden)

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        return states + self.delta(torch.cat([states, actions], -1))

    def loss(self, states: Tensor, actions: Tensor, next_states: Tensor) -> Tensor:
        return self.delta.nll(torch.cat([states, actions], -1), next_states - states)

    def architecture(self) -> dict:
        return {"kind": "dynamics", "residual": True, "hidden": list(self.delta.hidden), "activation": "leaky_relu",
                "layer_norm": True, "state_dim": self.state_dim, "action_dim": self.action_dim}


class RewardModel(nn.Module):
    """``r̂(s, a)`` (Gaussian likelihood for training)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.mean = GaussianMLP(state_dim + action_dim, 1, hidden)

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        return self.mean(torch.cat([states, actions], -1)).squeeze(-1)

    def loss(self, states: Tensor, actions: Tensor, rewards: Tensor) -> Tensor:
        return self.mean.nll(torch.cat([states, actions], -1), rewards.unsqueeze(-1))

    def architecture(self) -> dict:
        return {"kind": "reward", "hidden": list(self.mean.hidden), "activation": "leaky_relu", "layer_norm": True,
                "state_dim": self.state_dim, "action_dim": self.action_dim}


def model_loss(dynamics: DynamicsModel, reward: RewardModel, states: Tensor, actions: Tensor, rewards: Tensor,
               next_states: Tensor) -> Tensor:
    """``dynamics.loss(s, a, s') + reward.loss(s, a, r)``, with the input ``[s, a]`` built once."""
    x = torch.cat([states, actions], -1)
    return dynamics.delta.nll(x, next_states - states) + reward.mean.nll(x, rewards.unsqueeze(-1))


def retrace_estimate(states: Tensor, actions: Tensor, *, q_fn: Callable[[Tensor, Tensor], Tensor],
                     v_fn: Callable[[Tensor], Tensor], reward_fn: Callable[[Tensor, Tensor], Tensor],
                     dynamics_fn: Callable[[Tensor, Tensor], Tensor], policy_fn: Callable[[Tensor], Tensor],
                     gamma: float = 0.99, lam: float = 0.9, horizon: int = 2) -> Tensor:
    """Model-based ``Q_MB(s, a)`` of App. A.5 (Retrace, importance weights 1), ``[N]``.

    ``q_fn(s, a) -> [N]`` (pessimistic Q), ``v_fn(s) -> [N]`` (soft state value),
    ``reward_fn(s, a) -> [N]``, ``dynamics_fn(s, a) -> s'``, ``policy_fn(s) -> a``.
    The sum runs over ``k = 0..horizon`` (``horizon + 1`` model steps).
    """
    q0 = q_fn(states, actions)
    total = q0
    s, a, qk, coef = states, actions, q0, 1.0
    for k in range(horizon + 1):
        if k > 0:
            a = policy_fn(s)
            qk = q_fn(s, a)
        s_next = dynamics_fn(s, a)
        total = total + coef * (reward_fn(s, a) + gamma * v_fn(s_next) - qk)
        coef *= gamma * lam
        s = s_next
    return total


class ModelBasedQ(nn.Module):
    """The model-based value estimate of App. A.5 as a :class:`~optbench.objectives.q_functions.QFunction`.

    ``forward(states [B, S], actions [B, M, A]) -> [1, B, M]``: the Retrace estimate
    :func:`retrace_estimate` built on the pessimistic ``Q̂_β`` of the ensemble (so it is a
    one-member "ensemble"; give the objective any β, it has no effect). Future actions are
    the rollout policy's mean action ``tanh μ(s)`` and ``V(s) = E_π[Q̂_β(s, a) − α(log π(a) +
    |A| log 2)]`` uses ``value_samples`` fixed noise draws (drawn once from ``seed``), so the
    estimate is a deterministic function of ``(s, a)`` and scoring keeps common random numbers.

    One evaluation of a pair costs :attr:`q_evals_per_pair` Q-ensemble pair evaluations.
    """

    def __init__(self, q, dynamics: DynamicsModel, reward: RewardModel, policy: nn.Module, alpha: float, *,
                 beta: float = 1.0, gamma: float = 0.99, lam: float = 0.9, horizon: int = 2, value_samples: int = 8,
                 seed: int = 0):
        super().__init__()
        from optbench.objectives.distributions import LOG2, sample_tanh_gaussian, split_params
        from optbench.objectives.q_functions import pessimistic_value

        self.q, self.dynamics, self.reward, self.policy = q, dynamics, reward, policy
        self.state_dim, self.action_dim, self.ensemble_size = q.state_dim, q.action_dim, 1
        self.alpha, self.beta, self.gamma, self.lam, self.horizon = float(alpha), float(beta), gamma, lam, horizon
        self.register_buffer("value_noise", torch.randn(value_samples, q.action_dim,
                                                        generator=torch.Generator().manual_seed(seed)))
        self._split, self._sample, self._pess, self._log2 = split_params, sample_tanh_gaussian, pessimistic_value, LOG2
        self.q_evals_per_pair = 1 + horizon + (horizon + 1) * value_samples
        for m in (q, dynamics, reward, policy):
            m.requires_grad_(False)

    def _q(self, s: Tensor, a: Tensor) -> Tensor:
        return self._pess(self.q(s, a.unsqueeze(1)).squeeze(-1), self.beta)

    def _v(self, s: Tensor) -> Tensor:
        mu, log_std = self._split(self.policy(s).unsqueeze(1))  # [N,1,A]
        a, logp = self._sample(mu, log_std, self.value_noise.unsqueeze(0))  # [N,n,A], [N,n]
        q = self._pess(self.q(s, a), self.beta)  # [N,n]
        return (q - self.alpha * (logp + self.action_dim * self._log2)).mean(-1)

    def _pi(self, s: Tensor) -> Tensor:
        return torch.tanh(self._split(self.policy(s))[0])

    def forward(self, states: Tensor, actions: Tensor) -> Tensor:
        B, M, A = actions.shape
        s = states.unsqueeze(1).expand(B, M, -1).reshape(B * M, -1)
        est = retrace_estimate(s, actions.reshape(B * M, A), q_fn=self._q, v_fn=self._v, reward_fn=self.reward,
                               dynamics_fn=self.dynamics, policy_fn=self._pi, gamma=self.gamma, lam=self.lam,
                               horizon=self.horizon)
        return est.view(1, B, M)
