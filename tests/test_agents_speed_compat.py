"""The optimized SAC update computes what the reference formulation computes, and checkpoints
written by earlier code resume with the current code.

Fixtures in ``tests/data/sac_compat/`` (InvertedPendulum-v5, 260 steps, 200 random, batch 16,
2×16 networks, models on, iterative K = 2, n = 2; a few kB each) were written by the code of
two earlier commits with the Python API::

    git archive <commit> optbench | tar -x -C /tmp/old-<commit>
    PYTHONPATH=/tmp/old-<commit> python -c "from optbench.agents.sac import SACConfig; \\
        from optbench.agents.trainer import Trainer; [Trainer(SACConfig(task='InvertedPendulum-v5', \\
        policy=p, steps=260, seed=5, random_steps=200, batch_size=16, hidden=(16, 16), \\
        model_pretrain_updates=5, iterations=2, grad_samples=2, checkpoint_every=10**6, \\
        eval_every=10**6, log_every=100, buffer_size=1000), f'out/{p}', progress=False).train() \\
        for p in ('direct', 'iterative')]"

* ``775affe``: the trainer's first version (Adam with ``foreach=True``), the format of the
  long training runs started with it;
* ``8127be5``: the code just before the update was optimized (fused Adam).

The reference update below is the update of ``8127be5`` written out with plain module calls
(``QEnsemble.forward``/``pairs``, ``nn.Sequential`` trunks, one ``Adam.step()`` per optimizer,
the temperature loss through autograd). No test here measures time.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.backends import onednn
from optbench.agents.checkpoint import load_checkpoint
from optbench.agents.models import HALF_LOG_2PI
from optbench.optimizers.networks import DirectActor, gated_update, soft_clamp
from optbench.agents.sac import AdamSteps, SACAgent, SACConfig, gaussian_kl, soft_value, td_target
from optbench.agents.trainer import Trainer, agent_from_checkpoint
from optbench.objectives.distributions import sample_tanh_gaussian, split_params
from optbench.objectives.q_functions import QEnsemble

DATA = Path(__file__).parent / "data" / "sac_compat"
FIXTURES = sorted(DATA.glob("*.safetensors"))
TASK = "InvertedPendulum-v5"


# ---------------------------------------------------------------------------- the reference update
def _plain_q(q: QEnsemble, states, actions):
    """``[E, B, M]`` values of a :class:`QEnsemble` written out member by member with plain
    products (no oneDNN, no split first layer, no closed-form last layer)."""
    B, M, _ = actions.shape
    x = torch.cat([states.unsqueeze(1).expand(B, M, -1), actions], -1)
    out = []
    for e in range(q.ensemble_size):
        h = x
        for k, (W, b) in enumerate(zip(q.weights, q.biases)):
            h = h @ W[e] + b[e, 0]
            if k < len(q.weights) - 1:
                h = torch.relu(h)
        out.append(h[..., 0])
    return torch.stack(out)


def _plain_pairs(q: QEnsemble, states, actions):
    return _plain_q(q, states, actions.unsqueeze(1)).squeeze(-1)


def _ref_gaussian_nll(m, x, target):
    mean = m.net(x)
    log_std = m.log_std.clamp(-10.0, 5.0)
    z = (target - mean) * torch.exp(-log_std)
    return (0.5 * z.pow(2) + log_std + HALF_LOG_2PI).sum(-1).mean()


def _ref_direct_actor(actor, states):
    mu, log_std = split_params(actor.head(actor.trunk(states)))
    return torch.cat([mu, soft_clamp(log_std)], -1)


def _ref_iterative_step(net, states, lam, grad):
    h = net.trunk(net.features(states, lam, grad))
    return gated_update(lam.detach(), net.update_head(h), torch.sigmoid(net.gate_head(h)))


def _ref_value_and_grad(agent, states, lam, beta, n):
    with torch.enable_grad():
        lam = lam.detach().requires_grad_(True)
        mu, log_std = split_params(lam.unsqueeze(1))
        eps = torch.randn(len(lam), n, agent.action_dim)
        actions, log_prob = sample_tanh_gaussian(mu, log_std, eps)
        q = _plain_q(agent.q_target, states, actions)
        value = soft_value(q, log_prob, agent.alpha, beta, agent.action_dim).mean(-1)
        (grad,) = torch.autograd.grad(value.sum(), lam)
    return value.detach(), grad


def _ref_iterate(agent, states, beta):
    K, n, net = agent.cfg.iterations, agent.cfg.grad_samples, agent.actor
    lam = net.initial_params(len(states))
    value, grad = _ref_value_and_grad(agent, states, lam, beta, n)
    outs, out_grads, curve = [], [], []
    for _ in range(K):
        new = _ref_iterative_step(net, states, lam, grad)
        value, grad = _ref_value_and_grad(agent, states, new, beta, n)
        curve.append(float(value.mean()))
        outs.append(new)
        out_grads.append(grad / (-K * len(states)))
        lam = new.detach()
    torch.autograd.backward(outs, out_grads)
    return lam, value, curve


def reference_update(agent: SACAgent, batch) -> dict:
    """The update of commit 8127be5, step by step."""
    cfg, A = agent.cfg, agent.action_dim
    obs, act, rew, next_obs, term = batch
    alpha = agent.alpha
    out = {"alpha": float(alpha)}
    B = len(obs)
    if cfg.policy == "direct":
        with torch.no_grad():
            mu, log_std = split_params(_ref_direct_actor(agent.actor, next_obs))
            a_next, logp_next = sample_tanh_gaussian(mu, log_std, torch.randn_like(mu))
            v_next = soft_value(_plain_pairs(agent.q_target, next_obs, a_next), logp_next, alpha, cfg.beta_train, A)
    else:
        opt = agent.optimizers["actor"]
        opt.zero_grad(set_to_none=True)
        lam_both, j_both, curve = _ref_iterate(agent, torch.cat([obs, next_obs]), cfg.beta_train)
        opt.step()
        v_next, lam_obs = j_both[B:], lam_both[:B]
        out["actor_loss"] = -sum(curve) / len(curve)
    with torch.no_grad():
        y = td_target(rew, term, v_next, cfg.gamma)
    q_loss = 0.5 * (_plain_pairs(agent.q, obs, act) - y).pow(2).mean(1).sum()
    opt = agent.optimizers["q"]
    opt.zero_grad(set_to_none=True)
    q_loss.backward()
    opt.step()
    out["q_loss"] = float(q_loss.detach())
    if cfg.policy == "direct":
        lam_obs = _ref_direct_actor(agent.actor, obs)
        mu, log_std = split_params(lam_obs)
        a, logp = sample_tanh_gaussian(mu, log_std, torch.randn_like(mu))
        actor_loss = -soft_value(_plain_pairs(agent.q, obs, a), logp, alpha, cfg.beta_train, A).mean()
        opt = agent.optimizers["actor"]
        opt.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=list(agent.actor.parameters()))
        opt.step()
        out["actor_loss"] = float(actor_loss.detach())
        logp = logp.detach()
    else:
        with torch.no_grad():
            mu, log_std = split_params(lam_obs)
            _, logp = sample_tanh_gaussian(mu, log_std, torch.randn_like(mu))
    alpha_loss = -(agent.log_alpha * (logp + agent.target_entropy)).mean()
    opt = agent.optimizers["alpha"]
    opt.zero_grad(set_to_none=True)
    alpha_loss.backward()
    opt.step()
    out["alpha_loss"], out["entropy"] = float(alpha_loss.detach()), float(-logp.mean())
    if agent.distilled is not None:
        kl = gaussian_kl(lam_obs.detach(), _ref_direct_actor(agent.distilled, obs)).mean()
        opt = agent.optimizers["distilled"]
        opt.zero_grad(set_to_none=True)
        kl.backward()
        opt.step()
        out["distill_loss"] = float(kl.detach())
    if cfg.models:
        x = torch.cat([obs, act], -1)
        loss = (_ref_gaussian_nll(agent.dynamics.delta, x, next_obs - obs)
                + _ref_gaussian_nll(agent.reward.mean, x, rew.unsqueeze(-1)))
        opt = agent.optimizers["models"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        agent.model_updates += 1
        out["model_loss"] = float(loss.detach())
    with torch.no_grad():
        torch._foreach_lerp_(list(agent.q_target.parameters()), list(agent.q.parameters()), cfg.tau)
    agent.updates += 1
    return out


def assert_same_state(a: SACAgent, b: SACAgent, rtol: float, atol: float) -> None:
    ta, ma = a.state_tensors()
    tb, mb = b.state_tensors()
    assert ta.keys() == tb.keys() and ma["updates"] == mb["updates"]
    for k in ta:
        assert torch.allclose(ta[k].float(), tb[k].float(), rtol=rtol, atol=atol), \
            (k, (ta[k].float() - tb[k].float()).abs().max().item())


def _batch(S, A, B=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, S, generator=g), torch.rand(B, A, generator=g) * 2 - 1, torch.randn(B, generator=g),
            torch.randn(B, S, generator=g), (torch.rand(B, generator=g) < 0.1).float())


def _stats_close(fast, ref: dict) -> None:
    for k, v in ref.items():
        assert getattr(fast, k) == pytest.approx(v, rel=1e-5, abs=1e-6), k


# ---------------------------------------------------------------------------- optimized == reference
@pytest.mark.parametrize("use_onednn", [True, False], ids=["onednn", "plain"])
@pytest.mark.parametrize("policy,models", [("direct", False), ("direct", True), ("iterative", True),
                                           ("iterative", False)])
def test_optimized_update_equals_reference_from_scratch(policy, models, use_onednn, monkeypatch):
    """Three updates from a fresh agent (the first creates the Adam states): same losses,
    parameters and optimizer states as the reference, up to float summation order; with the
    products on oneDNN (where this torch has it) and with torch's default products."""
    if use_onednn and not onednn.usable(torch.zeros(1)):
        pytest.skip("no oneDNN linear kernel in this torch")
    monkeypatch.setattr(onednn, "ENABLED", use_onednn)
    torch.manual_seed(0)
    cfg = SACConfig(task="Toy-v0", policy=policy, models=models, hidden=(32, 32), iterations=2, grad_samples=2)
    fast = SACAgent(cfg, 5, 3)
    ref = copy.deepcopy(fast)
    for i in range(3):
        batch = _batch(5, 3, seed=i)
        torch.manual_seed(100 + i)
        s_fast = fast.update(batch)
        rng_fast = torch.get_rng_state()
        torch.manual_seed(100 + i)
        s_ref = reference_update(ref, batch)
        assert torch.equal(rng_fast, torch.get_rng_state())  # the same random draws
        _stats_close(s_fast, s_ref)
        assert_same_state(fast, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_update_from_old_checkpoint_equals_reference(fixture):
    """From an earlier code's checkpoint (networks, Adam moments and step counts of a run that
    has been updating): the optimized update equals the reference. Checkpoints of the foreach
    era continue with the fused Adam kernel (the same Adam, rounded differently), compared
    here with the foreach step of the reference."""
    tensors, meta = load_checkpoint(fixture)
    assert meta["agent"]["updates"] > 0
    fast = agent_from_checkpoint(tensors, meta)
    ref = agent_from_checkpoint(tensors, meta)
    foreach_era = any(g.get("foreach") for m in meta["agent"]["optimizers"].values() for g in m["param_groups"])
    for opt in fast.optimizers.values():  # the current code continues with fused groups
        assert all(g["fused"] for g in opt.param_groups)
    if foreach_era:  # the reference continues as the code that wrote the checkpoint would have
        for opt in ref.optimizers.values():
            for g in opt.param_groups:
                g["fused"], g["foreach"] = None, True
    rng = np.random.default_rng(0)
    from optbench.agents.replay import ReplayBuffer

    replay = ReplayBuffer(fast.state_dim, fast.action_dim, 1000)
    replay.load_state(tensors, meta["replay"])
    tol = dict(rtol=1e-5, atol=1e-7)
    for i in range(2):
        batch = replay.sample(fast.cfg.batch_size, rng)
        torch.manual_seed(7 + i)
        s_fast = fast.update(batch)
        torch.manual_seed(7 + i)
        s_ref = reference_update(ref, batch)
        _stats_close(s_fast, s_ref)
        assert_same_state(fast, ref, **tol)


# ---------------------------------------------------------------------------- resume with the new code
@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_old_checkpoint_resumes_with_current_trainer(fixture, tmp_path):
    tensors, meta = load_checkpoint(fixture)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(fixture, out / "checkpoint.safetensors")
    old_cfg = SACConfig.from_dict(meta["config"])
    cfg = SACConfig.from_dict({**meta["config"], "steps": meta["step"] + 40})
    trainer = Trainer(cfg, out, progress=False, echo=lambda *a: None)
    agent = trainer.agent
    assert trainer.resumed_from == meta["step"] and len(trainer.replay) == meta["replay"]["size"]
    assert agent.updates == meta["agent"]["updates"] and agent.model_updates == meta["agent"]["model_updates"]
    assert torch.equal(torch.get_rng_state(), tensors["rng/torch"])
    # networks (same parameter names) and optimizer moments restored exactly
    now, _ = agent.state_tensors()
    for k, v in tensors.items():
        if k.startswith(("net/", "optim/")) and not k.endswith("/step"):
            assert torch.equal(now[k], v), k
    assert agent.cfg.hidden == old_cfg.hidden and agent.cfg.lr == old_cfg.lr and agent.cfg.tau == old_cfg.tau
    before = {k: v.clone() for k, v in now.items() if k.startswith("net/")}
    trainer.train()
    assert trainer.step == meta["step"] + 40 and agent.updates == meta["agent"]["updates"] + 40
    after, after_meta = agent.state_tensors()
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    assert not torch.equal(after["net/q/weights.1"], before["net/q/weights.1"])
    # and the new checkpoint loads again
    tensors2, meta2 = load_checkpoint(out)
    assert meta2["step"] == meta["step"] + 40
    agent_from_checkpoint(tensors2, meta2)


# ---------------------------------------------------------------------------- building blocks
def test_fused_adam_steps_equal_torch_adam_and_follow_load_state_dict():
    torch.manual_seed(0)
    params_a = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
    params_b = [torch.nn.Parameter(torch.randn(3))]
    mirror_a = [torch.nn.Parameter(p.detach().clone()) for p in params_a]
    mirror_b = [torch.nn.Parameter(p.detach().clone()) for p in params_b]
    opts = [torch.optim.Adam(params_a, lr=1e-2, fused=True), torch.optim.Adam(params_b, lr=1e-2, fused=True)]
    mirror_opts = [torch.optim.Adam(mirror_a, lr=1e-2, fused=True), torch.optim.Adam(mirror_b, lr=1e-2, fused=True)]
    steps = AdamSteps(opts)
    for i in range(6):
        for p, m in zip(params_a + params_b, mirror_a + mirror_b):
            g = torch.randn_like(p)
            p.grad, m.grad = g.clone(), g.clone()
        steps.step()
        for o in mirror_opts:
            o.step()
        for p, m in zip(params_a + params_b, mirror_a + mirror_b):
            assert torch.equal(p, m)
        if i == 2:  # replace the optimizer state (as a checkpoint load does): the cache must follow
            sd = copy.deepcopy(mirror_opts[0].state_dict())
            opts[0].load_state_dict(sd)
            mirror_opts[0].load_state_dict(copy.deepcopy(sd))
    assert all(float(opts[0].state[p]["step"]) == 6 for p in params_a)
    # a parameter without gradient: falls back to the optimizers' own step (which skips it)
    params_a[1].grad = None
    params_a[0].grad = torch.ones_like(params_a[0])
    steps.step()
    assert float(opts[0].state[params_a[0]]["step"]) == 7 and float(opts[0].state[params_a[1]]["step"]) == 6


def test_update_without_the_fused_kernel_falls_back_to_adam_step(monkeypatch):
    """Where the fused kernel cannot be called, every step is the optimizers' own ``step()``."""
    monkeypatch.setattr(AdamSteps, "_kernel_ok", False)
    torch.manual_seed(0)
    fast = SACAgent(SACConfig(task="Toy-v0", policy="direct", models=True, hidden=(16, 16)), 5, 3)
    ref = copy.deepcopy(fast)
    for i in range(2):
        batch = _batch(5, 3, seed=i)
        torch.manual_seed(i)
        fast.update(batch)
        torch.manual_seed(i)
        reference_update(ref, batch)
    assert_same_state(fast, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("use_onednn", [False, True])
def test_q_ensemble_pairs_equal_plain_products(use_onednn, monkeypatch):
    """:meth:`QEnsemble.pairs` (oneDNN's path where it is usable, and the batched fallback) and
    its gradients against the members written out with plain products; ``frozen`` gives the
    parameters no gradient."""
    monkeypatch.setattr(onednn, "ENABLED", use_onednn)
    torch.manual_seed(0)
    q = QEnsemble(5, 3, (16, 16), 2)
    s = torch.randn(9, 5)
    a = (torch.rand(9, 3) * 2 - 1).requires_grad_(True)
    a_ref = a.detach().clone().requires_grad_(True)
    out, ref = q.pairs(s, a), _plain_pairs(q, s, a_ref)
    assert out.shape == ref.shape == (2, 9)
    assert torch.allclose(out, ref, atol=1e-6)
    w = torch.randn_like(ref)
    g = torch.autograd.grad((out * w).sum(), [a, *q.parameters()])
    g_ref = torch.autograd.grad((ref * w).sum(), [a_ref, *q.parameters()])
    for x, y in zip(g, g_ref):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-5)
    frozen = q.pairs(s, a, frozen=True)
    assert all(gp is None for gp in torch.autograd.grad(frozen.sum(), [a, *q.parameters()], allow_unused=True)[1:])


# ---------------------------------------------------------------------------- oneDNN products
@pytest.mark.parametrize("grads", ["params", "input", "both"])
def test_onednn_ensemble_and_linear_stack_equal_plain_layers(grads):
    """Values and every requested gradient of :func:`onednn.ensemble_mlp` (the critic) and
    :func:`onednn.linear_stack` (the actor) against the modules' own forward passes; no
    gradient where none is requested (``frozen``: the parameters get none)."""
    if not onednn.usable(torch.zeros(1)):
        pytest.skip("no oneDNN linear kernel in this torch")
    torch.manual_seed(0)
    q = QEnsemble(5, 3, (16, 24), 3)
    actor = DirectActor(5, 3, (16, 24))
    s, a = torch.randn(33, 5), torch.rand(33, 3) * 2 - 1
    frozen = grads == "input"
    x = torch.cat([s, a], -1).requires_grad_(grads != "params")
    x_ref = x.detach().clone().requires_grad_(grads != "params")
    for net, out, ref in (
            (q, onednn.ensemble_mlp(x, list(q.weights), list(q.biases), frozen=frozen),
             _plain_pairs(q, x_ref[:, :5], x_ref[:, 5:])),
            (actor, onednn.linear_stack(x[:, :5], [*actor.trunk[0::2], actor.head], [True, True, False]),
             actor.head(actor.trunk(x_ref[:, :5])))):
        assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-6)
        w = torch.randn_like(ref)
        params = list(net.parameters())
        wanted = ([x] if grads != "params" else []) + (params if grads != "input" else [])
        wanted_ref = ([x_ref] if grads != "params" else []) + (params if grads != "input" else [])
        g = torch.autograd.grad((out * w).sum(), wanted, allow_unused=True)
        g_ref = torch.autograd.grad((ref * w).sum(), wanted_ref)
        for u, v in zip(g, g_ref):
            assert u is not None and u.shape == v.shape and torch.allclose(u, v, atol=1e-5, rtol=1e-5)
    if frozen:  # no graph to the critic's parameters at all
        out = onednn.ensemble_mlp(x, list(q.weights), list(q.biases), frozen=True)
        assert all(gp is None for gp in torch.autograd.grad(out.sum(), list(q.parameters()), allow_unused=True))
    with torch.no_grad():  # the no-graph path
        assert torch.allclose(onednn.ensemble_mlp(x, list(q.weights), list(q.biases)),
                              _plain_pairs(q, x[:, :5], x[:, 5:]), atol=1e-6)
    assert not onednn.usable(torch.zeros(1, dtype=torch.float64))
