"""The batched policy objective against exact values, finite differences and plain modules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from optbench.backends import onednn
from optbench.objectives import ModuleEnsemble, PolicyObjective, QEnsemble, pessimistic_value
from optbench.objectives.q_functions import pessimistic_value_and_grad
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
    q = torch.randn(2, 50, 7)  # two members take a closed form: the generic formula's values
    for beta in (0.0, 0.5, 1.0, 2.0):
        assert torch.allclose(pessimistic_value(q, beta), q.mean(0) - beta * q.std(0, correction=0), atol=1e-6)
    q3 = torch.randn(3, 20)
    assert torch.allclose(pessimistic_value(q3, 0.7), q3.mean(0) - 0.7 * q3.std(0, correction=0))
    same = torch.ones(2, 4, requires_grad=True)  # members that agree: a finite gradient (torch's std gives NaN)
    (g,) = torch.autograd.grad(pessimistic_value(same, 1.0).sum(), same)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frozen_q_ensemble_on_onednn_equals_plain_products(dtype, monkeypatch):
    """A frozen QEnsemble (every objective's Q) runs on oneDNN where it is usable (float32 on the
    CPU): the values and the gradients w.r.t. actions and states of torch's batched products.
    Elsewhere (float64 here) both paths are the plain one and must agree exactly."""
    if dtype == torch.float32 and not onednn.usable(torch.zeros(1)):
        pytest.skip("no oneDNN linear kernel in this torch")
    torch.manual_seed(0)
    q = QEnsemble(7, 3, hidden=(32, 48), ensemble_size=2).to(dtype).requires_grad_(False)
    states, actions = torch.randn(9, 7, dtype=dtype), torch.rand(9, 5, 3, dtype=dtype) * 2 - 1
    out = {}
    for enabled in (True, False):
        monkeypatch.setattr(onednn, "ENABLED", enabled)
        s, a = states.clone().requires_grad_(True), actions.clone().requires_grad_(True)
        v = q(s, a)
        w = torch.linspace(-1, 1, v.numel(), dtype=dtype).view_as(v)
        out[enabled] = (v, *torch.autograd.grad((v * w).sum(), [s, a]))
        with torch.no_grad():
            assert torch.equal(q(states, actions), v.detach())  # the no-graph path: the same bits
    for x, y in zip(out[True], out[False]):
        assert x.shape == y.shape and torch.allclose(x, y, atol=1e-5, rtol=1e-5)
    assert q(states, actions).requires_grad is False
    q.requires_grad_(True)  # a Q being trained keeps torch's products (and its parameter gradients)
    monkeypatch.setattr(onednn, "ENABLED", True)
    assert q(states, actions).requires_grad


def test_frozen_q_ensemble_follows_weight_changes():
    """A frozen QEnsemble keeps its weights prepared for oneDNN between calls, and the state
    features of the last states tensor; changing the weights or the states in place must give
    the new values."""
    torch.manual_seed(0)
    q, other = (QEnsemble(7, 3, hidden=(32, 48)).requires_grad_(False) for _ in range(2))
    states, actions = torch.randn(9, 7), torch.rand(9, 5, 3) * 2 - 1
    before = q(states, actions)
    q.load_state_dict(other.state_dict())
    assert torch.equal(q(states, actions), other(states, actions))
    assert not torch.equal(q(states, actions), before)
    with torch.no_grad():
        q.weights[1].mul_(2.0)
    assert not torch.equal(q(states, actions), other(states, actions))
    assert torch.equal(copy.deepcopy(q)(states, actions), q(states, actions))  # the cache stays outside
    moved = q(states + 1.0, actions)
    states.add_(1.0)  # the same states tensor, changed in place: its state features are computed again
    assert torch.equal(q(states, actions), moved)


def test_frozen_q_ensemble_small_calls_and_packing_keep_values():
    """Calls on fewer than ``onednn.SMALL_ROWS`` rows (an agent acting on one state) take torch's
    own products: values and gradients agree with the plain path. The weights are packed for
    oneDNN only after ``PACK_AFTER_CALLS`` calls with the same weights, with the same bits."""
    from optbench.objectives import q_functions

    torch.manual_seed(0)
    q = QEnsemble(7, 3, hidden=(32, 48)).requires_grad_(False)
    obj = PolicyObjective(q, torch.randn(1, 7), 0.1, beta=2.5)
    lam, eps = torch.randn(1, 1, 6) * 0.3, torch.randn(1, 1, 2, 3)
    value, grad = obj.value_and_grad(lam, eps)
    lam_ref = lam.clone().requires_grad_(True)
    with torch.enable_grad():
        ref = obj.estimate(lam_ref, eps)
        (grad_ref,) = torch.autograd.grad(ref.sum(), lam_ref)
    assert torch.allclose(value, ref, atol=1e-5) and torch.allclose(grad, grad_ref, atol=1e-4, rtol=1e-4)
    if not onednn.usable(torch.zeros(1)):
        return
    states, actions = torch.randn(9, 7), torch.rand(9, 50, 3) * 2 - 1
    first = q(states, actions)
    calls = [q(states, actions) for _ in range(q_functions.PACK_AFTER_CALLS + 2)]
    assert q_functions._FROZEN_SPLITS[q][1].packed == onednn._packing()
    assert all(torch.equal(c, first) for c in calls)


@pytest.mark.parametrize("cotangent", ["pessimistic", "one member", "two rows", "dense", "zero"])
def test_frozen_vjp_runs_rows_with_a_cotangent_and_keeps_the_bits(cotangent):
    """The frozen ensemble's backward pass runs each member only through the rows whose
    cotangent is nonzero for it (for the minimum of two members, one member per row); the
    gradient must be the bits of the autograd path, which runs every row of every member."""
    if not onednn.usable(torch.zeros(1)):
        pytest.skip("no oneDNN linear kernel in this torch")
    torch.manual_seed(0)
    q = QEnsemble(7, 3, hidden=(32, 48)).requires_grad_(False)
    states, actions = torch.randn(9, 7), torch.rand(9, 50, 3) * 2 - 1
    hs = q.state_features(states)
    values, vjp = q.forward_features_vjp(hs, actions)
    grad = torch.randn_like(values)
    if cotangent == "pessimistic":
        grad = pessimistic_value_and_grad(values, 1.0)[1]
        assert 0 < (grad[0] == 0).sum() < values[0].numel()  # both members have rows to skip
    elif cotangent == "one member":
        grad[0] = 0.0
    elif cotangent == "two rows":  # two rows gathered, padded with repeats of the last one
        grad[0].view(-1)[2:] = 0.0
        grad[1].view(-1)[::3] = 0.0
    elif cotangent == "zero":
        grad.zero_()
    a = actions.clone().requires_grad_(True)
    with torch.enable_grad():
        out = q.forward_features(hs, a)
        (expected,) = torch.autograd.grad(out, a, grad)
    assert torch.equal(values, out.detach())
    assert torch.equal(vjp(grad), expected)


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


def _double_user_ensemble() -> ModuleEnsemble:
    torch.manual_seed(2)
    nets = [nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).double() for _ in range(2)]
    return ModuleEnsemble([_Concat(m) for m in nets], state_dim=5, action_dim=3)


@pytest.mark.parametrize("q_kind,alpha,candidate_noise", [
    ("ensemble", 0.2, 1), ("three members", 0.2, 2), ("user modules", "per state", 1), ("ensemble", "per state", 2)])
def test_gradient_matches_finite_differences(q_kind, alpha, candidate_noise):
    """``value_and_grad``'s closed-form policy gradient (and its pieced / autograd Q part)
    against central differences of ``estimate`` on the same noise, in float64."""
    torch.manual_seed(0)
    q = {"ensemble": lambda: QEnsemble(5, 3, hidden=(32, 32)).double(),
         "three members": lambda: QEnsemble(5, 3, hidden=(32, 32), ensemble_size=3).double(),
         "user modules": _double_user_ensemble}[q_kind]()
    alpha = torch.tensor([0.05, 0.2, 1.0], dtype=torch.float64) if alpha == "per state" else alpha
    obj = PolicyObjective(q, torch.randn(3, 5, dtype=torch.float64), alpha, beta=1.5)
    lam = torch.randn(3, 2, 6, dtype=torch.float64) * 0.5
    eps = obj.noise(16, candidate_noise, torch.Generator().manual_seed(1))
    value, grad = obj.value_and_grad(lam, eps)
    assert torch.equal(value, obj.estimate(lam, eps))
    h = 1e-6
    for k in range(6):
        d = torch.zeros_like(lam)
        d[..., k] = h
        fd = (obj.estimate(lam + d, eps) - obj.estimate(lam - d, eps)) / (2 * h)
        assert torch.allclose(grad[..., k], fd, atol=1e-6)


def test_gradient_is_zero_above_the_log_std_cap_and_finite_everywhere():
    obj = PolicyObjective(QEnsemble(5, 3, hidden=(16,)), torch.randn(2, 5), 0.1)
    lam = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 90.0], [50.0, -50.0, 0.0, -30.0, 85.0, 0.0]]).unsqueeze(1)
    _, grad = obj.value_and_grad(lam, obj.noise(8))
    assert torch.isfinite(grad).all()
    assert grad[0, 0, 5] == 0 and grad[1, 0, 4] == 0 and grad[0, 0, 4] != 0


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


class _Concat(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, s, a):
        return self.net(torch.cat([s, a], -1))


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


@pytest.mark.parametrize("B,P,n", [(37, 11, 10), (3, 1, 700), (300, 1, 7), (100, 11, 10)])
def test_q_evaluated_in_pieces_gives_the_same_bits(B, P, n):
    """The objective evaluates a Q-ensemble in cache-sized pieces (a speed measure, see
    benchmarks/bench_scaling.py); values and gradients must equal the one-piece evaluation."""
    torch.manual_seed(0)
    q = QEnsemble(17, 6)  # frozen by the objective: on oneDNN where it is usable
    g = torch.Generator().manual_seed(1)
    states = torch.randn(B, 17, generator=g)
    lam = 0.5 * torch.randn(B, P, 12, generator=g)
    eps = torch.randn(B, 1, n, 6, generator=g)
    results = []
    for chunk in (None, 2048, 1024, 256):
        obj = PolicyObjective(q, states, 0.05, score_samples=64, q_chunk_pairs=chunk)
        with torch.no_grad():
            out = [obj.estimate(lam, eps), obj.soft_values(lam, eps), obj.score(lam)]
        results.append(out + list(obj.value_and_grad(lam, eps)) + [obj.counts])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0][:-1], other[:-1]))
        assert other[-1] == results[0][-1]
