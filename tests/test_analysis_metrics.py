"""Analyses on objectives whose truth is known: mode coverage, amortization gap, fixed-target
runtimes and ECDFs, bootstrap coverage, exploitation statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optbench.metrics.bootstrap import Interval, bootstrap, bootstrap_difference, order_quantile
from optbench.metrics.exploitation import RolloutUnavailable
from optbench.metrics.fixed_target import average_runtime, ecdf, ecdf_steps, runtimes
from optbench.metrics.modes import cluster_runs, mode_coverage, pairwise_action_distance
from optbench.metrics.summary import CellGroup, normalized, normalized_of_means
from optbench.objectives.analytic import _BUMP_CENTERS
from optbench.optimizers import make_optimizer
from optbench.optimizers.base import PolicyOptimizer
from optbench.runner.drive import run_optimizer
from optbench.runner.experiments import (amortization_gap, choose_dims, exploitation_stats, grid_limits, landscape_grid,
                                         random_starts, record_trajectory, rollout_check, run_replicas)

from conftest import analytic_problem


@pytest.fixture(scope="module")
def multimodal6():
    return analytic_problem("multimodal", 2, 0.02, n_states=6)


def known_distinct_optima(modes: torch.Tensor, threshold: float) -> np.ndarray:
    """Distinct local optima per state (known modes clustered like runs): ``[B]``."""
    mp = modes.double().numpy()  # [B,K,2A]
    A = mp.shape[-1] // 2
    d = pairwise_action_distance(mp[..., :A].transpose(1, 0, 2))
    return np.array([cluster_runs(d[b], threshold * 2 * math.sqrt(A)).max() + 1 for b in range(len(mp))])


def basin_starts(objective, per_basin: int = 2, std: float = 0.2) -> torch.Tensor:
    """Starts ``[R, B, 2A]``: every combination of bump centres, ``per_basin`` runs each."""
    A = objective.action_dim
    combos = torch.cartesian_prod(*[torch.tensor(_BUMP_CENTERS, dtype=torch.float64)] * A).reshape(-1, A)
    combos = combos.repeat_interleave(per_basin, 0)  # [R,A]
    mu = torch.atanh(combos).unsqueeze(1).expand(-1, objective.batch_size, -1)
    log_std = torch.full_like(mu, math.log(std))
    return torch.cat([mu, log_std], -1).float()


# ---------------------------------------------------------------------- mode coverage
def test_mode_coverage_counts_every_optimum_when_started_in_each_basin(multimodal6):
    objective, optimum = multimodal6
    starts = basin_starts(objective)  # 4 basins × 2 runs
    params, scores = run_replicas(make_optimizer("adam(lr=0.05)"), objective, 150, len(starts), seed=3, starts=starts)
    mc = mode_coverage(params, scores, threshold=0.1)
    truth = known_distinct_optima(optimum.modes, 0.1)
    assert (truth == 4).all()  # the seeded objective really has 2^|A| separated optima at every state
    assert (mc.n_modes == truth).all(), (mc.n_modes, truth)
    assert mc.runs == 8 and (mc.best_share == 0.25).all()
    # each mode's scored J is the known value of that optimum (best first), up to Monte Carlo scoring error
    for b in range(objective.batch_size):
        assert np.allclose(mc.mode_values[b], optimum.mode_values[b].numpy(), atol=0.03), (b, mc.mode_values[b])
    assert (mc.mean_distance > 0.2).all() and (mc.mean_distance <= 1).all()


def test_deterministic_amortized_optimizer_is_exactly_one_mode(multimodal6):
    objective, optimum = multimodal6

    class Oracle(PolicyOptimizer):
        amortized, stochastic = True, False

        def iterate(self, objective, start, iterations, generator):
            for _ in range(iterations):
                yield optimum.params.to(objective.states.dtype)

    params, scores = run_replicas(Oracle(), objective, 1, 5, starts=random_starts(objective, 5))
    mc = mode_coverage(params, scores)
    assert (mc.mean_distance == 0).all() and (mc.n_modes == 1).all() and (mc.best_share == 1).all()


def test_replicas_are_independent_runs_and_single_cluster_on_a_concave_objective(quadratic):
    objective, _ = quadratic
    sub = objective.subset(list(range(4)))
    params, scores = run_replicas(make_optimizer("cmaes"), sub, 40, 5, seed=0)
    assert params.shape == (5, 4, 6) and scores.shape == (5, 4)
    assert not torch.equal(params[0], params[1])  # different random streams
    mc = mode_coverage(params, scores)
    assert (mc.n_modes == 1).all() and 0 < mc.mean_distance.max() < 0.05


def test_clustering_is_complete_linkage_at_the_threshold():
    # a chain 0 - 0.6 - 1.2: single linkage at 0.7 would join all three, complete linkage does not
    d = np.array([[0, 0.6, 1.2], [0.6, 0, 0.6], [1.2, 0.6, 0]])
    assert cluster_runs(d, 0.7).max() + 1 == 2
    assert cluster_runs(d, 1.3).max() + 1 == 1
    assert cluster_runs(d, 0.5).max() + 1 == 3


# ---------------------------------------------------------------------- amortization gap
def test_gap_is_zero_at_optima_and_large_from_the_start(quadratic, multimodal6):
    objective, optimum = quadratic
    at_opt = amortization_gap(objective, optimum.params, seed=1)
    from_start = amortization_gap(objective, objective.initial_params(), seed=1)
    start, ref = from_start.before, objective.score(optimum.params).double().numpy()[None]
    assert abs(at_opt.gap.mean()) < 2e-3 and np.abs(at_opt.gap).max() < 1e-2
    assert from_start.gap.mean() > 0.3 and from_start.gap.min() > 0
    norm = at_opt.normalized_interval(start[0], ref[0], resamples=300)
    assert abs(norm.estimate) < 2e-3
    # a local optimum that is not the global one also has no gap: the gap is local by definition
    mm, mm_opt = multimodal6
    second = amortization_gap(mm, mm_opt.modes[:, 1], seed=2)
    assert abs(second.gap.mean()) < 3e-3


def test_gap_of_several_seeds_in_one_batched_run(quadratic):
    objective, optimum = quadratic
    params = torch.stack([optimum.params, objective.initial_params()])  # [R=2,B,2A]
    res = amortization_gap(objective, params, steps=20, seed=0)
    assert res.before.shape == (2, objective.batch_size)
    assert np.allclose(res.before[0], objective.score(optimum.params).numpy(), atol=1e-6)
    assert np.allclose(res.gap, (res.after - res.before).mean(0))


# ---------------------------------------------------------------------- fixed target
def _group(scores: np.ndarray, iterations: list[int], seconds: float = 0.01, q: int = 40) -> CellGroup:
    R, T, B = scores.shape
    budget = iterations[-1]
    return CellGroup("obj", "opt", np.asarray(iterations), scores, np.full((R, budget), seconds),
                     np.full((R, budget), q), np.zeros((R, budget)), np.zeros((R, B, 4)))


def test_ecdf_of_a_perfect_optimizer_is_a_step_at_its_first_iteration():
    start, ref = np.array([0.0, 1.0, -2.0]), np.array([3.0, 1.5, 5.0])
    scores = np.stack([start] + [ref] * 10)[None]  # reaches J_ref at iteration 1 and stays
    rt = runtimes(_group(scores, list(range(11))), start, ref)
    assert (rt.runtime["iterations"] == 1).all() and (rt.runtime["q_evals"] == 40 / 3).all()
    assert np.allclose(rt.runtime["seconds"], 0.01)
    grid = np.array([0, 0.5, 0.999, 1, 2, 10])
    assert ecdf(rt.runtime["iterations"], grid).tolist() == [0, 0, 0, 1, 1, 1]
    xs, ys = ecdf_steps(rt.runtime["iterations"], upto=10)
    assert xs.tolist() == [1, 10] and ys.tolist() == [1, 1]


def test_runtimes_follow_the_scored_schedule_and_art_counts_failures():
    start, ref = np.zeros(2), np.ones(2)
    # state 0 reaches 0.5 at scored iteration 5 (first scored point ≥ 0.5), state 1 never
    scores = np.array([[[0, 0], [0.2, 0.1], [0.6, 0.2], [0.95, 0.3]]], dtype=float)
    rt = runtimes(_group(scores, [0, 1, 5, 20]), start, ref, targets=(0.5, 0.9), interpolate=False)
    assert rt.runtime["iterations"][:, 0].tolist() == [[5, 20], [math.inf, math.inf]]
    # interpolated log-linearly between the bracketing scored points, rounded up to a whole iteration:
    # 0.5 = 0.2 + 0.75·(0.6 − 0.2) at log t = 0.75·log 5 (t = 3.34 → 4); 0.9 at t = 5·4^(6/7) = 16.4 → 17
    rt_i = runtimes(_group(scores, [0, 1, 5, 20]), start, ref, targets=(0.5, 0.9))
    assert rt_i.runtime["iterations"][:, 0].tolist() == [[4, 17], [math.inf, math.inf]]
    assert rt_i.runtime["q_evals"][0, 0].tolist() == [4 * 40 / 2, 17 * 40 / 2]  # cost at that iteration, per state
    assert "flops" not in rt_i.runtime  # the cells recorded no FLOPs: the unit is unavailable
    # aRT: (5 + 20 budget of the failure) / 1 success
    art = average_runtime(rt.runtime["iterations"][None, :, :, 0], rt.budget["iterations"][None])
    assert art.tolist() == [25.0]
    assert average_runtime(np.full((1, 3), np.inf), np.ones((1, 3))).tolist() == [math.inf]


# ---------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("level", [0.95, 0.8])
def test_bootstrap_intervals_cover_the_true_mean_at_their_nominal_rate(level):
    rng = np.random.default_rng(123)
    reps, n, mean = 400, 40, 3.0
    hits = 0
    for k in range(reps):
        x = rng.normal(mean, 2.0, size=n)
        hits += bootstrap(x, "mean", resamples=1000, level=level, seed=k).contains(mean)
    coverage = hits / reps
    # percentile intervals under-cover slightly at n = 40 (variance factor (n−1)/n); binomial SE ≈ 0.011–0.02
    assert abs(coverage - level) < 0.05, coverage


def test_bootstrap_statistics_with_infinities_and_differences():
    iv = bootstrap(np.array([1.0, np.inf, 2.0]), lambda s: s.max(1))
    assert iv.estimate == math.inf and iv.high == math.inf and "∞" in iv.fmt()
    assert order_quantile(np.array([1.0, 2.0, 3.0, np.nan]), 0.5) == 2.0
    d = bootstrap_difference(np.zeros(30), np.ones(50))
    assert d.estimate == 1 and d.low == d.high == 1
    assert Interval(0.5, 0.4, 0.6).fmt(percent=True) == "50% [40, 60]"
    with pytest.raises(ValueError):
        bootstrap(np.array([]))


# ---------------------------------------------------------------------- exploitation, landscape
def test_exploitation_statistics_on_a_saturating_objective():
    objective, optimum = analytic_problem("saturating", 3, 0.1, n_states=4, score_samples=200)
    s0 = exploitation_stats(objective, objective.initial_params())
    s1 = exploitation_stats(objective, optimum.params)
    assert (s0.disagreement == 0).all()  # one-member analytic Q: nothing to disagree
    assert s1.saturated.mean() > s0.saturated.mean()  # the optimum pushes actions to the bounds
    assert s1.q_hat.mean() > s0.q_hat.mean()
    edge = objective.initial_params(mu=5.0, std=0.01)
    assert (exploitation_stats(objective, edge).mean_saturated == 1).all()


def test_rollout_check_needs_a_package_with_mujoco_states():
    class NoStates:
        state_info, path, direct = {}, "pkg", None

    with pytest.raises(RolloutUnavailable):
        rollout_check(NoStates(), "benchmark", torch.zeros(1, 4), [0])


def test_recorded_trajectory_retraces_the_run_and_landscape_peaks_at_the_optimum(quadratic):
    objective, optimum = quadratic
    sub = objective.subset([0, 1])
    adam = make_optimizer("adam(lr=0.05)")
    path = record_trajectory(adam, sub, 30, seed=4)
    trace = run_optimizer(make_optimizer("adam(lr=0.05)"), sub, 30, seed=4)
    assert path.shape == (31, 2, 6) and torch.equal(path[-1], trace.final_params)
    assert torch.equal(path[0], sub.initial_params())
    dims = choose_dims(np.stack([optimum.params[0].numpy(), sub.initial_params()[0].numpy()]))
    xlim, ylim = grid_limits([optimum.params[0].numpy(), path[:, 0].numpy()], dims)
    assert xlim[0] <= -1.5 and xlim[1] >= 1.5
    xs, ys, values = landscape_grid(objective, 0, optimum.params[0], dims, xlim=xlim, ylim=ylim, resolution=31)
    assert values.shape == (31, 31)
    j, i = np.unravel_index(np.argmax(values), values.shape)
    mu_opt = optimum.params[0, list(dims)].numpy()
    assert abs(xs[i] - mu_opt[0]) <= xs[1] - xs[0] and abs(ys[j] - mu_opt[1]) <= ys[1] - ys[0]


def test_summary_normalized_score_is_a_ratio_of_means():
    """One state the start nearly solves (J_ref − J_start = 1e-3) and an optimizer that loses
    0.01 there: the mean of per-state ratios turns a clear overall gain negative; the ratio of
    means reports the gain (2 + 2 − 0.01 of 2 + 2 + 0.001)."""
    start = np.array([0.0, 0.0, 5.0])
    ref = np.array([2.0, 2.0, 5.001])
    final = np.array([2.0, 2.0, 4.99])
    assert normalized(final, start, ref).mean() < 0
    assert normalized_of_means(final, start, ref) == pytest.approx(3.99 / 4.001)
    assert math.isnan(normalized_of_means(final, start, start))
