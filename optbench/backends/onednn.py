"""Matrix products of optbench's ReLU networks on oneDNN, on the CPU.

Why: almost all of a SAC update's time, and of a policy objective's evaluation, is 256×256
matrix products (the critics', target critics' and actor's layers at batch 256; the frozen
Q-ensemble's layers on thousands of (s, a) pairs). torch runs ``mm``/``bmm``/``addmm`` on
float32 CPU tensors with its BLAS (MKL in the x86 wheels), but ships oneDNN too, whose
AVX-512 kernels torch uses for convolutions and, through ``torch.ops.mkldnn._linear_pointwise``,
for linear layers of compiled models. On the development machine (AMD EPYC, AVX-512, 1
thread) a 256×256×256 product takes 330 µs with MKL and 155-185 µs with oneDNN, in every
orientation the forward and backward passes need (2048×2048: 101 GFLOP/s with MKL, 230 with
oneDNN; ``benchmarks/bench_scaling.py`` measures the FLOP floor with the faster of the two).

Users: the SAC update (:func:`ensemble_mlp`, :func:`linear_stack`) and the frozen
:class:`~optbench.objectives.q_functions.QEnsemble` of every policy objective
(:class:`FrozenSplitEnsemble`, which packs the frozen weights once; :func:`split_ensemble`
where gradients reach its inputs through autograd). Each row of a oneDNN product (2 rows or
more) is computed the same whatever the number of rows, so evaluating a batch in pieces gives
the same bits.

The functions here compute what the plain layers compute (``x @ W + b``, ReLU, and their
gradients), only with oneDNN's kernels, which sum the products in another order (float32
results differ in the last bits, as between two BLAS). Nothing else changes: parameter
shapes, state-dict keys and checkpoints are those of the modules. Autograd sees one node per
network evaluation (:class:`torch.autograd.Function`), whose backward pass computes only the
gradients its inputs need (pass detached weights for a gradient w.r.t. the input alone).

:func:`usable` says whether the path applies to a tensor (switched on by
:func:`optbench.backends.enable`, float32 on the CPU, oneDNN present and giving float32 results,
probed once); callers keep their plain path for everything else.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor, nn

ENABLED = False  # switched on by optbench.backends.enable() (the command line), never by an import
_probed: bool | None = None
_packing_probed: bool | None = None


def _linear(x: Tensor, w: Tensor, b: Tensor | None, relu: bool = False) -> Tensor:
    """``x @ w.T + b`` for ``w [out, in]`` of any strides, the ReLU fused: one oneDNN call."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "relu" if relu else "none", [], "")


def _plain_linear(x: Tensor, w: Tensor, b: Tensor | None, relu: bool = False) -> Tensor:
    """:func:`_linear` with torch's own products (unpacked ``w [out, in]`` only): for products of
    fewer than :data:`SMALL_ROWS` rows, where oneDNN's per-call overhead dominates."""
    y = torch.nn.functional.linear(x, w, b)
    return y.relu_() if relu else y


# Calls of a frozen ensemble on fewer (s, a) rows than this (an agent acting on one state) take
# torch's own products: a oneDNN call costs ~20 µs whatever its size on the development machine,
# torch's ~5 µs at a few rows. Such calls round differently from the same rows in a larger call.
SMALL_ROWS = 32


def _probe() -> bool:
    """Whether this torch has the oneDNN linear kernel on the CPU and it gives float32 products
    (checked against float64 on transposed and plain operands, as the passes below use them)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        g = torch.Generator().manual_seed(0)
        x, w, b = torch.randn(33, 40, generator=g), torch.randn(40, 24, generator=g), torch.randn(24, generator=g)
        ref = torch.relu(x.double() @ w.double() + b.double())
        ok = torch.allclose(_linear(x, w.t(), b, relu=True).double(), ref, rtol=1e-5, atol=1e-5)
        ok &= torch.allclose(_linear(x.t(), x.t(), None).double(), x.double().t() @ x.double(), rtol=1e-5, atol=1e-4)
        return bool(ok)
    except Exception:  # a torch without the kernel (or with another signature)
        return False


def kernel_available() -> bool:
    """Whether this torch has the oneDNN linear kernel on the CPU giving float32 products (probed once)."""
    global _probed
    if _probed is None:
        _probed = _probe()
    return _probed


def usable(x: Tensor) -> bool:
    """Whether the functions here apply to ``x`` (and parameters like it): switched on
    (:func:`optbench.backends.enable`), float32 on the CPU, and the kernel available."""
    if not (ENABLED and x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.enabled):
        return False
    return kernel_available()


def _packing() -> bool:
    """Whether weights packed by :func:`_pack` give the bits of the plain operands (probed once on
    a strided and a contiguous weight, at a few row counts); :class:`FrozenSplitEnsemble` packs
    only then."""
    global _packing_probed
    if _packing_probed is None:
        try:
            g = torch.Generator().manual_seed(0)
            w = torch.randn(48, 40, generator=g)
            ok = True
            for rows in (2, 65, 300):
                x = torch.randn(rows, 48, generator=g)
                ok &= torch.equal(_linear(x, w.t(), None, relu=True), _linear(x, _pack(w.t()), None, relu=True))
                ok &= torch.equal(_linear(x[:, :40], w, None), _linear(x[:, :40], _pack(w), None))
            _packing_probed = bool(ok)
        except Exception:  # a torch without the packing op
            _packing_probed = False
    return _packing_probed


# ------------------------------------------------------------------------------- passes
# A layer is ``(w, w_t, b)``: its weight as ``[out, in]`` and as ``[in, out]`` (views, any strides;
# ``y = x @ w.T + b = x @ w_t + b``) and its bias ``[out]``.

def _forward(x: Tensor, layers, relus: Sequence[bool], linear=_linear) -> list[Tensor]:
    """Activations ``[x, y_1, ..., y_L]`` of ``y_k = act(y_{k-1} @ w_k.T + b_k)``.

    A layer with one output unit (a critic's last) runs on oneDNN too, although MKL's ``addmv``
    is ~10 µs faster per 2048 rows: ``addmv`` rounds a row differently depending on how many
    rows it is given, which would make results depend on how a batch is cut into pieces."""
    acts = [x]
    for (w, w_t, b), relu in zip(layers, relus):
        x = linear(x, w, b, relu)
        acts.append(x)
    return acts


def _backward(g: Tensor, acts: list[Tensor], layers, relus, need_w, need_b, need_x: bool, w_in_out: bool):
    """Reverse pass of :func:`_forward` from ``g = dL/dy_L``: ``(dL/dx or None, [dL/dw_k], [dL/db_k])``.

    Weight gradients are ``[in, out]`` if ``w_in_out`` (the layout of a :class:`QEnsemble`
    member), else ``[out, in]`` (``nn.Linear``); only the requested gradients are computed."""
    L = len(layers)
    gw: list[Tensor | None] = [None] * L
    gb: list[Tensor | None] = [None] * L
    for k in range(L - 1, -1, -1):
        w, w_t, _ = layers[k]
        a = acts[k]
        if relus[k]:
            g = torch.ops.aten.threshold_backward(g, acts[k + 1], 0)
        if need_w[k]:
            if w.shape[0] == 1:
                gw[k] = torch.mv(a.t(), g[:, 0]).unsqueeze(1 if w_in_out else 0)
            else:
                gw[k] = _linear(a.t(), g.t(), None) if w_in_out else _linear(g.t(), a.t(), None)
        if need_b[k]:
            gb[k] = g.sum(0)
        if k == 0 and not need_x:
            return None, gw, gb
        g = g * w if w.shape[0] == 1 else _linear(g, w_t, None)  # g @ w
    return g, gw, gb


# ------------------------------------------------------------------------------- ensemble
def _members(weights, biases) -> list[list[tuple[Tensor, Tensor, Tensor]]]:
    """The layers of each member of a stacked ensemble (``W [E, in, out]``, ``b [E, 1, out]``)."""
    E = weights[0].shape[0]
    per_layer = [(W.mT.unbind(0), W.unbind(0), b.view(E, -1).unbind(0)) for W, b in zip(weights, biases)]
    return [[(w[e], w_t[e], v[e]) for w, w_t, v in per_layer] for e in range(E)]


class _EnsembleMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, n_layers: int, *params: Tensor) -> Tensor:
        relus = [True] * (n_layers - 1) + [False]
        outs, saved = [], []
        for layers in _members(params[:n_layers], params[n_layers:]):
            acts = _forward(x, layers, relus)
            outs.append(acts[-1].view(-1))
            saved += acts[1:]
        ctx.n_layers = n_layers
        ctx.save_for_backward(x, *params, *saved)
        return torch.stack(outs)

    @staticmethod
    def backward(ctx, grad: Tensor):
        n = ctx.n_layers
        x, *rest = ctx.saved_tensors
        params, saved = rest[:2 * n], rest[2 * n:]
        need = ctx.needs_input_grad
        need_x, need_w, need_b = need[0], need[2:2 + n], need[2 + n:]
        relus = [True] * (n - 1) + [False]
        gx, gws, gbs = None, [], []
        for e, (layers, g) in enumerate(zip(_members(params[:n], params[n:]), grad.contiguous().unsqueeze(-1))):
            g, gw, gb = _backward(g, [x, *saved[e * n:(e + 1) * n]], layers, relus, need_w, need_b, need_x,
                                  w_in_out=True)
            gx = g if gx is None else gx + g
            gws.append(gw)
            gbs.append(gb)
        gw_out = [torch.stack([gw[k] for gw in gws]) if need_w[k] else None for k in range(n)]
        gb_out = [torch.stack([gb[k] for gb in gbs]).unsqueeze(1) if need_b[k] else None for k in range(n)]
        return (gx, None, *gw_out, *gb_out)


def ensemble_mlp(x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], frozen: bool = False) -> Tensor:
    """``[E, N]``: every member of a stacked ReLU ensemble (``weights[k] [E, in, out]``, ``biases[k]
    [E, 1, out]``, one output unit; the layout of :class:`~optbench.objectives.q_functions.QEnsemble`)
    on the same inputs ``x [N, in]``. ``frozen``: no gradient to the parameters (to ``x`` only)."""
    if frozen:
        weights, biases = [W.detach() for W in weights], [b.detach() for b in biases]
    params = (*weights, *biases)
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return _EnsembleMLP.apply(x, len(weights), *params)
    relus = [True] * (len(weights) - 1) + [False]
    return torch.stack([_forward(x, layers, relus)[-1].view(-1) for layers in _members(weights, biases)])


# ------------------------------------------------------------------------------- frozen ensemble, split layer 1
# A stacked ReLU ensemble (the layout of :class:`~optbench.objectives.q_functions.QEnsemble`)
# whose layer 1 is split into its state block, given as ``hs [E, B, H]`` (with layer 1's bias),
# and its action block, applied here to ``actions [B, M, A]``. The weights are frozen:
# gradients reach ``hs`` and ``actions`` only (the policy objective's ``∇_λ J``).

class _SplitMember(NamedTuple):
    """One member's weights as the passes below use them (``_linear``'s ``[out, in]`` operands,
    plain views or packed once by :class:`FrozenSplitEnsemble`)."""
    wa: Tensor  # for ``actions @ W_a`` (``W_a [A, H]``, layer 1's action block): ``W_a.T``
    wa_back: Tensor  # for ``g @ W_a.T``: ``W_a``
    layers: list  # the layers after layer 1, as :func:`_members` gives them
    w_out: Tensor  # the last layer's weight vector ``[H]``, dense


def _split_members(weights, biases, state_dim: int,
                   pack: Callable[[Tensor], Tensor] = lambda w: w) -> list[_SplitMember]:
    """Per member: layer 1's action block and the layers after it; ``pack`` maps each matrix
    operand (not the last layer's weight vector, which the backward pass reads as a tensor)."""
    wa = weights[0][:, state_dim:].unbind(0)
    return [_SplitMember(pack(wa[e].t()), pack(wa[e]), [(pack(w), pack(w_t), b) for w, w_t, b in layers],
                         layers[-1][0][0])
            for e, layers in enumerate(_members(weights[1:], biases[1:]))]


def _member_forward(h: Tensor, x: Tensor, m: _SplitMember, B: int, M: int, linear=_linear) -> list[Tensor]:
    """One member on ``x = actions [B·M, A]`` with its layer-1 state block ``h [B, H]``:
    ``[h_1, ..., h_{L-1}, values [B·M, 1]]``."""
    h1 = linear(x, m.wa, None).view(B, M, -1).add_(h.unsqueeze(1)).relu_().view(B * M, -1)
    return _forward(h1, m.layers, [True] * (len(m.layers) - 1) + [False], linear)


def _hidden_grad(m: _SplitMember, acts: list[Tensor], linear=_linear) -> Tensor:
    """``d value / d(layer 1's pre-activation)`` ``[B·M, H]`` of one member, from its
    activations ``[h_1, ..., h_{L-1}]``.

    Each row has one output unit, so the pass runs from the last layer's weight vector (the
    rows of ``dq/dh`` before scaling by ``dL/dvalue``): callers row-scale the ``[B·M, A]`` (or
    ``[B, H]``) result at the end, one pass over the hidden activations fewer than the generic
    :func:`_backward`, with as many matrix products."""
    g = m.w_out
    for k in range(len(m.layers) - 2, -1, -1):  # the hidden layers after layer 1
        g = linear(torch.ops.aten.threshold_backward(g, acts[k + 1], 0), m.layers[k][1], None)  # g @ w
    return torch.ops.aten.threshold_backward(g, acts[0], 0)  # through h_1's ReLU


def _split_forward(hs: Tensor, actions: Tensor, members, keep: bool) -> tuple[Tensor, list[list[Tensor]]]:
    """``[E, B, M]`` values, and (``keep``) each member's ReLU outputs ``[h_1, ..., h_{L-1}]``."""
    B, M, A = actions.shape
    x = actions.reshape(B * M, A)
    outs, saved = [], []
    for m, h in zip(members, hs):
        acts = _member_forward(h, x, m, B, M)
        outs.append(acts[-1].view(B, M))
        if keep:
            saved.append(acts[:-1])
    return torch.stack(outs), saved


def _split_backward(grad: Tensor, members, saved, need_hs: bool) -> tuple[Tensor | None, Tensor]:
    """``(dL/dhs or None, dL/dactions [B, M, A])`` from ``grad = dL/dvalues [E, B, M]``."""
    _, B, M = grad.shape
    g_hs, g_a = [], None
    for m, acts, g_out in zip(members, saved, grad):
        g = _hidden_grad(m, acts)
        g_out = g_out.reshape(B * M, 1)
        if need_hs:
            g_hs.append((g * g_out).view(B, M, -1).sum(1))
        ga = _linear(g, m.wa_back, None).mul_(g_out)  # (g @ wa.T) row-scaled
        g_a = ga if g_a is None else g_a.add_(ga)
    return (torch.stack(g_hs) if need_hs else None), g_a.view(B, M, -1)


class _SplitEnsemble(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hs: Tensor, actions: Tensor, state_dim: int, n_layers: int, *params: Tensor) -> Tensor:
        members = _split_members(params[:n_layers], params[n_layers:], state_dim)
        out, saved = _split_forward(hs, actions, members, keep=True)
        ctx.state_dim, ctx.n_layers, ctx.per_member = state_dim, n_layers, len(saved[0])
        ctx.save_for_backward(*params, *[t for acts in saved for t in acts])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        n, k = ctx.n_layers, ctx.per_member
        params, flat = ctx.saved_tensors[:2 * n], ctx.saved_tensors[2 * n:]
        saved = [list(flat[i:i + k]) for i in range(0, len(flat), k)]
        g_hs, g_a = _split_backward(grad, _split_members(params[:n], params[n:], ctx.state_dim), saved,
                                    ctx.needs_input_grad[0])
        return (g_hs, g_a, None, None, *[None] * len(params))


def split_ensemble(hs: Tensor, actions: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor],
                   state_dim: int) -> Tensor:
    """``[E, B, M]`` values of the split ensemble (see above), differentiable w.r.t. ``hs`` and
    ``actions`` (one autograd node). Without gradients, :class:`FrozenSplitEnsemble` is faster."""
    params = (*[W.detach() for W in weights], *[b.detach() for b in biases])
    return _SplitEnsemble.apply(hs, actions, state_dim, len(weights), *params)


def _pack(w: Tensor) -> Tensor:
    """``w [out, in]`` (any strides) reordered once into oneDNN's blocked layout for
    :func:`_linear`: saves the reorder oneDNN otherwise does on every call (~6 µs per 256×256
    weight), the same products and bits (checked by :func:`_packing`)."""
    return torch.ops.mkldnn._reorder_linear_weight(w, None)


class FrozenSplitEnsemble:
    """A frozen split ensemble prepared once: each member's weight views built, and (``pack``)
    its matrix operands packed, so that a call runs only the products (a policy objective calls
    its Q-ensemble thousands of times with the same weights and states). Build it again if the
    weights change. Calls on fewer than :data:`SMALL_ROWS` rows take torch's own products.
    """

    def __init__(self, weights: Sequence[Tensor], biases: Sequence[Tensor], state_dim: int, pack: bool = True):
        weights, biases = [W.detach() for W in weights], [b.detach() for b in biases]
        self.plain = _split_members(weights, biases, state_dim)
        self.packed = pack and _packing()
        self.members = _split_members(weights, biases, state_dim, pack=_pack) if self.packed else self.plain
        # ``(states, states._version, hs)``: ``QEnsemble.state_features``' last result, kept here
        # because this object lives as long as the weights it was built from
        self.kept_states: tuple = (None, None, None)

    def _route(self, rows: int) -> tuple[list[_SplitMember], Callable]:
        """The members and the product of a call on ``rows`` rows."""
        return (self.plain, _plain_linear) if rows < SMALL_ROWS else (self.members, _linear)

    def __call__(self, hs: Tensor, actions: Tensor) -> Tensor:
        """``[E, B, M]`` values, the same bits as :func:`split_ensemble` (at :data:`SMALL_ROWS` rows or more)."""
        B, M, A = actions.shape
        members, linear = self._route(B * M)
        x = actions.reshape(B * M, A)
        with torch.no_grad():
            return torch.stack([_member_forward(h, x, m, B, M, linear)[-1].view(B, M) for m, h in zip(members, hs)])

    def vjp(self, hs: Tensor, actions: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """``(values [E, B, M], vjp)`` with ``vjp(dL/dvalues) = dL/dactions``, callable once, without
        autograd: the same operations, and bits, as :func:`split_ensemble`'s autograd node (at
        :data:`SMALL_ROWS` rows or more).

        The backward pass runs in ``vjp``, member by member, through only the rows whose
        ``dL/dvalue`` is nonzero for that member (gathered, padded to :data:`_ROW_QUANTUM`; the
        products give those rows the bits of the whole batch). For the pessimistic ``Q̂`` of two members with β = 1, the minimum,
        each row has one such member (two where they tie): the backward products shrink to
        one member's. Each member's rows ``d value / d actions`` are row-scaled by ``dL/dvalue``
        at the end (:func:`_hidden_grad`) and summed over the members."""
        B, M, A = actions.shape
        N = B * M
        members, linear = self._route(N)
        x = actions.reshape(N, A)
        kept: list = [None] * len(members)
        with torch.no_grad():
            for e in reversed(range(len(kept))):  # the last first: vjp starts with the activations in cache
                kept[e] = _member_forward(hs[e], x, members[e], B, M, linear)

        def vjp(grad: Tensor) -> Tensor:
            g_a = None
            with torch.no_grad():
                for m, acts, g_out in zip(members, kept, grad.reshape(len(kept), N, 1)):
                    rows = g_out.view(N).nonzero().view(-1)
                    n = len(rows)
                    k = -(-n // _ROW_QUANTUM) * _ROW_QUANTUM  # rows gathered: n, padded
                    if n == 0:
                        continue
                    if k >= N:  # every row
                        ga = linear(_hidden_grad(m, acts[:-1], linear), m.wa_back, None).mul_(g_out)
                        g_a = ga if g_a is None else g_a.add_(ga)
                        continue
                    padded = torch.cat([rows, rows[-1:].expand(k - n)]) if k > n else rows
                    sub = [t.index_select(0, padded) for t in acts[:-1]]
                    ga = linear(_hidden_grad(m, sub, linear), m.wa_back, None)[:n].mul_(g_out.index_select(0, rows))
                    g_a = (x.new_zeros(N, A) if g_a is None else g_a).index_add_(0, rows, ga)
            return (x.new_zeros(N, A) if g_a is None else g_a).view(B, M, A)

        return torch.stack([acts[-1].view(B, M) for acts in kept]), vjp


# Gathered rows are padded (with a repeated row) to a multiple of this many: the backward
# tensors then take a few sizes, which glibc's heap reuses (with counts changing call by call,
# as fresh noise makes them, it kept growing and page-faulting: Adam's 1000-pair calls took
# 5-6 ms instead of 3.5), and a product never gets the 1-3 rows that take other kernels.
_ROW_QUANTUM = 32


# ------------------------------------------------------------------------------- nn.Linear stack
def _stack_layers(params) -> list[tuple[Tensor, Tensor, Tensor]]:
    return [(w, w.t(), b) for w, b in zip(params[0::2], params[1::2])]


class _LinearStack(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, relus: tuple[bool, ...], *params: Tensor) -> Tensor:
        acts = _forward(x, _stack_layers(params), relus)
        ctx.relus = relus
        ctx.save_for_backward(*acts[:-1], acts[-1] if relus[-1] else None, *params)  # no ReLU: output not needed
        return acts[-1]

    @staticmethod
    def backward(ctx, grad: Tensor):
        L = len(ctx.relus)
        saved = ctx.saved_tensors
        need = ctx.needs_input_grad
        g, gw, gb = _backward(grad.contiguous(), list(saved[:L + 1]), _stack_layers(saved[L + 1:]), ctx.relus,
                              need[2::2], need[3::2], need[0], w_in_out=False)
        return (g, None, *[t for pair in zip(gw, gb) for t in pair])


def linear_stack(x: Tensor, linears: Sequence[nn.Linear], relus: Sequence[bool]) -> Tensor:
    """``x`` through ``nn.Linear`` layers, each followed by a ReLU where ``relus`` says so."""
    params = tuple(t for m in linears for t in (m.weight, m.bias))
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return _LinearStack.apply(x, tuple(relus), *params)
    return _forward(x, _stack_layers(params), relus)[-1]


__all__ = ["usable", "ensemble_mlp", "split_ensemble", "FrozenSplitEnsemble", "linear_stack"]
