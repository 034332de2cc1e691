"""Wrappers around optimization libraries: ``pycma``, ``nevergrad:NAME`` and ``scipy:METHOD``.

All three optimize ``λ = (μ, log σ) ∈ R^{2|A|}`` of each state independently, maximizing
``J`` (the libraries minimize ``−J``), and report every Q-network evaluation they cause.
The libraries themselves are imported lazily, so importing this module (which registers
the three names) is cheap.

Conventions (cost is counted in (s, a) pairs per ensemble member, as everywhere):

``pycma`` (package ``cma``): one ``cma.CMAEvolutionStrategy`` per state, ``x0`` = the
    start ``λ``. Per iteration every *active* state asks ``popsize`` candidates; all
    candidates of all states are evaluated in one batched :meth:`PolicyObjective.estimate`
    call with ``samples`` fresh draws shared by the candidates of a state (common random
    numbers); each state is told its values. Cost per iteration: ``popsize · samples · B``
    Q-evaluations, no gradient evaluations. The estimate after an iteration is each
    state's distribution mean ``es.mean``. A state whose strategy meets one of pycma's
    termination criteria (``es.stop()``; budget criteria are disabled) is frozen: its
    mean is kept, and it costs nothing further.
    Settings: ``sigma0`` (0.5), ``popsize`` (None = pycma's ``4 + ⌊3 ln(2|A|)⌋``),
    ``samples`` (10), ``options`` (extra pycma options, dict). Randomness: every state's
    strategy draws from its own ``numpy`` generator seeded from the run's torch
    generator (pycma's ``randn`` option), so runs are reproducible and numpy's global
    state is left alone.

``nevergrad:NAME`` (any ``nevergrad.optimizers.registry`` name): one optimizer per state
    on ``ng.p.Array(init=λ₀)``, ``budget = iterations · batch``, ``num_workers = batch``,
    seeded through the parametrization's ``random_state``. Per iteration every state asks
    ``batch`` candidates (default 10), all are evaluated in one batched call with
    ``samples`` fresh draws shared by a state's candidates, and told. Cost per iteration:
    ``batch · samples · B``. Optimizers nevergrad marks sequential-only
    (``no_parallelization``: Powell, BFGS, Cobyla, NelderMead, ...) run with
    ``num_workers = 1``: an iteration is then ``batch`` rounds of (ask one candidate per
    state, one batched evaluation, tell), same cost, the iteration's draws shared by the
    rounds. The estimate is ``recommend()`` (``estimate="recommend"``, default) or the best
    point told so far by its noisy value (``estimate="best"``); see ``benchmarks/README.md``
    for the measured cost of ``recommend()``. nevergrad <= 1.0.12 fails in its MetaModel
    (chosen by NGOpt at these dimensions) under numpy >= 2.4; the wrapper recompiles that one
    function with the one-token fix (:func:`_patch_nevergrad_for_numpy_24`), so NGOpt runs
    as it does on older numpy.

``scipy:METHOD`` (``scipy.optimize.minimize``): per state, a deterministic
    sample-average objective with ``samples`` fixed draws (drawn once per run from the
    generator). Gradient methods (L-BFGS-B, BFGS, CG, TNC, SLSQP, Newton-CG,
    trust-constr) get ``(−J, −∇J)`` from :meth:`PolicyObjective.value_and_grad` in one
    call (``jac=True``); derivative-free methods (Nelder-Mead, Powell, COBYLA, COBYQA)
    get ``−J`` from :meth:`PolicyObjective.estimate`. One iteration is one scipy
    iteration (one ``callback``). scipy runs ahead, state after state, so the wrapper
    records, per iteration, ``λ``, the seconds spent and the exact number of J calls
    (each costs ``samples`` Q-evaluations, plus ``samples`` gradient evaluations when the
    gradient is taken), and yields :class:`~optbench.optimizers.base.Iterate` objects
    summed over states. Evaluations made after a state's last callback (e.g. a failed
    line search before convergence) are charged to the next iteration, whose estimate is
    ``result.x``; after convergence the final ``λ`` is repeated at zero cost. Extra
    settings are passed to scipy as ``options`` (e.g. ``scipy:L-BFGS-B(maxcor=5)``; a misspelled
    one is an error). Nelder-Mead starts from the simplex ``λ₀ + step·e_k`` (``step`` 0.5)
    rather than scipy's ``λ₀ ± 5%`` (which is ``0.00025`` at the default start ``λ₀ = 0``).

Every wrapper raises :class:`~optbench.optimizers.base.OptimizerError` when the objective
returns NaN/inf for a candidate it asked for, and when the library itself fails (one line
naming the cause). ``pycma`` and ``nevergrad`` take ``nonfinite="worst"`` to tell such a
candidate a loss of ``+inf`` instead (its cost is still counted), for Q-functions that return
NaN/inf in places (the objective itself is finite for every finite ``λ``).
"""

from __future__ import annotations

import difflib
import gc
import math
import time
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.base import Iterate, OptimizerError, PolicyOptimizer, register
from optbench.optimizers.settings import number


def _state_seeds(generator: torch.Generator, count: int) -> list[int]:
    """``count`` independent 63-bit seeds drawn from the run's torch generator."""
    draws = torch.randint(0, 2**62, (count,), generator=generator, device=generator.device, dtype=torch.int64)
    return [int(s) for s in draws.cpu()]


def _close_names(name: str, names: list[str], n: int = 5) -> str:
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    if not close:
        low = name.lower()
        close = [k for k in names if low[:3] in k.lower()][:n]
    return ", ".join(close) if close else ", ".join(sorted(names)[:n])


def _check_finite(values: Tensor, who: str, iteration: int) -> None:
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).reshape(values.shape[0], -1).any(-1).sum())
        raise OptimizerError(f"{who}: objective returned NaN/inf at iteration {iteration} for {bad} state(s)")


NONFINITE = ("raise", "worst")


def _losses(values: np.ndarray, nonfinite: str, who: str, iteration: int) -> np.ndarray:
    """Losses ``−J`` to tell a library. A non-finite ``J`` raises (``nonfinite="raise"``) or is told as
    ``+inf``, ranking the candidate last (``nonfinite="worst"``; pycma and nevergrad accept it)."""
    if not np.isfinite(values).all():
        if nonfinite == "raise":
            _check_finite(torch.from_numpy(values), who, iteration)
        values = np.where(np.isfinite(values), values, -np.inf)
    return -values


def _evaluate_candidates(objective: PolicyObjective, cand: np.ndarray, active: list[int] | None, samples: int,
                         generator: torch.Generator) -> np.ndarray:
    """Evaluate candidates ``cand [b, P, 2A]`` of the ``active`` states (all if None) in one batched
    call, with ``samples`` fresh draws shared by a state's candidates. Returns ``J [b, P]`` (float64)."""
    lam = torch.as_tensor(cand, dtype=objective.states.dtype, device=objective.device)
    eps = objective.noise(samples, 1, generator)  # drawn for all states: same stream whoever is active
    with torch.no_grad():
        if active is None:
            values = objective.estimate(lam, eps)
        else:
            index = torch.as_tensor(active, device=objective.device)
            values = objective.subset(index).estimate(lam, eps[index])
    return values.double().cpu().numpy()


def _library_failure(who: str, exc: Exception) -> OptimizerError:
    """One-line :class:`OptimizerError` for an exception raised inside a library's own code."""
    msg = f"{who} failed inside the library: {type(exc).__name__}: {exc}".splitlines()[0]
    if isinstance(exc, TypeError) and "0-dimensional arrays" in str(exc) and np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        msg += " (a numpy >= 2.4 incompatibility of the library; numpy < 2.4 avoids it)"
    return OptimizerError(msg)


# ---------------------------------------------------------------------------------- pycma
@register("pycma")
class PyCMA(PolicyOptimizer):
    """pycma's ``CMAEvolutionStrategy``, one per state, evaluated in one batched call per iteration."""

    label_always = ("sigma0", "samples")

    def __init__(self, sigma0: float = 0.5, popsize: int | None = None, samples: int = 10,
                 options: dict[str, Any] | None = None, nonfinite: str = "raise"):
        number("pycma", "sigma0", sigma0, low=0, above=True)
        if popsize is not None:
            number("pycma", "popsize", popsize, low=2, integer=True)
        number("pycma", "samples", samples, low=1, integer=True)
        if nonfinite not in NONFINITE:
            raise OptimizerError(f"pycma: nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        self._settings["options"] = dict(options) if options else None  # no options, however given
        self.sigma0, self.popsize, self.samples = float(sigma0), popsize, int(samples)
        self.options = dict(options or {})
        self.nonfinite = nonfinite

    def _strategy(self, x0: np.ndarray, seed: int):
        import cma

        rng = np.random.default_rng(seed)
        opts = {
            "verbose": -9, "verb_log": 0, "verb_disp": 0, "verb_filenameprefix": "",
            "seed": float("nan"), "randn": lambda *shape: rng.standard_normal(shape),
            "maxiter": float("inf"), "maxfevals": float("inf"),
        }
        if self.popsize is not None:
            opts["popsize"] = self.popsize
        opts.update(self.options)
        try:
            return cma.CMAEvolutionStrategy(x0, self.sigma0, opts)
        except Exception as exc:  # bad user options surface as pycma errors of various types
            raise OptimizerError(f"pycma: cannot create the strategy: {exc}".splitlines()[0]) from None

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor]:
        B = objective.batch_size
        x0 = start.detach().double().cpu().numpy()
        seeds = _state_seeds(generator, B)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            strategies = [self._strategy(x0[i], seeds[i]) for i in range(B)]
        self.popsize_used = strategies[0].popsize if B else self.popsize
        means = x0.copy()
        active = list(range(B))
        for t in range(1, iterations + 1):
            if active:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cand = np.stack([np.asarray(strategies[i].ask()) for i in active])  # [b, P, 2A]
                    values = _evaluate_candidates(objective, cand, None if len(active) == B else active,
                                                  self.samples, generator)
                    losses = _losses(values, self.nonfinite, "pycma", t)
                    for row, i in enumerate(active):
                        es = strategies[i]
                        es.tell(list(cand[row]), losses[row].tolist())
                        means[i] = es.mean
                active = [i for i in active if not strategies[i].stop()]
            yield torch.as_tensor(means, dtype=start.dtype, device=start.device).clone()


# ------------------------------------------------------------------------------ nevergrad
_NG_BROKEN_LINE = "return float(model.predict(trans(np.asarray(x, dtype=X[0].dtype).flatten()[None, :])))"
_NG_FIXED_LINE = "return float(model.predict(trans(np.asarray(x, dtype=X[0].dtype).flatten()[None, :]))[0])"
NEVERGRAD_NUMPY_PATCH = {"applied": False}


def _patch_nevergrad_for_numpy_24() -> None:
    """Make nevergrad's MetaModel (used by NGOpt and the MetaModel* optimizers) work with numpy >= 2.4.

    nevergrad <= 1.0.12 evaluates its surrogate with ``float(model.predict(x[None, :]))``, a
    1-element array; numpy 2.4 made ``float()`` of a 1-d array a TypeError, so every surrogate
    step raises. We recompile ``learn_on_k_best`` with ``float(model.predict(...)[0])``, which is
    exactly what older numpy computed, and only if that line is found verbatim (a fixed nevergrad
    is left alone).
    """
    if NEVERGRAD_NUMPY_PATCH["applied"] or np.lib.NumpyVersion(np.__version__) < "2.4.0":
        return
    import inspect
    import textwrap

    from nevergrad.optimization import metamodel, optimizerlib

    try:
        lines, first = inspect.getsourcelines(metamodel.learn_on_k_best)
    except (OSError, TypeError):
        return
    source = "\n" * (first - 1) + textwrap.dedent("".join(lines))  # keep nevergrad's line numbers
    if source.count(_NG_BROKEN_LINE) != 1:
        return
    namespace: dict[str, Any] = {}
    exec(compile(source.replace(_NG_BROKEN_LINE, _NG_FIXED_LINE), inspect.getsourcefile(metamodel) or "metamodel",
                 "exec"), metamodel.__dict__, namespace)
    fixed = namespace["learn_on_k_best"]
    metamodel.learn_on_k_best = fixed
    optimizerlib.learn_on_k_best = fixed
    NEVERGRAD_NUMPY_PATCH["applied"] = True


def _nevergrad_registry():
    import logging

    logging.getLogger("nevergrad").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nevergrad as ng
    _patch_nevergrad_for_numpy_24()
    return ng


@register("nevergrad")
class Nevergrad(PolicyOptimizer):
    """Any nevergrad optimizer by name, one instance per state, batched evaluations."""

    label_always = ("batch", "samples", "estimate")
    name_settings = ("method",)

    def __init__(self, method: str | None = None, batch: int = 10, samples: int = 10, estimate: str = "recommend",
                 nonfinite: str = "raise"):
        if not method:
            raise OptimizerError("nevergrad needs an optimizer name, e.g. nevergrad:NGOpt or nevergrad:CMA")
        if not isinstance(method, str):
            raise OptimizerError(f"nevergrad: setting method must be an optimizer name such as 'NGOpt', got {method!r}")
        number("nevergrad", "batch", batch, low=1, integer=True)
        number("nevergrad", "samples", samples, low=1, integer=True)
        ng = _nevergrad_registry()
        names = list(ng.optimizers.registry)
        if method not in ng.optimizers.registry:
            raise OptimizerError(f"unknown nevergrad optimizer {method!r}; close names: {_close_names(method, names)}")
        if batch < 1:
            raise OptimizerError(f"nevergrad: batch must be >= 1, got {batch}")
        if samples < 1:
            raise OptimizerError(f"nevergrad: samples must be >= 1, got {samples}")
        if estimate not in ("recommend", "best"):
            raise OptimizerError(f"nevergrad: estimate must be 'recommend' or 'best', got {estimate!r}")
        if nonfinite not in NONFINITE:
            raise OptimizerError(f"nevergrad: nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
        self.method, self.batch, self.samples, self.estimate = method, int(batch), int(samples), estimate
        self.nonfinite = nonfinite
        self.name = f"nevergrad:{method}"

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Tensor]:
        ng = _nevergrad_registry()
        B, P = objective.batch_size, self.batch
        x0 = start.detach().double().cpu().numpy()
        seeds = _state_seeds(generator, B)
        opt_cls = ng.optimizers.registry[self.method]
        # Sequential-only optimizers (nevergrad's no_parallelization: Powell, BFGS, Cobyla, ...) get
        # num_workers=1 and are asked one candidate at a time: an iteration is then `batch` rounds
        # of (ask one per state, one batched evaluation, tell).
        sequential = bool(getattr(opt_cls, "no_parallelization", False))
        workers, per_round = (1, 1) if sequential else (P, P)
        opts = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(B):
                param = ng.p.Array(init=x0[i].copy())
                param.random_state = np.random.RandomState(seeds[i] % 2**32)
                opts.append(self._library("setup", lambda: opt_cls(parametrization=param, budget=max(1, iterations * P),
                                                                   num_workers=workers)))
        best_x = x0.copy()
        best_v = np.full(B, -np.inf)
        estimate = x0.copy()
        try:
            for t in range(1, iterations + 1):
                eps = objective.noise(self.samples, 1, generator)  # shared by a state's candidates
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for _ in range(P // per_round):
                        asked = self._library("ask", lambda: [[opt.ask() for _ in range(per_round)] for opt in opts])
                        cand = np.stack([np.stack([c.value for c in row]) for row in asked])  # [B, per_round, 2A]
                        lam = torch.as_tensor(cand, dtype=objective.states.dtype, device=objective.device)
                        with torch.no_grad():
                            values = objective.estimate(lam, eps).double().cpu().numpy()
                        losses = _losses(values, self.nonfinite, f"nevergrad:{self.method}", t)
                        values = -losses  # non-finite J (nonfinite="worst") become -inf: never the best point
                        self._library("tell", lambda: [opt.tell(c, float(loss)) for opt, row, row_losses
                                                       in zip(opts, asked, losses) for c, loss in zip(row, row_losses)])
                        j_best = values.argmax(1)
                        v_best = values[np.arange(B), j_best]
                        better = v_best > best_v
                        best_v[better] = v_best[better]
                        best_x[better] = cand[better, j_best[better]]
                    if self.estimate == "recommend":
                        estimate = self._library("recommend", lambda: np.stack([opt.recommend().value for opt in opts]))
                    else:
                        estimate = best_x
                yield torch.as_tensor(estimate, dtype=start.dtype, device=start.device).clone()
        finally:
            # Recast optimizers (Powell, BFGS, ... and NGOpt's choices) run the wrapped library in a
            # non-daemon thread that only stops when the optimizer is deleted; a traceback that kept
            # them alive would hang the interpreter at exit.
            opts.clear()

    def _library(self, what: str, call):
        """``call()``; an exception inside nevergrad becomes a one-line :class:`OptimizerError`, raised
        after the original traceback (and the worker threads its frames hold) has been released."""
        failure = None
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 (any library failure)
            failure = _library_failure(f"nevergrad:{self.method} {what}", exc)
        gc.collect()
        raise failure


# ---------------------------------------------------------------------------------- scipy
SCIPY_GRADIENT = ("CG", "BFGS", "Newton-CG", "L-BFGS-B", "TNC", "SLSQP", "trust-constr")
SCIPY_DERIVATIVE_FREE = ("Nelder-Mead", "Powell", "COBYLA", "COBYQA")
SCIPY_NEEDS_HESSIAN = ("dogleg", "trust-ncg", "trust-krylov", "trust-exact")


class _Stop(Exception):
    pass


@register("scipy")
class Scipy(PolicyOptimizer):
    """``scipy.optimize.minimize`` per state on a fixed-noise sample average of ``−J``."""

    stochastic = True  # the fixed draws come from the run's generator
    label_always = ("samples", "step")  # step is kept only for Nelder-Mead, the one method that uses it
    name_settings = ("method",)

    def __init__(self, method: str | None = None, samples: int = 10, step: float = 0.5, **options: Any):
        if not method:
            raise OptimizerError("scipy needs a method, e.g. scipy:L-BFGS-B or scipy:Nelder-Mead")
        if not isinstance(method, str):
            raise OptimizerError(f"scipy: setting method must be a method name such as 'L-BFGS-B', got {method!r}")
        known = {m.lower(): m for m in SCIPY_GRADIENT + SCIPY_DERIVATIVE_FREE}
        if method.lower() in {m.lower() for m in SCIPY_NEEDS_HESSIAN}:
            raise OptimizerError(f"scipy method {method!r} needs a Hessian, which optbench does not provide; "
                                 f"use one of {', '.join(SCIPY_GRADIENT)}")
        if method.lower() not in known:
            raise OptimizerError(f"unknown scipy method {method!r}; close names: "
                                 f"{_close_names(method, list(known.values()))}")
        if samples < 1:
            raise OptimizerError(f"scipy: samples must be >= 1, got {samples}")
        method = known[method.lower()]
        self._settings["method"] = method
        if method == "Nelder-Mead":
            if step <= 0:
                raise OptimizerError(f"scipy:Nelder-Mead: step must be > 0, got {step}")
        else:
            self._settings.pop("step", None)
        self.method, self.samples, self.options = method, int(samples), dict(options)
        self.step = float(step)
        self.uses_gradient = method in SCIPY_GRADIENT
        self.name = f"scipy:{method}"

    def _limits(self, iterations: int, dim: int) -> dict[str, int]:
        """scipy's own iteration/evaluation limits, set far above the budget: the run is ended by the
        wrapper after ``iterations`` callbacks, never by a default limit (some count evaluations)."""
        iters, fevals = 10 * iterations + 10, 100 * (iterations + 1) * (dim + 1)
        return {
            "L-BFGS-B": {"maxiter": iters, "maxfun": fevals},
            "TNC": {"maxfun": fevals},
            "Nelder-Mead": {"maxiter": iters, "maxfev": fevals},
            "Powell": {"maxiter": iters, "maxfev": fevals},
            "COBYLA": {"maxiter": fevals},  # COBYLA's maxiter is its evaluation limit
            "COBYQA": {"maxiter": iters, "maxfev": fevals},
        }.get(self.method, {"maxiter": iters})

    def _run_state(self, sub: PolicyObjective, x0: np.ndarray, eps: Tensor, iterations: int):
        """Minimize ``−J`` for one state; returns per-iteration ``(x, seconds, q_evals, grad_evals)``."""
        from scipy.optimize import minimize

        dtype, device = sub.states.dtype, sub.device
        calls = {"q": 0, "g": 0}
        records: list[tuple[np.ndarray, float, int, int]] = []
        mark = {"t": time.perf_counter(), "q": 0, "g": 0}

        def as_lam(x: np.ndarray) -> Tensor:
            return torch.as_tensor(x, dtype=dtype, device=device).view(1, 1, -1)

        def fun(x: np.ndarray):
            if not np.isfinite(x).all():
                raise OptimizerError(f"scipy:{self.method} proposed a non-finite λ")
            before = sub.counts.copy()  # the objective's ledger (exact for multi-evaluation Qs, e.g. model-based)
            if self.uses_gradient:
                value, grad = sub.value_and_grad(as_lam(x), eps)
                calls["q"] += sub.counts.q_evals - before.q_evals
                calls["g"] += sub.counts.grad_evals - before.grad_evals
                v = float(value)
                if not (math.isfinite(v) and torch.isfinite(grad).all()):
                    raise OptimizerError(f"scipy:{self.method}: objective or gradient is NaN/inf "
                                         f"at iteration {len(records) + 1}")
                return -v, -grad.view(-1).double().cpu().numpy()
            with torch.no_grad():
                v = float(sub.estimate(as_lam(x), eps))
            calls["q"] += sub.counts.q_evals - before.q_evals
            if not math.isfinite(v):
                raise OptimizerError(f"scipy:{self.method}: objective is NaN/inf at iteration {len(records) + 1}")
            return -v

        def record(x: np.ndarray) -> None:
            now = time.perf_counter()
            records.append((np.array(x, dtype=np.float64), now - mark["t"], calls["q"] - mark["q"],
                            calls["g"] - mark["g"]))
            mark.update(t=now, q=calls["q"], g=calls["g"])
            if len(records) >= iterations:
                raise _Stop  # leaves scipy at once, whatever the method (StopIteration is not universal)

        def callback(intermediate_result):  # noqa: ANN001
            # an OptimizeResult for most methods; the bare x for those without the new protocol (TNC, ...)
            record(getattr(intermediate_result, "x", intermediate_result))

        options = {**self._limits(iterations, len(x0)), **self.options}
        if self.method == "Nelder-Mead" and "initial_simplex" not in options:
            # scipy's default simplex is x0 ± 5% per coordinate, and 0.00025 where x0 is 0 (as at
            # the default start μ = 0, log σ = 0): far too small here; use edges of length `step`
            options["initial_simplex"] = np.vstack([x0, x0 + self.step * np.eye(len(x0))])
        kwargs: dict[str, Any] = dict(method=self.method, jac=True if self.uses_gradient else None, options=options)
        result = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("error", message="Unknown solver options")  # a misspelled setting
            try:
                result = minimize(fun, x0, callback=callback, **kwargs)
            except _Stop:
                pass
            except OptimizerError:
                raise
            except Exception as exc:
                raise _library_failure(f"scipy:{self.method}", exc) from exc
        tail_q, tail_g = calls["q"] - mark["q"], calls["g"] - mark["g"]
        if result is not None:
            # scipy finished before the budget (converged or gave up): the evaluations after the last
            # callback buy result.x, the next iteration; later iterations repeat it at zero cost
            records.append((np.array(result.x, dtype=np.float64), time.perf_counter() - mark["t"], tail_q, tail_g))
        return records

    def iterate(self, objective: PolicyObjective, start: Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[Iterate]:
        if iterations == 0:
            return
        B = objective.batch_size
        eps = objective.noise(self.samples, 1, generator)  # fixed for the whole run: [B,1,n,A]
        x0 = start.detach().double().cpu().numpy()
        runs = []
        for i in range(B):
            sub = objective.subset([i])  # shares the ledger of the whole objective
            runs.append(self._run_state(sub, x0[i], eps[i : i + 1], iterations))
        params = x0.copy()
        for t in range(iterations):
            seconds, q, g = 0.0, 0, 0
            for i, rec in enumerate(runs):
                if t < len(rec):
                    x, sec, dq, dg = rec[t]
                    params[i] = x
                    seconds += sec
                    q += dq
                    g += dg
            yield Iterate(torch.as_tensor(params, dtype=start.dtype, device=start.device).clone(),
                          seconds=seconds, q_evals=q, grad_evals=g)


__all__ = ["Nevergrad", "PyCMA", "Scipy"]
