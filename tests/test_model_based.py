"""Model-based objectives (SPEC §3, issue 5): the Retrace estimate against a hand-unrolled
computation, h = 0 against the model-free objective, gradients against finite differences,
the cost ledger, the suite source, and the models' prediction errors."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from optbench.agents.models import ModelBasedQ, q_evals_per_pair
from optbench.agents.package import PackageError, load_package
from optbench.cli import main
from optbench.objectives.policy_objective import PolicyObjective

PACKAGES = Path(__file__).parents[1] / "suites" / "mujoco-states" / "packages"
HC, HOPPER = PACKAGES / "halfcheetah-direct", PACKAGES / "hopper-direct"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ (a) tiny deterministic model, by hand
# S = 2, A = 2. Two linear Q members, linear dynamics / reward / rollout policy, all weights set here.
W_Q = np.array([[0.5, -0.3], [0.2, 0.4]])  # state weights of Q_1, Q_2
V_Q = np.array([[1.0, -0.5], [0.3, 0.8]])  # action weights
B_Q = np.array([0.1, -0.2])
A_DYN = np.array([[0.9, 0.1], [-0.2, 0.8]])
B_DYN = np.array([[0.5, 0.0], [0.1, -0.3]])
P_REW, Q_REW, C_REW = np.array([0.3, -0.1]), np.array([0.7, 0.2]), 0.05
K_POL, LOGSTD_POL = np.array([[0.4, -0.6], [0.2, 0.3]]), np.array([-0.5, 0.2])
ALPHA, GAMMA, LAM = 0.2, 0.9, 0.8


class TinyQ(nn.Module):
    state_dim, action_dim, ensemble_size = 2, 2, 2

    def forward(self, states, actions):  # [B,S], [B,M,A] -> [2,B,M]
        w, v, b = (torch.as_tensor(x, dtype=states.dtype) for x in (W_Q, V_Q, B_Q))
        return (states @ w.T).T[:, :, None] + torch.einsum("bma,ea->ebm", actions, v) + b[:, None, None]


class TinyDynamics(nn.Module):
    def forward(self, s, a):
        return s @ torch.as_tensor(A_DYN, dtype=s.dtype).T + a @ torch.as_tensor(B_DYN, dtype=s.dtype).T


class TinyReward(nn.Module):
    def forward(self, s, a):
        return s @ torch.as_tensor(P_REW, dtype=s.dtype) + a @ torch.as_tensor(Q_REW, dtype=s.dtype) + C_REW


class TinyPolicy(nn.Module):
    def forward(self, s):
        mu = s @ torch.as_tensor(K_POL, dtype=s.dtype).T
        return torch.cat([mu, torch.as_tensor(LOGSTD_POL, dtype=s.dtype).expand_as(mu)], -1)


def _q_hat(s, a):  # pessimistic Q with β = 1: the min of the two members
    return min(W_Q[e] @ s + V_Q[e] @ a + B_Q[e] for e in range(2))


def _v(s, noise):  # V(s) = mean_j [Q̂(s, a_j) − α (log π(a_j) + |A| log 2)], a_j = tanh(μ + σ ε_j)
    mu, sigma = K_POL @ s, np.exp(LOGSTD_POL)
    vals = []
    for eps in noise:
        u = mu + sigma * eps
        a = np.tanh(u)
        log_pi = np.sum(-0.5 * eps ** 2 - LOGSTD_POL - 0.5 * math.log(2 * math.pi) - np.log(1 - np.tanh(u) ** 2))
        vals.append(_q_hat(s, a) - ALPHA * (log_pi + 2 * math.log(2)))
    return float(np.mean(vals))


def _f(s, a):
    return A_DYN @ s + B_DYN @ a


def _r(s, a):
    return P_REW @ s + Q_REW @ a + C_REW


def _pi(s):
    return np.tanh(K_POL @ s)


def _by_hand(s0, a0, h, noise):
    """SPEC §3 written out term by term: Q̂(s0,a0) + Σ_{k=0}^{h−1} (γλ)^k [r̂_k + γ V(s_{k+1}) − Q̂(s_k, a_k)]."""
    q0 = _q_hat(s0, a0)
    if h == 0:
        return q0
    s1 = _f(s0, a0)
    term0 = _r(s0, a0) + GAMMA * _v(s1, noise) - q0
    if h == 1:
        return q0 + term0
    a1 = _pi(s1)
    s2 = _f(s1, a1)
    term1 = _r(s1, a1) + GAMMA * _v(s2, noise) - _q_hat(s1, a1)
    if h == 2:
        return q0 + term0 + GAMMA * LAM * term1
    a2 = _pi(s2)
    s3 = _f(s2, a2)
    term2 = _r(s2, a2) + GAMMA * _v(s3, noise) - _q_hat(s2, a2)
    assert h == 3
    return q0 + term0 + GAMMA * LAM * term1 + (GAMMA * LAM) ** 2 * term2


@pytest.mark.parametrize("h", [0, 1, 2, 3])
def test_model_based_q_equals_hand_unrolled_retrace(h):
    mb = ModelBasedQ(TinyQ(), TinyDynamics(), TinyReward(), TinyPolicy(), ALPHA, beta=1.0, gamma=GAMMA, lam=LAM,
                     horizon=h, value_samples=3, seed=5).double()
    g = torch.Generator().manual_seed(0)
    states = torch.randn(3, 2, generator=g, dtype=torch.float64)
    actions = torch.rand(3, 4, 2, generator=g, dtype=torch.float64) * 2 - 1  # B = 3 states × M = 4 actions
    out = mb(states, actions)
    assert out.shape == (1, 3, 4) and out.dtype == torch.float64
    noise = mb.value_noise.numpy()
    expected = np.array([[_by_hand(states[b].numpy(), actions[b, m].numpy(), h, noise) for m in range(4)]
                         for b in range(3)])
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-12, atol=1e-12)
    mb.chunk_pairs = 5  # 12 pairs rolled out in pieces of 5, 5, 2 rows: the same values
    np.testing.assert_allclose(mb(states, actions)[0].numpy(), expected, rtol=1e-12, atol=1e-12)
    assert mb.q_evals_per_pair == q_evals_per_pair(h, 3) == (1 if h == 0 else (h - 1) + 3 * h)


def test_bad_model_based_parameters_are_refused():
    for kw, msg in [({"horizon": -1}, "horizon must be an integer >= 0"), ({"horizon": 1.5}, "horizon"),
                    ({"lam": 1.2}, r"lambda must be a number in \[0, 1\]"), ({"lam": -0.1}, "lambda"),
                    ({"value_samples": 0}, "value_samples")]:
        with pytest.raises(ValueError, match=msg):
            ModelBasedQ(TinyQ(), TinyDynamics(), TinyReward(), TinyPolicy(), ALPHA, **kw)
    pkg = load_package(HOPPER)
    with pytest.raises(PackageError, match="horizon"):
        pkg.model_based_objective(horizon=-2)


def test_pieces_give_the_values_and_gradients_of_one_batch():
    pkg = load_package(HOPPER)
    obj = pkg.model_based_objective(n_states=6, score_samples=16, horizon=2, value_samples=4)
    g = torch.Generator().manual_seed(2)
    lam, eps = 0.3 * torch.randn(6, 2, 6, generator=g), obj.noise(50, 1, g)  # 600 pairs
    out = {}
    for chunk in (None, 128):
        obj.q.chunk_pairs = chunk
        out[chunk] = obj.value_and_grad(lam, eps)
    torch.testing.assert_close(out[128][0], out[None][0], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out[128][1], out[None][1], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ (b) h = 0 is the model-free objective
@pytest.mark.parametrize("P,n", [(3, 10), (2, 300)])  # 150 pairs (one piece) and 3000 pairs (pieced model-free Q)
def test_horizon_zero_equals_model_free_objective(P, n):
    pkg = load_package(HC)
    mf = pkg.objective(n_states=5, score_samples=64, score_seed=3)
    mb = pkg.model_based_objective(n_states=5, score_samples=64, score_seed=3, horizon=0)
    assert torch.equal(mf.states, mb.states) and torch.equal(mf.score_noise, mb.score_noise)
    g = torch.Generator().manual_seed(1)
    lam = 0.5 * torch.randn(5, P, 12, generator=g)
    eps = mf.noise(n, 1, g)
    with torch.no_grad():
        assert torch.equal(mf.soft_values(lam, eps), mb.soft_values(lam, eps))
    assert torch.equal(mf.score(lam), mb.score(lam))
    assert torch.equal(mf.score(lam[:, 0]), mb.score(lam[:, 0]))
    v_mf, g_mf = mf.value_and_grad(lam, eps)
    v_mb, g_mb = mb.value_and_grad(lam, eps)
    assert torch.equal(v_mf, v_mb) and torch.equal(g_mf, g_mb)
    assert mf.counts == mb.counts  # one Q-evaluation per pair, as model-free


def test_model_based_objective_differs_from_model_free_and_grows_cost_with_horizon():
    pkg = load_package(HC)
    mf = pkg.objective(n_states=4, score_samples=32)
    lam = mf.initial_params()
    scores = {h: pkg.model_based_objective(n_states=4, score_samples=32, horizon=h).score(lam) for h in (0, 1, 2, 5)}
    assert torch.equal(scores[0], mf.score(lam))
    for h in (1, 2, 5):  # the models change the values, but not wildly (same task, same Q)
        diff = (scores[h] - scores[0]).abs()
        assert diff.max() > 1e-3 and diff.max() < 0.5 * scores[0].abs().max(), (h, scores[h], scores[0])


# ------------------------------------------------------------------ (c) gradients vs finite differences
def _float64_model_based(pkg, horizon: int, n_states: int) -> PolicyObjective:
    q, dyn, rew, pol = (copy.deepcopy(m).double() for m in (pkg.q, pkg.dynamics, pkg.reward, pkg.direct))
    mb = ModelBasedQ(q, dyn, rew, pol, pkg.alpha, gamma=float(pkg.meta["gamma"]), lam=0.9, horizon=horizon).double()
    return PolicyObjective(mb, pkg.states["benchmark"][:n_states].double(), pkg.alpha, score_samples=8)


def test_gradient_wrt_policy_params_matches_finite_differences():
    pkg = load_package(HC)
    obj = _float64_model_based(pkg, horizon=2, n_states=2)
    g = torch.Generator().manual_seed(4)
    lam = torch.cat([0.4 * torch.randn(2, 1, 6, generator=g, dtype=torch.float64),
                     -0.5 + 0.2 * torch.randn(2, 1, 6, generator=g, dtype=torch.float64)], -1)
    eps = obj.noise(4, 1, g)
    value, grad = obj.value_and_grad(lam, eps)
    assert grad.shape == lam.shape and grad.abs().max() > 1e-2
    step = 1e-6
    fd = torch.zeros_like(lam)
    with torch.no_grad():
        for i in range(lam.shape[-1]):
            d = torch.zeros_like(lam)
            d[..., i] = step
            fd[..., i] = (obj.estimate(lam + d, eps) - obj.estimate(lam - d, eps)) / (2 * step)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-7)  # measured: 5e-8 abs, 1e-7 rel
    # the model path matters: the model-free gradient at the same point is a different vector
    mf = PolicyObjective(obj.q.q, obj.states, pkg.alpha, score_samples=8)
    assert (mf.value_and_grad(lam, eps)[1] - grad).abs().max() > 1e-2


# ------------------------------------------------------------------ (d) the ledger
class CountingQ(nn.Module):
    """Counts the (s, a) pairs every call evaluates (per ensemble member, as the ledger does)."""

    def __init__(self, q):
        super().__init__()
        self.inner, self.pairs = q, 0
        self.state_dim, self.action_dim, self.ensemble_size = q.state_dim, q.action_dim, q.ensemble_size

    def forward(self, states, actions):
        self.pairs += actions.shape[0] * actions.shape[1]
        return self.inner(states, actions)


@pytest.mark.parametrize("h", [0, 1, 2, 3])
def test_ledger_counts_every_q_evaluation(h):
    from optbench.optimizers import make_optimizer
    from optbench.runner.drive import run_optimizer

    pkg = load_package(HOPPER)
    counter = CountingQ(pkg.q)
    pkg.q = counter
    obj = pkg.model_based_objective(n_states=3, score_samples=16, horizon=h, value_samples=5)
    per_pair = obj.q.q_evals_per_pair
    assert per_pair == q_evals_per_pair(h, 5) and obj.pair_cost == per_pair
    g = torch.Generator().manual_seed(0)
    lam = torch.randn(3, 2, 6, generator=g) * 0.3
    eps = obj.noise(7, 1, g)
    counter.pairs = 0
    with torch.no_grad():
        obj.estimate(lam, eps)
    assert obj.counts.q_evals == counter.pairs == 3 * 2 * 7 * per_pair
    obj.value_and_grad(lam, eps)
    assert obj.counts.q_evals == counter.pairs == 2 * 3 * 2 * 7 * per_pair
    assert obj.counts.grad_evals == 3 * 2 * 7 * per_pair
    before = counter.pairs
    obj.score(lam)  # scoring is never counted
    assert obj.counts.q_evals == before and counter.pairs > before
    trace = run_optimizer(make_optimizer("adam(samples=4)"), obj, 3, seed=0)
    assert trace.q_evals == [3 * 4 * per_pair] * 3 and trace.grad_evals == trace.q_evals


def test_scipy_ledger_uses_the_objective_counts():
    from optbench.optimizers import make_optimizer
    from optbench.runner.drive import run_optimizer

    pkg = load_package(HOPPER)
    obj = pkg.model_based_objective(n_states=2, score_samples=16, horizon=2, value_samples=3)
    trace = run_optimizer(make_optimizer("scipy:L-BFGS-B(samples=4)"), obj, 2, seed=0)
    assert sum(trace.q_evals) == obj.counts.q_evals and sum(trace.q_evals) % (4 * q_evals_per_pair(2, 3)) == 0


# ------------------------------------------------------------------ (e) packages without models
def _package_without_models(tmp_path: Path) -> Path:
    dst = tmp_path / "hopper-no-models"
    shutil.copytree(HOPPER, dst)
    (dst / "models.safetensors").unlink()
    doc = json.loads((dst / "package.json").read_text())
    del doc["files"]["models.safetensors"], doc["architectures"]["dynamics"], doc["architectures"]["reward"]
    (dst / "package.json").write_text(json.dumps(doc))
    return dst


def test_package_without_models_gives_clear_error(tmp_path):
    pkg = load_package(_package_without_models(tmp_path))
    assert pkg.dynamics is None and pkg.objective(n_states=2) is not None  # the model-free objective still works
    with pytest.raises(PackageError, match="has no dynamics model / reward model: a model-based objective needs"):
        pkg.model_based_objective()
    pkg = load_package(HOPPER)
    pkg.direct = None
    with pytest.raises(PackageError, match="no direct rollout network"):
        pkg.model_based_objective()


# ------------------------------------------------------------------ suite source through `optbench run`
def _suite(tmp_path: Path, objectives: str) -> Path:
    path = tmp_path / "suite" / "suite.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'''name = "mb-tiny"
optimizers = ["adam"]

[settings]
states = 4
iterations = 3
score_samples = 32

{objectives}''')
    return path


def test_model_based_source_through_optbench_run(tmp_path, capsys):
    suite = _suite(tmp_path, f'''
[[objectives]]
name = "hc-mf"
source = "package"
package = "{HC}"

[[objectives]]
name = "hc-mb-h0"
source = "package-model-based"
package = "{HC}"
horizon = 0
lam = 0.9

[[objectives]]
name = "hc-mb-h2"
source = "package-model-based"
package = "{HC}"
horizon = 2
lam = 0.9
value_samples = 4
''')
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-plots"]) == 0
    stdout = capsys.readouterr().out
    assert "hc-mb-h2" in stdout and "hc-mb-h0" in stdout
    recs = {p.stem: json.loads(p.read_text()) for p in (out / "objectives").glob("*.json")}
    recs = {r["name"]: r for r in recs.values()}
    info = recs["hc-mb-h2"]["info"]
    assert info["horizon"] == 2 and info["lam"] == 0.9 and info["value_samples"] == 4 and info["model_based"]
    assert info["q_evals_per_pair"] == q_evals_per_pair(2, 4) == 9
    assert recs["hc-mb-h0"]["start_scores"] == recs["hc-mf"]["start_scores"]  # h = 0 is the model-free objective
    assert recs["hc-mb-h2"]["start_scores"] != recs["hc-mf"]["start_scores"]
    cells = {p.name: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    mb_cell = next(c for n, c in cells.items() if n.startswith("hc-mb-h2"))
    mf_cell = next(c for n, c in cells.items() if n.startswith("hc-mf"))
    assert mb_cell["q_evals"] == [4 * 10 * 9] * 3 and mf_cell["q_evals"] == [4 * 10] * 3  # adam: 10 samples


@pytest.mark.parametrize("fields,message", [
    ("horizon = -1\nlam = 0.9", "horizon must be an integer >= 0"),
    ("horizon = 2\nlam = 1.5", "lambda must be a number in [0, 1]"),
    ("horizon = 2.5\nlam = 0.9", "horizon must be an integer"),
    ("lam = 0.9", "missing field(s) ['horizon']"),
    ("horizon = 2\nlam = 0.9\nwindow = 3", "unknown field(s) ['window']"),
])
def test_model_based_source_bad_fields_one_line_error(tmp_path, capsys, fields, message):
    suite = _suite(tmp_path, f'''
[[objectives]]
name = "bad"
source = "package-model-based"
package = "{HOPPER}"
{fields}
''')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_model_based_source_on_package_without_models(tmp_path, capsys):
    pkg = _package_without_models(tmp_path)
    suite = _suite(tmp_path, f'''
[[objectives]]
name = "nomodels"
source = "package-model-based"
package = "{pkg}"
horizon = 2
lam = 0.9
''')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "no dynamics model" in err and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------ model prediction errors
def test_model_errors_on_held_out_episode():
    from optbench.agents.model_error import model_errors

    rep = model_errors(HOPPER, episodes=1, horizons=(1, 2, 5), max_steps=80)
    assert rep.task == "Hopper-v5" and rep.transitions == 80 and [h.horizon for h in rep.horizons] == [1, 2, 5]
    assert [h.starts for h in rep.horizons] == [80, 79, 76]
    for h in rep.horizons:
        for name in ("state_rmse", "state_nrmse", "state_nrmse_worst", "persistence_nrmse", "reward_rmse",
                     "reward_rel", "reward_nrmse"):
            v = getattr(h, name)
            assert math.isfinite(v) and v > 0, (h.horizon, name, v)
        assert h.state_nrmse <= h.state_nrmse_worst
    one, two, five = rep.horizons
    assert one.state_nrmse < two.state_nrmse < five.state_nrmse  # open-loop error grows with the horizon
    assert one.reward_rmse < five.reward_rmse
    # a trained model beats predicting "no change" and the per-dimension mean at one step
    assert one.state_nrmse < 0.5 * one.persistence_nrmse and one.state_nrmse < 0.5
    assert one.reward_rel < 0.2


def test_model_error_cli(tmp_path, capsys):
    out = tmp_path / "me.json"
    assert main(["model-error", str(HC), "--episodes", "1", "--max-steps", "30", "--horizons", "1,3",
                 "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "HalfCheetah-v5-direct-s0" in stdout and "state nRMSE" in stdout
    doc = json.loads(out.read_text())
    assert doc["transitions"] == 30 and [h["horizon"] for h in doc["horizons"]] == [1, 3]
    assert main(["model-error", str(HC), "--horizons", "1,two"]) == 2
    assert main(["model-error", str(HC), "--horizons", "0"]) == 2
    assert main(["model-error", str(_package_without_models(tmp_path))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "--horizons must be comma-separated integers" in err[0], err
    assert "horizons must be integers >= 1" in err[1] and "has no dynamics/reward models" in err[2], err
