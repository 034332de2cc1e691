"""The batched soft policy objective ``J(λ; s)`` (SPEC §1).

    J(λ; s) = E_{a~π_λ}[Q̂(s, a)] − α · KL(π_λ(·|s) ‖ U[−1, 1]^|A|)

One call evaluates ``B`` states × ``P`` candidate policies × ``n`` reparameterized samples.
Two estimators are kept apart on purpose:

* **optimization** estimates (:meth:`PolicyObjective.estimate`,
  :meth:`PolicyObjective.value_and_grad`) use noise the optimizer chooses (fresh per
  iteration, or common across candidates) and are counted in :attr:`counts`;
* **scoring** (:meth:`PolicyObjective.score`) uses one fixed set of ``score_samples`` noise
  draws per state, drawn once from ``score_seed``; every optimizer is scored on exactly the
  same draws (common random numbers), and scoring is never counted as optimizer cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from optbench.objectives.distributions import kl_to_uniform, sample_tanh_gaussian, soft_value_grad, split_params
from optbench.objectives.q_functions import QFunction, pessimistic_value, pessimistic_value_and_grad


def _pieces(B: int, M: int, chunk: int) -> list[tuple[int, int, int, int]]:
    """Split a ``[B states, M actions]`` batch into pieces ``(s0, s1, m0, m1)`` of about
    ``chunk`` rows: whole states when a state has fewer than ``chunk`` actions, else runs of
    one state's actions. A short last piece is merged into the one before it."""
    if B * M <= chunk:
        return [(0, B, 0, M)]
    if M < chunk:
        per = max(1, chunk // M)
        cuts = list(range(0, B, per)) + [B]
        if len(cuts) > 2 and (cuts[-1] - cuts[-2]) * M < MIN_PIECE_ROWS:
            del cuts[-2]
        return [(lo, hi, 0, M) for lo, hi in zip(cuts[:-1], cuts[1:])]
    cuts = list(range(0, M, chunk)) + [M]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < MIN_PIECE_ROWS:
        del cuts[-2]
    return [(b, b + 1, lo, hi) for b in range(B) for lo, hi in zip(cuts[:-1], cuts[1:])]


def _join_pieces(parts: list[Tensor], B: int, M: int, chunk: int, dim: int) -> Tensor:
    """Reassemble per-piece results of :func:`_pieces` whose state axis is ``dim`` (the action
    axis is ``dim + 1``): whole-state pieces join along the states, a state's runs of actions
    join along the actions first."""
    if len(parts) == 1:
        return parts[0]
    if M < chunk:
        return torch.cat(parts, dim)
    per = len(parts) // B
    return torch.cat([torch.cat(parts[b * per:(b + 1) * per], dim + 1) for b in range(B)], dim)

# Upper bound on (s, a) pairs per call of the estimator while scoring, to keep memory small.
SCORE_CHUNK_PAIRS = 1 << 14
# (s, a) pairs per piece when a Q-ensemble that exposes its layer-1 state block
# (``state_features``/``forward_features``, e.g. QEnsemble) is evaluated in pieces: small
# enough that a piece's activations stay in the CPU caches, large enough to keep the matrix
# products efficient (benchmarks/bench_scaling.py, QEnsemble on oneDNN: 2048 best, 1024 a few
# per cent slower, 512 10-20 % slower, one piece of 10^4 pairs ~10 % slower). Pieces never hold
# fewer than MIN_PIECE_ROWS rows: matrix products of 1-3 rows take other kernels (other roundings).
Q_CHUNK_PAIRS = 2048
MIN_PIECE_ROWS = 64


@dataclass
class EvalCounts:
    """Cost ledger of an objective: Q-network work done on behalf of an optimizer.

    ``q_evals`` counts (s, a) pairs evaluated, per ensemble member (a forward pass of one
    Q-network on one pair is one evaluation). ``grad_evals`` counts the pairs among them
    that were also back-propagated through to get ``∇_λ J``. A Q-function whose value at
    one pair costs several Q-network evaluations (a model-based estimate) says how many in
    ``q_evals_per_pair``; each of its pairs counts that many.
    """

    q_evals: int = 0
    grad_evals: int = 0

    def copy(self) -> "EvalCounts":
        return EvalCounts(self.q_evals, self.grad_evals)


class PolicyObjective:
    """Soft policy objective over a Q-ensemble for a fixed batch of states.

    Args:
        q: a :class:`~optbench.objectives.q_functions.QFunction` (frozen: no gradient ever
            reaches its parameters through this class).
        states: ``[B, S]`` states.
        alpha: entropy temperature, a float or a ``[B]`` tensor.
        beta: pessimism of ``Q̂ = mean − β·std`` over the ensemble.
        score_samples: noise draws per state used by :meth:`score`.
        score_seed: seed of the scoring draws (same seed, same draws, on any device).
        name: label used in results.
    """

    def __init__(
        self,
        q: QFunction,
        states: Tensor,
        alpha: float | Tensor,
        *,
        beta: float = 1.0,
        score_samples: int = 1000,
        score_seed: int = 0,
        name: str = "objective",
        score_noise: Tensor | None = None,
        q_chunk_pairs: int | None = Q_CHUNK_PAIRS,
    ):
        if states.dim() != 2 or states.shape[1] != q.state_dim:
            raise ValueError(f"states must be [B, {q.state_dim}], got {list(states.shape)}")
        self.q = q
        self.states = states
        self.device = states.device
        self.state_dim, self.action_dim = q.state_dim, q.action_dim
        self.alpha = torch.as_tensor(alpha, dtype=states.dtype, device=self.device)
        self.beta = float(beta)
        self.name = name
        self.score_seed = score_seed
        if score_noise is None:
            gen = torch.Generator().manual_seed(score_seed)
            score_noise = torch.randn(len(states), score_samples, self.action_dim, generator=gen, dtype=states.dtype)
        self.score_noise = score_noise.to(self.device)
        self.counts = EvalCounts()
        # Q-network evaluations behind one (s, a) value (1 for a plain ensemble; see EvalCounts)
        self.pair_cost = int(getattr(q, "q_evals_per_pair", 1))
        self.q_chunk_pairs = q_chunk_pairs

    # ------------------------------------------------------------------ shapes
    @property
    def batch_size(self) -> int:
        return len(self.states)

    @property
    def param_dim(self) -> int:
        """Dimension of ``λ``: ``2|A|``."""
        return 2 * self.action_dim

    def initial_params(self, mu: float = 0.0, std: float = 1.0) -> Tensor:
        """``[B, 2|A|]`` start with ``μ = mu``, ``σ = std`` for every state (default ``μ = 0, σ = 1``)."""
        lam = torch.zeros(self.batch_size, self.param_dim, dtype=self.states.dtype, device=self.device)
        lam[:, : self.action_dim] = mu
        lam[:, self.action_dim :] = torch.log(torch.tensor(std)).item()
        return lam

    def noise(self, n: int, candidates: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Standard-normal draws ``[B, candidates, n, |A|]`` for :meth:`estimate`."""
        shape = (self.batch_size, candidates, n, self.action_dim)
        return torch.randn(shape, generator=generator, dtype=self.states.dtype, device=self.device)

    def subset(self, index: Tensor | slice | list[int]) -> "PolicyObjective":
        """The same objective restricted to some states (scoring draws follow their states)."""
        alpha = self.alpha[index] if self.alpha.dim() else self.alpha
        sub = PolicyObjective(self.q, self.states[index], alpha, beta=self.beta, name=self.name,
                              score_noise=self.score_noise[index], q_chunk_pairs=self.q_chunk_pairs)
        sub.counts = self.counts  # costs of the subset are costs of the whole
        return sub

    # ------------------------------------------------------------------ core estimator
    def _soft_values(self, lam: Tensor, eps: Tensor, rows: slice = slice(None)) -> Tensor:
        """Uncounted per-sample integrand for the states ``self.states[rows]``."""
        states = self.states[rows]
        alpha = self.alpha[rows].view(-1, 1, 1) if self.alpha.dim() else self.alpha
        B, P, _ = lam.shape
        n = eps.shape[2]
        mu, log_std = split_params(lam.unsqueeze(2))  # [B,P,1,A]
        actions, log_prob = sample_tanh_gaussian(mu, log_std, eps)  # [B,P,n,A], [B,P,n]
        q = self._q_values(states, actions.reshape(B, P * n, self.action_dim)).view(-1, B, P, n)
        return pessimistic_value(q, self.beta) - alpha * kl_to_uniform(log_prob, self.action_dim)

    def _q_values(self, states: Tensor, actions: Tensor) -> Tensor:
        """``Q(states [B, S], actions [B, M, A]) -> [E, B, M]``, in cache-sized pieces when the
        Q-function allows it (same values: every (s, a) row is computed on its own)."""
        B, M, _ = actions.shape
        if not _pieced(self.q, self.q_chunk_pairs) or B * M <= self.q_chunk_pairs:
            return self.q(states, actions)
        hs = self.q.state_features(states)
        parts = [self.q.forward_features(hs[:, s0:s1], actions[s0:s1, m0:m1])
                 for s0, s1, m0, m1 in _pieces(B, M, self.q_chunk_pairs)]
        return _join_pieces(parts, B, M, self.q_chunk_pairs, dim=1)

    def soft_values(self, lam: Tensor, eps: Tensor) -> Tensor:
        """Per-sample integrand ``Q̂(s, a) − α (log π_λ(a) + |A| log 2)``: ``[B, P, n]``.

        ``lam`` is ``[B, P, 2|A|]``, ``eps`` ``[B, P or 1, n, |A|]`` (``1``: the same draws
        for every candidate). Differentiable w.r.t. ``lam``; counts ``B·P·n`` Q-evaluations
        (times :attr:`pair_cost`).
        """
        B, P, _ = lam.shape
        self.counts.q_evals += B * P * eps.shape[2] * self.pair_cost
        return self._soft_values(lam, eps)

    def estimate(self, lam: Tensor, eps: Tensor) -> Tensor:
        """Monte Carlo ``J`` for ``lam [B, P, 2|A|]`` with noise ``eps`` -> ``[B, P]`` (counted)."""
        return self.soft_values(lam, eps).mean(-1)

    def value_and_grad(self, lam: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """``J [B, P]`` and ``∇_λ J [B, P, 2|A|]`` from one forward and one backward pass
        (:func:`soft_value_and_grad`; counted)."""
        B, P, _ = lam.shape
        pairs = B * P * eps.shape[2] * self.pair_cost
        self.counts.q_evals += pairs
        self.counts.grad_evals += pairs
        return soft_value_and_grad(self.q, self.states, lam, eps, self.alpha, self.beta, self.q_chunk_pairs)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, lam: Tensor) -> Tensor:
        """Scored ``J`` on the fixed per-state draws: ``lam [B, 2|A|] -> [B]`` or ``[B, P, 2|A|] -> [B, P]``.

        Identical draws for every optimizer; not counted in :attr:`counts`.
        """
        single = lam.dim() == 2
        lam = lam.unsqueeze(1) if single else lam
        B, P, _ = lam.shape
        N = self.score_noise.shape[1]
        per_state = max(1, SCORE_CHUNK_PAIRS // (P * N))
        out = []
        for lo in range(0, B, per_state):
            hi = min(B, lo + per_state)
            eps = self.score_noise[lo:hi].unsqueeze(1)  # [b,1,N,A], shared by the P candidates
            out.append(self._soft_values(lam[lo:hi], eps, slice(lo, hi)).mean(-1))
        values = torch.cat(out)
        return values.squeeze(1) if single else values


# ---------------------------------------------------------------------------- J and its gradient
def _pieced(q: QFunction, chunk: int | None) -> bool:
    """Whether ``q`` can be evaluated in pieces of ``chunk`` pairs (it exposes its layer-1 state
    block, as :class:`~optbench.objectives.q_functions.QEnsemble` does)."""
    return chunk is not None and all(hasattr(q, f) for f in ("state_features", "forward_features",
                                                              "forward_features_vjp"))


def soft_value_and_grad(q: QFunction, states: Tensor, lam: Tensor, eps: Tensor, alpha: float | Tensor,
                        beta: float, q_chunk_pairs: int | None = Q_CHUNK_PAIRS) -> tuple[Tensor, Tensor]:
    """Monte Carlo ``J(λ; s)`` ``[B, P]`` and ``∇_λ J`` ``[B, P, 2|A|]`` for ``lam [B, P, 2|A|]``
    and noise ``eps [B, P or 1, n, |A|]``, with ``Q`` frozen (no gradient reaches it).

    The one implementation of the estimate and its gradient: policy objectives (counted, see
    :meth:`PolicyObjective.value_and_grad`), the SAC agent's iterative policy (acting, and the
    target ensemble in its update) and meta-training all call it. Only the Q part goes through
    a backward pass (``dQ̂/da``); the policy part (tanh-Gaussian sample, entropy, pessimism) is
    differentiated in closed form (:func:`soft_value_grad`), since autograd's bookkeeping over
    these few-thousand-element tensors cost as much as a fifth of the call. With a pieced
    Q-ensemble (see :data:`Q_CHUNK_PAIRS`) the Q part runs piece by piece, each piece's backward
    right after its forward while its activations are still in cache; values and gradients are
    the same bits as from one pass over the whole batch. ``alpha``: a float, a one-element
    tensor, or one value per state ``[B]``.
    """
    B, P, _ = lam.shape
    n, A = eps.shape[2], q.action_dim
    alpha = torch.as_tensor(alpha, dtype=lam.dtype, device=lam.device)
    alpha = alpha.view(-1, 1, 1) if alpha.dim() else alpha
    with torch.no_grad():
        mu, log_std = split_params(lam.detach().unsqueeze(2))
        actions, log_prob = sample_tanh_gaussian(mu, log_std, eps)  # [B,P,n,A], [B,P,n]
        q_hat, grad_actions = _q_hat_and_action_grad(q, states, actions.reshape(B, P * n, A), beta, q_chunk_pairs)
        value = (q_hat.view(B, P, n) - alpha * kl_to_uniform(log_prob, A)).mean(-1)
        grad = soft_value_grad(log_std, eps, actions, grad_actions.view(B, P, n, A), alpha)
    return value, grad


def _q_hat_and_action_grad(q: QFunction, states: Tensor, actions: Tensor, beta: float, chunk: int | None
                           ) -> tuple[Tensor, Tensor]:
    """``Q̂(states, actions [B, M, A])`` ``[B, M]`` and ``dQ̂/da`` ``[B, M, A]``."""
    B, M, _ = actions.shape
    if not _pieced(q, chunk if chunk is not None else 1):  # a Q-function without the pieced interface
        with torch.enable_grad():
            a = actions.detach().requires_grad_(True)
            values = q(states, a)
            q_hat, grad_q = pessimistic_value_and_grad(values.detach(), beta)
            (grad_a,) = torch.autograd.grad(values, a, grad_q)
        return q_hat, grad_a
    hs = q.state_features(states)
    q_hat, grad_a = [], []
    for s0, s1, m0, m1 in (_pieces(B, M, chunk) if chunk is not None else [(0, B, 0, M)]):
        values, vjp = q.forward_features_vjp(hs[:, s0:s1], actions[s0:s1, m0:m1])  # [E,b,m]
        v, grad_q = pessimistic_value_and_grad(values, beta)
        q_hat.append(v)
        grad_a.append(vjp(grad_q))
    if len(q_hat) == 1:
        return q_hat[0], grad_a[0]
    return _join_pieces(q_hat, B, M, chunk, dim=0), _join_pieces(grad_a, B, M, chunk, dim=0)
