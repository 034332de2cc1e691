"""Memory does not grow with iterations beyond the trace a run keeps.

A run keeps, per iteration, four numbers (seconds, Q-evaluations, gradient evaluations,
FLOPs) and, at the scored iterations only (``score_at="log"``: ~10 per decade), one J per
state. Nothing else may grow with the budget: not the objective (its cost ledger, the
Q-ensemble's prepared weights and state features), not the optimizer's tensors, not the
stored cell. The checks count the bytes of every live torch tensor (``gc``) and the process's
resident memory, after short and long runs of the same optimizers on the same objective.
"""

from __future__ import annotations

import gc
import json
import warnings

import pytest
import torch

from optbench.objectives.policy_objective import PolicyObjective
from optbench.objectives.q_functions import QEnsemble
from optbench.optimizers import make_optimizer
from optbench.runner.drive import run_optimizer, score_schedule
from optbench.runner.store import ResultsStore


def live_tensor_bytes() -> int:
    """Bytes of the storages of every torch tensor alive in the process (each storage once)."""
    gc.collect()
    seen: dict[int, int] = {}
    with warnings.catch_warnings():  # isinstance on deprecated torch module attributes warns
        warnings.simplefilter("ignore")
        objects = gc.get_objects()
        tensors = [o for o in objects if isinstance(o, torch.Tensor)]
    del objects
    for o in tensors:
        try:
            if o.device.type == "cpu" and not o.is_sparse:
                storage = o.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, ReferenceError):  # tensors without storage (meta, some views)
            continue
    return sum(seen.values())


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def objective(B: int) -> PolicyObjective:
    torch.manual_seed(0)
    q = QEnsemble(17, 6)
    with torch.no_grad():
        q.weights[-1].mul_(20.0)
    return PolicyObjective(q, torch.randn(B, 17, generator=torch.Generator().manual_seed(1)), 0.05, score_samples=64)


SPECS = ["adam(lr=0.01,samples=10)", "cem(population=50,elites=5)", "cmaes(samples=4)"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_a_long_run_keeps_only_its_trace(spec, tmp_path):
    obj = objective(8)
    run_optimizer(make_optimizer(spec), obj, 20, seed=0, score_at="log")  # first-call allocations
    base = live_tensor_bytes()
    short = run_optimizer(make_optimizer(spec), obj, 20, seed=0, score_at="log")
    with_short = live_tensor_bytes()
    del short
    long = run_optimizer(make_optimizer(spec), obj, 1000, seed=0, score_at="log")
    with_long = live_tensor_bytes()
    # the trace: per-iteration costs (Python numbers), J at ~10 scored iterations per decade
    assert len(long.seconds) == len(long.q_evals) == len(long.grad_evals) == 1000
    assert long.iterations == score_schedule(1000, "log") and len(long.iterations) <= 45
    assert tuple(long.scores.shape) == (len(long.iterations), 8) and not long.params_at
    kept = long.scores.untyped_storage().nbytes() + long.final_params.untyped_storage().nbytes()
    # 50x the iterations: the live tensors grow by the long trace's scores and nothing else
    # (a page of slack for allocator-held scalars)
    assert with_long - base <= kept + 4096, (spec, base, with_short, with_long, kept)
    del long
    assert live_tensor_bytes() - base <= 4096
    assert obj.score_noise.shape == (8, 64, 6)  # the objective's fixed draws, unchanged

    store = ResultsStore.create_or_resume(tmp_path / "run", {"test": spec})
    sizes = {}
    for n in (100, 1000):
        trace = run_optimizer(make_optimizer(spec), obj, n, seed=0, score_at="log")
        store.save_cell("o", f"{spec}-{n}", 0, trace, {"spec": spec})
        path = store.cell_path("o", f"{spec}-{n}", 0)
        sizes[n] = path.stat().st_size
        cell = json.loads(path.read_text())
        assert len(cell["scores"]) == len(score_schedule(n, "log"))
    # the stored cell grows by its per-iteration costs (a few numbers each) and the extra scored rows
    assert (sizes[1000] - sizes[100]) / 900 < 200, sizes


@pytest.mark.slow
def test_resident_memory_is_flat_over_thousands_of_iterations():
    """At 64 states a tensor of one iteration (64 × 100 candidate actions) left alive per
    iteration would add ~230 MB over 1500 iterations; the resident memory must stay within the
    allocator's slack (glibc keeps up to 64 MB of freed heap, optbench.backends.allocator)."""
    obj = objective(64)
    opt = make_optimizer("cem(population=100,elites=10)")
    run_optimizer(opt, obj, 100, seed=0, score_at="log")
    gc.collect()
    before = rss_mb()
    trace = run_optimizer(opt, obj, 1500, seed=1, score_at="log")
    gc.collect()
    grown = rss_mb() - before
    assert len(trace.seconds) == 1500
    assert grown < 80, f"resident memory grew by {grown:.0f} MB over 1500 iterations"
