"""Built-in optimizers on analytic objectives with known optima: accuracy, ledger, modes,
determinism, bad settings."""

from __future__ import annotations

import pytest
import torch

from optbench.optimizers import OptimizerError, make_optimizer
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.runner.drive import run_optimizer, score_schedule

# (spec, budget): each optimizer with a setting that suits it, as a user would tune it.
BUILTIN = [("adam(lr=0.05)", 150), ("cem(smoothing=0.5)", 60), ("cmaes(samples=32)", 150)]


def normalized(trace_scores, objective, optimum):
    start = objective.score(objective.initial_params())
    ref = objective.score(optimum.params)
    return (trace_scores - start) / (ref - start)


@pytest.mark.parametrize("spec,budget", BUILTIN)
def test_reaches_known_optimum_of_concave_objective(quadratic, spec, budget):
    objective, optimum = quadratic
    trace = run_optimizer(make_optimizer(spec), objective, budget, seed=0)
    norm = normalized(trace.scores[-1], objective, optimum)
    assert norm.mean() > 0.98 and norm.min() > 0.95, norm
    mean_action_error = (torch.tanh(trace.final_params[:, :3]) - torch.tanh(optimum.params[:, :3])).abs().max()
    assert mean_action_error < 0.1


@pytest.mark.parametrize("spec,per_iteration,grads", [
    ("adam(samples=7)", 7, True),
    ("cem(population=50,elites=5)", 50, False),
    ("cmaes(popsize=9,samples=4)", 36, False),
])
def test_ledger_counts_exactly(quadratic, spec, per_iteration, grads):
    objective, _ = quadratic
    B, n = objective.batch_size, 6
    trace = run_optimizer(make_optimizer(spec), objective, n, seed=0)
    assert trace.q_evals == [per_iteration * B] * n
    assert trace.grad_evals == [per_iteration * B if grads else 0] * n
    assert len(trace.seconds) == n and all(s > 0 for s in trace.seconds)


def test_stochastic_optimizer_finds_different_optima_with_known_values(multimodal):
    objective, optimum = multimodal
    mode_scores = objective.score(optimum.modes)  # [B,K] each local optimum, scored
    landed = []
    for seed in range(8):
        trace = run_optimizer(make_optimizer("cem"), objective, 40, seed=seed)
        dist = (torch.tanh(trace.final_params[:, None, :2]) - torch.tanh(optimum.modes[:, :, :2])).norm(dim=-1)
        mode = dist.argmin(1)
        assert dist.min(1).values.max() < 0.1  # every run ends at a local optimum...
        value_error = trace.scores[-1] - mode_scores.gather(1, mode[:, None])[:, 0]
        assert value_error.abs().max() < 0.05  # ...with that optimum's known value
        landed.append(mode)
    per_state = [len(set(row.tolist())) for row in torch.stack(landed, 1)]
    assert max(per_state) >= 2 and sum(k >= 2 for k in per_state) >= 2  # seeds land in different optima
    assert len(set(torch.cat(landed).tolist())) >= 3  # and several distinct optima are found overall


@pytest.mark.parametrize("spec", ["adam", "cem", "cmaes"])
def test_same_seed_same_trace_bit_for_bit(quadratic, spec):
    objective, _ = quadratic
    a = run_optimizer(make_optimizer(spec), objective, 5, seed=3)
    b = run_optimizer(make_optimizer(spec), objective, 5, seed=3)
    c = run_optimizer(make_optimizer(spec), objective, 5, seed=4)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.final_params, b.final_params)
    assert not torch.equal(a.final_params, c.final_params)


@register("test-nan-at-2")
class YieldsNaN(PolicyOptimizer):
    """Diverges at its second iteration."""

    def iterate(self, objective, start, iterations, generator):
        yield start
        yield start * float("nan")


def test_nan_parameters_are_refused_with_one_line(quadratic):
    objective, _ = quadratic
    with pytest.raises(OptimizerError, match="NaN/inf parameters at iteration 2") as err:
        run_optimizer(make_optimizer("test-nan-at-2"), objective, 3)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("spec,message", [
    ("nosuch", "unknown optimizer 'nosuch'"),
    ("adam(lr=", "malformed"),
    ("adam(lr=-1)", "setting lr must be a finite number > 0, got -1"),
    ("adam(lr='x')", "setting lr must be a finite number > 0, got 'x'"),
    ("cem(population=10,elites=20)", "setting elites must be an integer >= 1 and <= 10, got 20"),
    ("adam(bogus=1)", "bad settings for optimizer 'adam'"),
])
def test_bad_specs(spec, message):
    with pytest.raises((OptimizerError, ValueError), match=message.replace("(", r"\(")):
        make_optimizer(spec)


def test_negative_budget(quadratic):
    with pytest.raises(OptimizerError, match="budget must be >= 0"):
        run_optimizer(make_optimizer("adam"), quadratic[0], -1)


def test_log_score_schedule():
    sched = score_schedule(500, "log")
    assert sched[:11] == list(range(11)) and sched[-1] == 500 and 100 in sched and len(sched) < 40


def test_registry_accepts_new_optimizers(quadratic):
    @register("test-stay")
    class Stay(PolicyOptimizer):
        def iterate(self, objective, start, iterations, generator):
            for _ in range(iterations):
                yield start

    trace = run_optimizer(make_optimizer("test-stay"), quadratic[0], 3)
    assert torch.equal(trace.scores[0], trace.scores[-1]) and sum(trace.q_evals) == 0
