"""Soft actor-critic with a direct or an iterative amortized policy (SPEC §3; seed 000 App. A.4).

One file, top to bottom: the configuration (:class:`SACConfig`, defaults = seed 000 Table 6),
the agent (:class:`SACAgent`: networks, optimizers, :meth:`SACAgent.update`,
:meth:`SACAgent.act`), and its (de)serialization to plain tensors.

Objective of the policy at a state (KL to the uniform prior on ``[-1, 1]^A``)::

    J(λ; s) = E_{a~π_λ}[ Q̂(s, a) ] − α (E[log π_λ(a)] + |A| log 2),   Q̂ = mean_E Q − β std_E Q

Critic targets (bootstrapping through truncation, not termination)::

    y = r + γ (1 − terminated) V(s'),   V(s') = J(λ(s'); s') under the target ensemble, β = β_train

* direct: ``λ = f_φ(s)``; actor loss ``−J`` through the current ensemble (1 sample, β_train = 1),
  target ``V`` from one sample.
* iterative: ``λ_0 = (0, log 1)``, ``λ_{k+1} = f_φ(s, λ_k, ∇_λ J(λ_k))`` for ``K`` iterations.
  ``J`` and ``∇_λ J`` come from ``grad_samples`` reparameterized samples through the **target**
  ensemble (frozen: only ``λ`` is differentiated, no gradient reaches any Q). The optimizer is
  trained on ``−mean_k J(λ_k)`` with truncated backprop (inputs detached between
  iterations), on the batch's states and next states together (one unroll of ``2B`` states);
  the last iterate's ``J`` at the next states is the target ``V`` (β_train). Acting runs the
  same ``K`` iterations with β_act = 1.
* α is tuned so that ``E[−log π] ≈ −|A|`` (target entropy ``−|A|``).

Measured update costs and the choice of ``grad_samples`` are in :data:`GRAD_SAMPLES_NOTE`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import Tensor

from optbench.agents.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from optbench.agents.models import DynamicsModel, RewardModel, model_loss
from optbench.optimizers.networks import DirectActor, IterativeOptimizerNet
from optbench.objectives.distributions import LOG2, sample_tanh_gaussian, split_params
from optbench.objectives.policy_objective import soft_value_and_grad
from optbench.objectives.q_functions import QEnsemble, pessimistic_value
from optbench.optimizers.unroll import Unroll

GRAD_SAMPLES_NOTE = """Choice of the iterative optimizer's gradient samples ``n`` (``grad_samples``).

An iterative update unrolls K = 5 iterations on 2B = 512 states (batch states, whose J
trains the network, and next states, whose final J is the target V), each needing a forward
and input-gradient pass of the target ensemble on 512·n pairs, so its cost grows about
linearly in n. With the paper's n = 10 one update costs about twenty direct updates, which a
2-core machine cannot afford for agents of several hundred thousand steps; n = 2 was the
largest n within a budget of about six direct updates when this default was set, and halves
the gradient-input variance of n = 1. ``python benchmarks/bench_sac_vs_sb3.py --speed
--grad-samples N`` measures the update and the training step at any n (the figures of the
default are in ``benchmarks/results/sac_vs_sb3.json``); ``--grad-samples 10`` reproduces the
paper's setting where compute allows."""
DEFAULT_GRAD_SAMPLES = 2


@dataclass
class SACConfig:
    """Training hyperparameters (defaults: seed 000 Table 6 / SPEC §3)."""

    task: str = "HalfCheetah-v5"
    policy: str = "direct"  # direct | iterative
    steps: int = 1_000_000
    seed: int = 0
    gamma: float = 0.99
    tau: float = 5e-3
    lr: float = 3e-4
    batch_size: int = 256
    buffer_size: int = 1_000_000
    random_steps: int = 5000
    hidden: tuple[int, ...] = (256, 256)
    ensemble_size: int = 2
    beta_train: float | None = None  # None: 1 (direct), 1.5 (iterative, Hopper), 2.5 (iterative, others)
    beta_act: float = 1.0
    iterations: int = 5  # K, iterative only
    grad_samples: int = DEFAULT_GRAD_SAMPLES  # n, iterative only
    init_std: float = 1.0  # iterative λ_0: μ = 0, σ = init_std
    init_log_alpha: float = 0.0
    models: bool = True
    model_pretrain_updates: int = 1000
    checkpoint_every: int = 10_000
    eval_every: int = 10_000
    eval_episodes: int = 5
    log_every: int = 1000

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.policy not in ("direct", "iterative"):
            raise ValueError(f"unknown policy {self.policy!r} (direct or iterative)")
        if self.beta_train is None:
            if self.policy == "direct":
                self.beta_train = 1.0
            else:
                self.beta_train = 1.5 if self.task.split("-")[0] == "Hopper" else 2.5
        for name in ("steps", "batch_size", "buffer_size", "iterations", "grad_samples", "ensemble_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SACConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def gaussian_kl(lam_p: Tensor, lam_q: Tensor) -> Tensor:
    """``KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²))`` summed over dims (= KL of the tanh-squashed policies)."""
    mu_p, ls_p = split_params(lam_p)
    mu_q, ls_q = split_params(lam_q)
    return (ls_q - ls_p + (torch.exp(2 * ls_p) + (mu_p - mu_q).pow(2)) * (0.5 * torch.exp(-2 * ls_q)) - 0.5).sum(-1)


def soft_value(q: Tensor, log_prob: Tensor, alpha: Tensor | float, beta: float, action_dim: int) -> Tensor:
    """Per-sample soft value ``Q̂ − α (log π + |A| log 2)`` with ``Q̂ = mean − β std`` over dim 0 of ``q``."""
    return pessimistic_value(q, beta) - alpha * (log_prob + action_dim * LOG2)


def td_target(reward: Tensor, terminated: Tensor, v_next: Tensor, gamma: float) -> Tensor:
    """``r + γ (1 − terminated) V(s')``: bootstraps through truncation, not through termination."""
    return reward + gamma * (1.0 - terminated) * v_next


class AdamSteps:
    """One fused Adam kernel call for the parameters of several ``torch.optim.Adam`` optimizers.

    Exactly what each optimizer's own ``step()`` computes with ``fused=True`` (the same
    ``torch._fused_adam_`` kernel on the same state tensors, which stay in the optimizers,
    so checkpoints are unchanged), without the per-call Python overhead of ``step()``; the
    optimizers must share their hyperparameters, and their parameters one device. Falls back
    to the optimizers' own ``step()`` whenever the fast path does not apply exactly: a group
    that is not fused or that has amsgrad/maximize/non-float lr, a parameter without
    gradient, a state not yet created (the first step creates it), parameters on several
    devices or not float32, or a kernel that is missing on the parameters' device or does not
    reproduce ``Adam(fused=True).step()`` there bit for bit (probed once per device).
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        self._cache: tuple | None = None

    def reset(self) -> None:
        """Forget cached state tensors (call after ``load_state_dict`` of any optimizer)."""
        self._cache = None

    _kernel_ok: bool | None = None  # False: never call the kernel directly (every step is ``step()``)
    _kernel_ok_on: dict[str, bool] = {}  # per device: whether the kernel takes the call below, exactly

    @classmethod
    def _probe_kernel(cls, device: torch.device | str = "cpu") -> bool:
        if cls._kernel_ok is False:
            return False
        key = str(torch.device(device))
        ok = cls._kernel_ok_on.get(key)
        if ok is None:
            try:  # the kernel call below against torch's own fused step, on this device
                start = torch.tensor([0.5, -2.0], dtype=torch.float32, device=device)
                p, g = start.clone(), torch.tensor([1.0, -3.0], dtype=torch.float32, device=device)
                ref = torch.nn.Parameter(start.clone())
                opt = torch.optim.Adam([ref], lr=0.1, fused=True)
                for _ in range(2):
                    ref.grad = g.clone()
                    opt.step()
                m, v = torch.zeros_like(p), torch.zeros_like(p)
                st = torch.zeros((), dtype=torch.float32, device=device)
                for _ in range(2):
                    cls._call_kernel([p], [g], [m], [v], [st], (0.1, (0.9, 0.999), 1e-8, 0.0))
                ok = bool(torch.equal(p, ref.detach())) and bool(torch.all(p != start))
            except Exception:  # a torch without the kernel on this device, or with another signature
                ok = False
            cls._kernel_ok_on[key] = ok
        return ok

    @staticmethod
    def _call_kernel(params, grads, exp_avgs, exp_avg_sqs, steps, hyper) -> None:
        lr, (beta1, beta2), eps, wd = hyper
        # = torch.optim.adam._fused_adam for one device/dtype group
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr, beta1=beta1,
                           beta2=beta2, weight_decay=wd, eps=eps, maximize=False, grad_scale=None, found_inf=None)

    def _build(self) -> tuple | None:
        if self._kernel_ok is False:
            return None
        hyper = None
        params, exp_avgs, exp_avg_sqs, steps = [], [], [], []
        for opt in self.optimizers:
            if type(opt) is not torch.optim.Adam:
                return None
            for group in opt.param_groups:
                h = (group["lr"], tuple(group["betas"]), group["eps"], group["weight_decay"])
                if (not group.get("fused") or group.get("amsgrad") or group.get("maximize")
                        or group.get("capturable") or group.get("differentiable")
                        or group.get("decoupled_weight_decay") or not isinstance(group["lr"], float)
                        or (hyper is not None and h != hyper)):
                    return None
                hyper = h
                for p in group["params"]:
                    st = opt.state.get(p)
                    if not st or "exp_avg" not in st:
                        return None
                    params.append(p)
                    exp_avgs.append(st["exp_avg"])
                    exp_avg_sqs.append(st["exp_avg_sq"])
                    steps.append(st["step"])
        if not params:
            return None
        device = params[0].device
        if any(t.device != device or t.dtype != torch.float32 for t in [*params, *exp_avgs, *exp_avg_sqs, *steps]):
            return None  # one kernel call = one device/dtype group of torch's own step
        if len({id(p) for p in params}) != len(params) or not self._probe_kernel(device):
            return None
        owners = [(opt.state, opt.param_groups, opt.param_groups[0]["lr"]) for opt in self.optimizers]
        return params, exp_avgs, exp_avg_sqs, steps, hyper, owners

    def _valid(self, cache: tuple) -> bool:
        """The cached tensors are still the optimizers' own: ``load_state_dict`` replaces an
        optimizer's ``state`` and ``param_groups`` objects; the learning rate may be edited."""
        return all(opt.state is st and opt.param_groups is groups and groups[0]["lr"] == lr
                   for opt, (st, groups, lr) in zip(self.optimizers, cache[5]))

    def step(self) -> None:
        cache = self._cache
        if cache is None or not self._valid(cache):
            cache = self._cache = self._build()
        if cache is not None:
            params, exp_avgs, exp_avg_sqs, steps, hyper, _ = cache
            grads = [p.grad for p in params]
            if all(g is not None for g in grads):
                self._call_kernel(params, grads, exp_avgs, exp_avg_sqs, steps, hyper)
                return
        for opt in self.optimizers:
            opt.step()
        self._cache = None


@dataclass
class UpdateStats:
    q_loss: float = 0.0
    actor_loss: float = 0.0
    alpha: float = 0.0
    alpha_loss: float = 0.0
    entropy: float = 0.0
    model_loss: float = 0.0
    distill_loss: float = 0.0
    extra: dict = field(default_factory=dict)


def fused_adam_supported(device: torch.device | str) -> bool:
    """Whether ``torch.optim.Adam(fused=True)`` steps parameters on ``device`` (this torch; some
    versions check the device only at the first step)."""
    key = torch.device(device).type
    ok = _FUSED_OK.get(key)
    if ok is None:
        try:
            p = torch.zeros(1, device=device, requires_grad=True)
            opt = torch.optim.Adam([p], fused=True)
            p.grad = torch.zeros_like(p)
            opt.step()
            ok = True
        except (RuntimeError, ValueError):
            ok = False
        _FUSED_OK[key] = ok
    return ok


_FUSED_OK: dict[str, bool] = {}


class SACAgent:
    """Networks, optimizers and the update of SAC with a direct or iterative policy.

    ``device``: where the networks, optimizer states and updates live (any torch device; not
    part of the configuration: the same run may continue on another device). The networks are
    initialized on the CPU and then moved, so their initial weights do not depend on the
    device; batches passed to :meth:`update` must be on ``device`` (``ReplayBuffer.sample(...,
    device=agent.device)``); :meth:`act` takes and returns CPU numpy arrays.
    """

    def __init__(self, cfg: SACConfig, state_dim: int, action_dim: int, device: torch.device | str = "cpu"):
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        self.device = dev = torch.device(device)
        self.q = QEnsemble(state_dim, action_dim, cfg.hidden, cfg.ensemble_size)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        if cfg.policy == "direct":
            self.actor = DirectActor(state_dim, action_dim, cfg.hidden)
        else:
            self.actor = IterativeOptimizerNet(state_dim, action_dim, cfg.hidden, 0.0, cfg.init_std)
        # iterative agents with models also keep a direct network distilled by KL, for model rollouts
        self.distilled = DirectActor(state_dim, action_dim, cfg.hidden) if (cfg.models and cfg.policy == "iterative") else None
        self.dynamics = DynamicsModel(state_dim, action_dim, cfg.hidden) if cfg.models else None
        self.reward = RewardModel(state_dim, action_dim, cfg.hidden) if cfg.models else None
        for mod in self.modules().values():
            mod.to(dev)  # before any parameter list or optimizer is made (no-op on the CPU)
        self.log_alpha = torch.tensor([cfg.init_log_alpha], device=dev, requires_grad=True)
        self.target_entropy = -float(action_dim)
        self._fused = fused = fused_adam_supported(dev)

        def adam(params):  # fused kernel (CPU: ~3x faster steps); torch's default where it has none
            return torch.optim.Adam(params, lr=cfg.lr, fused=True if fused else None)

        self.optimizers = {"q": adam(self.q.parameters()), "actor": adam(self.actor.parameters()),
                           "alpha": adam([self.log_alpha])}
        if self.distilled is not None:
            self.optimizers["distilled"] = adam(self.distilled.parameters())
        if cfg.models:
            self.optimizers["models"] = adam([*self.dynamics.parameters(), *self.reward.parameters()])
        self._q_params = list(self.q.parameters())
        self._q_target_params = list(self.q_target.parameters())
        self._actor_params = list(self.actor.parameters())
        self._model_params = [*self.dynamics.parameters(), *self.reward.parameters()] if cfg.models else []
        # Adam steps grouped into one fused kernel call each (same state tensors as self.optimizers):
        # direct: the critic's step must precede the actor loss (which reads the updated critic);
        # actor, α and models step together after it. Iterative: every step at the end of the update.
        opts = self.optimizers
        if cfg.policy == "direct":
            self._steps = {"q": AdamSteps([opts["q"]]),
                           "rest": AdamSteps([opts[k] for k in ("actor", "alpha", "models") if k in opts])}
        else:
            self._steps = {"all": AdamSteps([opts[k] for k in ("actor", "q", "alpha", "distilled", "models")
                                             if k in opts])}
        self._model_steps = AdamSteps([opts["models"]]) if cfg.models else None
        self.updates = 0
        self.model_updates = 0

    # ------------------------------------------------------------------ modules
    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"q": self.q, "q_target": self.q_target, "actor": self.actor}
        for name in ("distilled", "dynamics", "reward"):
            if getattr(self, name) is not None:
                mods[name] = getattr(self, name)
        return mods

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    # ------------------------------------------------------------------ iterative optimizer
    def _value_and_grad(self, states: Tensor, lam: Tensor, beta: float, n: int) -> tuple[Tensor, Tensor]:
        """``J(λ; s)`` and ``∇_λ J`` from ``n`` fresh samples through the frozen target ensemble:
        ``[N]``, ``[N, 2A]`` (:func:`~optbench.objectives.policy_objective.soft_value_and_grad`,
        the estimate every policy objective uses)."""
        eps = torch.randn(len(lam), 1, n, self.action_dim, device=lam.device)
        value, grad = soft_value_and_grad(self.q_target, states, lam.unsqueeze(1), eps, self.alpha, beta)
        return value[:, 0], grad[:, 0]

    def iterate(self, states: Tensor, beta: float, iterations: int | None = None, train: bool = False
                ) -> tuple[Tensor, Tensor, list[float]]:
        """Run the iterative optimizer (:class:`~optbench.optimizers.unroll.Unroll`): returns
        ``(λ_K, J(λ_K), [mean J after each iteration])``.

        With ``train=True`` the truncated-backprop gradient of ``−mean_k J(λ_k)`` is accumulated
        into the optimizer network's ``.grad`` (``dλ_k/dφ`` times ``−∇_λ J(λ_k)``: Q is
        differentiated once per iteration, w.r.t. ``λ`` only).
        """
        K = self.cfg.iterations if iterations is None else iterations
        n = self.cfg.grad_samples
        unroll = Unroll(self.actor, states, lambda lam: self._value_and_grad(states, lam, beta, n), train=train,
                        use_onednn=train)  # training: the update's products
        lam, value = unroll.run(K)
        if train:
            unroll.backward()
        curve = torch.stack(unroll.means).tolist()  # one device-to-host read for all K means
        return lam, value, curve

    def policy_params(self, states: Tensor, beta: float | None = None) -> Tensor:
        """``λ(s)`` of the acting policy (iterative: K iterations at β_act)."""
        if self.cfg.policy == "direct":
            with torch.no_grad():
                return self.actor(states)
        return self.iterate(states, self.cfg.beta_act if beta is None else beta)[0]

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """One action in ``[-1, 1]^A`` for one observation (``tanh μ`` if deterministic); numpy
        in and out, whatever the agent's device."""
        s = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        lam = self.policy_params(s)
        mu, log_std = split_params(lam)
        with torch.no_grad():
            a = torch.tanh(mu) if deterministic else torch.tanh(mu + log_std.exp() * torch.randn_like(mu))
        return a[0].cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ updates
    def _model_loss_backward(self, batch) -> Tensor:
        """Model likelihood loss on a batch; its gradient is left in the models' ``.grad``."""
        obs, act, rew, next_obs, _ = batch
        for p in self._model_params:
            p.grad = None
        loss = model_loss(self.dynamics, self.reward, obs, act, rew, next_obs)
        loss.backward()
        self.model_updates += 1
        return loss.detach()

    def update_models(self, batch) -> float:
        """One model update alone (the pre-training phase)."""
        loss = self._model_loss_backward(batch)
        self._model_steps.step()
        return float(loss)

    def update(self, batch) -> UpdateStats:
        """One SAC update on a batch ``(obs, action, reward, next_obs, terminated)``.

        Order of computation (and of random draws): target ``V(s')``, critic step, then the
        actor loss through the updated critic (direct; the iterative optimizer is trained
        before the critic, on the critic-independent target ensemble), temperature,
        distillation, models, Polyak averaging. Adam steps that nothing in between depends on
        are applied together (:class:`AdamSteps`); every loss is that of the reference
        formulation, and scalars are read out once at the end.
        """
        cfg, A = self.cfg, self.action_dim
        obs, act, rew, next_obs, term = batch
        alpha = self.alpha
        stats = UpdateStats()
        B = len(obs)
        out: dict[str, Tensor] = {"alpha": alpha.reshape(())}

        # ---- policy: target V(s') and (iterative) the optimizer's gradient
        if cfg.policy == "direct":
            with torch.no_grad():
                mu, log_std = self.actor.mu_log_std(next_obs, use_onednn=True)
                a_next, logp_next = sample_tanh_gaussian(mu, log_std, torch.randn_like(mu))
                v_next = soft_value(self.q_target.pairs(next_obs, a_next), logp_next, alpha, cfg.beta_train, A)
        else:
            for p in self._actor_params:
                p.grad = None
            both = torch.cat([obs, next_obs])
            lam_both, j_both, curve = self.iterate(both, cfg.beta_train, train=True)  # gradient into .grad
            v_next = j_both[B:]
            lam_obs = lam_both[:B]
            stats.actor_loss = -sum(curve) / len(curve)
            stats.extra["J_first"], stats.extra["J_last"] = curve[0], curve[-1]

        # ---- critic
        with torch.no_grad():
            y = td_target(rew, term, v_next, cfg.gamma)
        q_pred = self.q.pairs(obs, act)  # [E, B]
        q_loss = 0.5 * (q_pred - y).pow(2).mean(1).sum()
        for p in self._q_params:
            p.grad = None
        q_loss.backward()
        out["q_loss"] = q_loss.detach()

        # ---- direct actor (after the critic step, as in CleanRL) / entropy of the iterative policy
        if cfg.policy == "direct":
            self._steps["q"].step()
            mu, log_std = self.actor.mu_log_std(obs, use_onednn=True)
            a, logp = sample_tanh_gaussian(mu, log_std, torch.randn_like(mu))
            actor_loss = -soft_value(self.q.pairs(obs, a, frozen=True), logp, alpha, cfg.beta_train, A).mean()
            for p in self._actor_params:
                p.grad = None
            actor_loss.backward(inputs=self._actor_params)  # no gradient computed for Q (frozen)
            out["actor_loss"] = actor_loss.detach()
            logp = logp.detach()
        else:
            with torch.no_grad():
                mu, log_std = split_params(lam_obs)
                _, logp = sample_tanh_gaussian(mu, log_std, torch.randn_like(mu))

        # ---- temperature: drive the policy entropy E[−log π] to the target −|A|
        # loss −mean(log α · (log π + target)); its gradient w.r.t. log α, written directly
        c = logp + self.target_entropy
        self.log_alpha.grad = -c.mean().reshape(1)
        out["alpha_loss"] = -(self.log_alpha.detach() * c).mean()
        out["entropy"] = -logp.mean()

        # ---- distilled direct rollout policy (iterative + models): min KL(π_it ‖ π_dir)
        if self.distilled is not None:
            kl = gaussian_kl(lam_obs.detach(), self.distilled(obs, use_onednn=True)).mean()
            for p in self.distilled.parameters():
                p.grad = None
            kl.backward()
            out["distill_loss"] = kl.detach()

        # ---- models
        if cfg.models:
            out["model_loss"] = self._model_loss_backward(batch)

        # ---- the remaining Adam steps, then Polyak averaging of the target ensemble
        self._steps["rest" if cfg.policy == "direct" else "all"].step()
        with torch.no_grad():
            torch._foreach_lerp_(self._q_target_params, self._q_params, cfg.tau)
        self.updates += 1
        for k, v in zip(out, torch.stack(list(out.values())).tolist()):
            setattr(stats, k, v)
        return stats

    # ------------------------------------------------------------------ persistence
    def state_tensors(self) -> tuple[dict[str, Tensor], dict]:
        """Networks and optimizer states as CPU tensors (whatever the agent's device) and metadata."""
        tensors: dict[str, Tensor] = {}
        for name, mod in self.modules().items():
            for k, v in mod.state_dict().items():
                tensors[f"net/{name}/{k}"] = v
        tensors["net/log_alpha"] = self.log_alpha.detach()
        meta = {"optimizers": {}, "updates": self.updates, "model_updates": self.model_updates}
        for name, opt in self.optimizers.items():
            t, m = optimizer_to_tensors(name, opt)
            tensors.update(t)
            meta["optimizers"][name] = m
        return {k: v.detach().cpu() for k, v in tensors.items()}, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict | None = None, networks_only: bool = False) -> None:
        """Load :meth:`state_tensors` (on any device: copied to the agent's device)."""
        for name, mod in self.modules().items():
            prefix = f"net/{name}/"
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                mod.load_state_dict(sd)
            except RuntimeError as exc:
                raise ValueError(f"checkpoint network {name!r} does not match: {str(exc).splitlines()[0]}") from None
        with torch.no_grad():
            self.log_alpha.copy_(tensors["net/log_alpha"])
        if networks_only or meta is None:
            return
        for name, opt in self.optimizers.items():
            opt_meta = meta["optimizers"][name]
            if not self._fused:  # no fused kernel on this device: continue with torch's default Adam
                opt_meta = dict(opt_meta, param_groups=[dict(g, fused=None) for g in opt_meta["param_groups"]])
            optimizer_from_tensors(name, opt, tensors, opt_meta)
            for group in opt.param_groups:  # checkpoints of the foreach era: continue with the fused kernel
                if self._fused and not group.get("fused") and not (
                        group.get("amsgrad") or group.get("maximize") or group.get("capturable")
                        or group.get("differentiable")):
                    group["fused"], group["foreach"] = True, None
                    for p in group["params"]:
                        st = opt.state.get(p)
                        if st and torch.is_tensor(st.get("step")):
                            st["step"] = st["step"].to(dtype=torch.float32, device=p.device)
        for steps in [*self._steps.values(), self._model_steps]:
            if steps is not None:
                steps.reset()
        self.updates = int(meta.get("updates", 0))
        self.model_updates = int(meta.get("model_updates", 0))


__all__ = ["SACConfig", "SACAgent", "UpdateStats", "AdamSteps", "fused_adam_supported", "gaussian_kl", "soft_value",
           "td_target", "DEFAULT_GRAD_SAMPLES", "GRAD_SAMPLES_NOTE"]
