"""Cost axes: FLOPs counted from network shapes, warm-up kept out of the wall clock, costs to a
target interpolated between scored points, speed-up over Adam, and old runs still readable."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.cli import main
from optbench.metrics.summary import CellGroup, first_crossing, grid_resolution, group_cells
from optbench.objectives import PolicyObjective
from optbench.objectives.cost import mlp_forward_flops, mlp_input_grad_flops, module_forward_flops, q_cost
from optbench.objectives.q_functions import QEnsemble
from optbench.optimizers import make_optimizer
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.runner.drive import run_optimizer, score_schedule
from optbench.reporting.paper_tables import later_minus_earlier, speedup, tuned_adam
from optbench.runner.store import ResultsStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def randnet():
    torch.manual_seed(0)
    q = QEnsemble(5, 2, hidden=(16, 8), ensemble_size=2)
    states = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    return PolicyObjective(q, states, 0.1, score_samples=64, name="randnet")


def test_flops_are_a_pure_function_of_the_layer_sizes(randnet):
    # one member: (5+2)->16->8->1; forward 2·(7·16 + 16·8 + 8·1) = 496; backward to the 2 action inputs only
    assert mlp_forward_flops([7, 16, 8, 1]) == 2 * (7 * 16 + 16 * 8 + 8 * 1) == 496
    assert mlp_input_grad_flops([7, 16, 8, 1], input_columns=2) == 2 * (2 * 16 + 16 * 8 + 8 * 1) == 336
    cost = q_cost(randnet.q)
    assert (cost.forward, cost.backward, cost.members, cost.sizes) == (2 * 496, 2 * 336, 2, (7, 16, 8, 1))
    assert randnet.q.flops_per_pair() * 2 == cost.forward  # agrees with the ensemble's own count per member
    assert module_forward_flops(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))) \
        == 2 * (3 * 4 + 4 * 2)
    assert module_forward_flops(torch.nn.ReLU()) is None


@pytest.mark.parametrize("spec", ["adam(samples=4)", "cem(population=6,elites=2)"])
def test_trace_flops_follow_the_ledger(randnet, spec):
    trace = run_optimizer(make_optimizer(spec), randnet, 3, seed=0)
    cost = q_cost(randnet.q)
    assert trace.flops == [q * cost.forward + g * cost.backward for q, g in zip(trace.q_evals, trace.grad_evals)]
    assert trace.cost_model["forward_flops_per_q_eval"] == cost.forward
    assert trace.start_cost == {"seconds": 0.0, "q_evals": 0, "grad_evals": 0, "flops": 0.0}


def test_analytic_objectives_have_no_flops(quadratic):
    trace = run_optimizer(make_optimizer("adam"), quadratic[0], 2)
    assert trace.flops is None and trace.cost_model is None


@register("test-slow-first-call")
class SlowFirstCall(PolicyOptimizer):
    """Pays a one-time 0.25 s on its first iteration in a process, as kernel set-up does."""

    paid = False

    def iterate(self, objective, start, iterations, generator):
        for _ in range(iterations):
            if not SlowFirstCall.paid:
                time.sleep(0.25)
                SlowFirstCall.paid = True
            objective.estimate(start.unsqueeze(1), objective.noise(2, 1, generator))
            yield start


def test_warm_up_is_not_in_the_wall_clock_nor_in_the_ledger(randnet):
    SlowFirstCall.paid = False
    before = randnet.counts.q_evals
    trace = run_optimizer(make_optimizer("test-slow-first-call"), randnet, 3)
    assert max(trace.seconds) < 0.1 and trace.timing.startswith("warm-up")
    assert randnet.counts.q_evals - before == sum(trace.q_evals) == 3 * 2 * randnet.batch_size
    SlowFirstCall.paid = False
    cold = run_optimizer(make_optimizer("test-slow-first-call"), randnet, 3, warmup=False)
    assert cold.seconds[0] >= 0.25 and cold.timing == "no warm-up"


def test_warm_up_leaves_the_timed_run_bit_for_bit(randnet):
    a = run_optimizer(make_optimizer("adam(samples=4)"), randnet, 4, seed=3)
    b = run_optimizer(make_optimizer("adam(samples=4)"), randnet, 4, seed=3, warmup=False)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.final_params, b.final_params)


def test_crossing_is_interpolated_log_linearly_on_the_log_grid():
    its = np.asarray(score_schedule(251, "log"))
    curve = np.log(np.maximum(its, 1))  # J = log t: the crossing of log 110 is exactly at t = 110
    assert first_crossing(its, curve, math.log(110)) == 110
    assert first_crossing(its, curve, math.log(110), interpolate=False) == 126  # the old reading: +15 %
    assert first_crossing(its, curve, math.log(7.5)) == 8  # every iteration scored there: no interpolation
    assert first_crossing(its, curve, 99.0) == math.inf
    assert first_crossing(its, np.stack([curve, curve + 1]), math.log(110)).tolist() == [110, 41]  # 110/e = 40.5, rounded up
    assert grid_resolution(its) == "scored at every iteration to 10, then at most 30% apart"
    assert grid_resolution(np.arange(6)) == "every iteration scored"


def _group(name: str, curve, q_per_it: float, seconds=None, timing="warm-up") -> CellGroup:
    iterations = np.arange(len(curve))
    budget = len(curve) - 1
    scores = np.asarray(curve, dtype=float)[None, :, None].repeat(2, axis=2)  # 1 seed, 2 states
    sec = np.full((1, budget), 0.01) if seconds is None else np.asarray([seconds], dtype=float)
    return CellGroup("o", name, iterations, scores, sec, np.full((1, budget), 2 * q_per_it), np.zeros((1, budget)),
                     np.zeros((1, 2, 2)), {"spec": name.split(" ")[0]}, np.full((1, budget), 2 * q_per_it * 100.0),
                     {"seconds": np.zeros(1), "q_evals": np.zeros(1), "grad_evals": np.zeros(1), "flops": np.zeros(1)},
                     timing)


def test_costs_to_a_j_and_speed_up_over_tuned_adam():
    adam = _group("adam (tuned)", [0, 1, 2, 3, 4, 5, 6, 7, 8], q_per_it=10)
    fast = _group("cem", [0, 4, 8, 8, 8, 8, 8, 8, 8], q_per_it=100)
    paper = _group("adam (paper)", [0, 0, 0, 0, 0, 0, 0, 0, 1], q_per_it=10)
    assert tuned_adam([paper, fast, adam]) is adam and tuned_adam([paper, fast]) is paper and tuned_adam([fast]) is None
    t_adam, t_fast = first_crossing(adam.iterations, adam.scores.mean((0, 2)), 4), first_crossing(
        fast.iterations, fast.scores.mean((0, 2)), 4)
    assert (t_adam, t_fast) == (4, 1)
    assert adam.cost_at("q_evals", t_adam) == 40 and fast.cost_at("q_evals", t_fast) == 100
    assert adam.cost_at("flops", t_adam) == 4000  # per state
    assert speedup(40, 80, 100) == "0.4×"  # CEM needs fewer iterations but more Q-evaluations than Adam
    assert speedup(None, 80, 10) == "> 8×" and speedup(40, 80, math.inf) == "" and speedup(40, 80, 0) == "∞"


def test_legacy_wall_clock_charges_the_first_iteration_the_later_mean():
    old = _group("adam", [0, 1, 2, 3], 10, seconds=[2.0, 0.1, 0.3], timing=None)
    new = _group("adam", [0, 1, 2, 3], 10, seconds=[2.0, 0.1, 0.3])
    assert old.steady_seconds().tolist() == [[0.2, 0.1, 0.3]] and new.steady_seconds().tolist() == [[2.0, 0.1, 0.3]]
    assert old.cumulative("seconds")[0].tolist() == pytest.approx([0, 0.2, 0.3, 0.6])


def test_j100_minus_j5_is_paired_over_states():
    scores = np.zeros((1, 101, 40))
    scores[0, 100] = np.linspace(-1, 0.2, 40)  # mean −0.4, every state known: a paired interval excluding 0
    its = np.arange(101)
    g = CellGroup("o", "iterative", its, scores, np.zeros((1, 100)), np.zeros((1, 100)), np.zeros((1, 100)),
                  np.zeros((1, 40, 2)))
    iv = later_minus_earlier(g, 5, 100)
    assert iv.estimate == pytest.approx(-0.4) and iv.high < 0 < iv.high + 0.6
    assert later_minus_earlier(g, 5, 200) is None


def test_old_stored_runs_show_costs_as_unavailable(tmp_path, capsys):
    """A reference run stored before FLOPs and warm-up were recorded is still shown; FLOPs read n/a."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / "results/synthetic/run", run)
    cells = group_cells(ResultsStore(run).cells())
    assert all(g.flops is None and g.timing is None for g in cells.values())
    assert main(["show", str(run), "--markdown", str(tmp_path / "t.md")]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "FLOPs→90%" in out and "Traceback" not in out
