"""The batched policy objective against exact values, finite differences and plain modules."""

from __future__ import annotations

import math

import torch
from torch import nn

from optbench.objectives import ModuleEnsemble, PolicyObjective, QEnsemble, pessimistic_value
from optbench.objectives.analytic import AnalyticQ, exact_dimension_objective
from optbench.objectives.distributions import sample_tanh_gaussian, tanh_gaussian_log_prob


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mu, log_std = torch.tensor([0.3, -1.0]), torch.tensor([-0.5, 0.2])
    eps = torch.tensor([0.7, -1.3])
    a, logp = sample_tanh_gaussian(mu, log_std, eps)
    u = mu + log_std.exp() * eps
    normal = torch.distributions.Normal(mu, log_std.exp()).log_prob(u).sum()
    by_hand = normal - torch.log(1 - torch.tanh(u) ** 2).sum()
    assert torch.allclose(logp, by_hand, atol=1e-5)
    assert torch.allclose(tanh_gaussian_log_prob(a, mu, log_std), logp, atol=1e-4)


def test_pessimistic_value_beta_one_is_min_and_uses_population_std():
    q = torch.tensor([[1.0, 4.0], [3.0, -2.0]])
    assert torch.equal(pessimistic_value(q, 1.0), q.min(0).values)
    assert torch.allclose(pessimistic_value(q, 2.5), q.mean(0) - 2.5 * (q[0] - q[1]).abs() / 2)


def test_monte_carlo_estimate_matches_exact_quadrature():
    q = AnalyticQ("multimodal", 5, 2, seed=3)
    states = torch.randn(4, 5)
    alpha = 0.1
    lam = torch.tensor([[0.4, -0.2, -0.5, -1.0]]).repeat(4, 1)
    obj = PolicyObjective(q, states, alpha, score_samples=200_000)
    loc, scale = q.params(states)
    mu, log_std = lam[:, :2].double(), lam[:, 2:].double()
    exact = exact_dimension_objective(q, mu, log_std, loc, scale, alpha).sum(-1)
    assert torch.allclose(obj.score(lam).double(), exact, atol=5e-3)


def test_gradient_matches_finite_differences_with_common_noise():
    torch.manual_seed(0)
    q = QEnsemble(5, 3, hidden=(32, 32)).double()
    obj = PolicyObjective(q, torch.randn(3, 5, dtype=torch.float64), 0.2, beta=1.5)
    lam = torch.randn(3, 2, 6, dtype=torch.float64) * 0.5
    eps = obj.noise(16, 1, torch.Generator().manual_seed(1))
    _, grad = obj.value_and_grad(lam, eps)
    h = 1e-6
    for k in range(6):
        d = torch.zeros_like(lam)
        d[..., k] = h
        fd = (obj.estimate(lam + d, eps) - obj.estimate(lam - d, eps)) / (2 * h)
        assert torch.allclose(grad[..., k], fd, atol=1e-6)


def test_fused_ensemble_equals_separate_linear_networks():
    torch.manual_seed(0)
    q = QEnsemble(4, 2, hidden=(16, 8), ensemble_size=2)
    states, actions = torch.randn(3, 4), torch.randn(3, 5, 2)
    out = q(states, actions)
    for e in range(2):
        x = torch.cat([states.unsqueeze(1).expand(3, 5, 4), actions], -1)
        for k in range(3):
            x = x @ q.weights[k][e] + q.biases[k][e, 0]
            x = torch.relu(x) if k < 2 else x
        assert torch.allclose(out[e], x[..., 0], atol=1e-5)
    assert q.flops_per_pair() == 2 * (6 * 16 + 16 * 8 + 8)


class _UserQ(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, s, a):
        return -(a - self.w).pow(2).sum(-1) + s[:, 0]


def test_user_modules_plug_in_and_counts_are_per_pair():
    q = ModuleEnsemble([_UserQ(0.2), _UserQ(-0.1)], state_dim=2, action_dim=1)
    obj = PolicyObjective(q, torch.zeros(4, 2), 0.1)
    lam = obj.initial_params().unsqueeze(1).repeat(1, 3, 1)
    obj.estimate(lam, obj.noise(5, 1))
    assert obj.counts.q_evals == 4 * 3 * 5 and obj.counts.grad_evals == 0
    obj.value_and_grad(lam, obj.noise(5, 3))
    assert obj.counts.q_evals == 2 * 60 and obj.counts.grad_evals == 60
    before = obj.counts.copy()
    obj.score(lam[:, 0])
    assert obj.counts == before  # scoring is measurement, not optimizer cost


def test_scoring_draws_are_fixed_per_state_and_device_independent():
    q = AnalyticQ("quadratic", 3, 2)
    states = torch.randn(6, 3)
    a = PolicyObjective(q, states, 0.1, score_samples=64, score_seed=3)
    b = PolicyObjective(q, states, 0.1, score_samples=64, score_seed=3)
    lam = torch.randn(6, 4)
    assert torch.equal(a.score(lam), b.score(lam))
    sub = a.subset([1, 4])
    assert torch.equal(sub.score(lam[[1, 4]]), a.score(lam)[[1, 4]])
    assert math.isclose(float(a.initial_params()[0, 3]), 0.0)


def test_extreme_parameters_give_finite_values_not_nan():
    q = AnalyticQ("quadratic", 3, 2)
    obj = PolicyObjective(q, torch.randn(2, 3), 0.1, score_samples=32)
    lam = torch.tensor([[200.0, -300.0, 188.0, -50.0], [-1e6, 1e6, 95.0, 120.0]])
    values = obj.score(lam)
    assert torch.isfinite(values).all() and (values < -1e30).all()
