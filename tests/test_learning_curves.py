"""Learning-curve studies: rliable's estimators (hand-computed cases, and rliable itself when it
imports), `optbench curves analyze` on synthetic records, `collect`'s refusals, and the
amortization gap over training on tiny trained runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from optbench.agents.checkpoint import save_checkpoint
from optbench.agents.sac import SACConfig
from optbench.cli import main
from optbench.metrics import aggregates as ag

# ---------------------------------------------------------------------------------- estimators


def test_iqm_and_mean_hand_computed():
    x = np.array([[1.0], [2], [3], [4], [5], [6], [7], [100]])  # 8 runs: IQM drops 2 from each end
    assert ag.aggregate_iqm(x) == pytest.approx(4.5)
    assert ag.aggregate_mean(x) == pytest.approx(16.0)
    three = np.array([[1.0], [2], [30]])  # floor(0.25 * 3) = 0: the IQM of three runs is their mean
    assert ag.aggregate_iqm(three) == pytest.approx(11.0)
    two_tasks = np.array([[1.0, 10], [3, 30]])  # mean of per-task means; IQM over all four scores
    assert ag.aggregate_mean(two_tasks) == pytest.approx((2 + 20) / 2)
    assert ag.aggregate_iqm(two_tasks) == pytest.approx((3 + 10) / 2)


def test_bootstrap_interval_hand_computed():
    """Runs 0, 10, 20, 30 (one task): of the 4^4 equally likely resamples, the mean is 0 in 1,
    2.5 in 4 and 5 in 10 (cumulative 1.95 % < 2.5 % < 5.9 %), so the 95 % percentile interval
    of the mean is [5, 25]; the IQM (middle two of four) is 0 in the 13 resamples with three or
    more zeros (5.1 %), so its interval is [0, 30]."""
    x = np.array([[0.0], [10], [20], [30]])
    exact = sorted(np.mean(x[list(i), 0]) for i in itertools.product(range(4), repeat=4))
    assert exact[int(0.025 * 256)] == 5.0 and exact[int(0.975 * 256)] == 25.0
    mean = ag.interval_estimate(x, "mean", reps=20_000, seed=1)
    assert (mean.estimate, mean.low, mean.high) == (15.0, 5.0, 25.0)
    iqm = ag.interval_estimate(x, "iqm", reps=20_000, seed=1)
    assert (iqm.estimate, iqm.low, iqm.high) == (15.0, 0.0, 30.0)
    # [runs, tasks, steps]: pointwise intervals, each step as if alone
    curve = ag.interval_estimate(np.stack([x, x + 100], axis=-1), "mean", reps=20_000, seed=1)
    assert [(c.low, c.high) for c in curve] == [(5.0, 25.0), (105.0, 125.0)]


def test_probability_of_improvement_hand_computed():
    x, y = np.array([[3.0], [4], [5]]), np.array([[1.0], [2], [4]])
    # pairs x > y: 3>{1,2}, 4>{1,2}, 5>{1,2,4} = 7, one tie (4, 4) counts half: 7.5 / 9
    assert ag.probability_of_improvement(x, y) == pytest.approx(7.5 / 9)
    u = scipy.stats.mannwhitneyu(x[:, 0], y[:, 0], alternative="greater").statistic
    assert ag.probability_of_improvement(x, y) == pytest.approx(u / 9)
    assert ag.probability_of_improvement(x, x) == 0.5
    iv = ag.improvement_interval(np.array([[10.0], [11]]), np.array([[0.0], [1]]), reps=500)
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)


def test_estimators_match_rliable():
    """Same definitions and the same random stream as rliable: after np.random.seed(s), rliable's
    intervals equal ours with seed s (skipped where rliable does not import)."""
    try:
        from rliable import library as rly
        from rliable import metrics
    except Exception as exc:  # e.g. arch 7 under pandas 3 (see optbench.metrics.aggregates)
        pytest.skip(f"rliable does not import here: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
    g = np.random.default_rng(0)
    x, y, c = g.normal(size=(7, 2)), g.normal(size=(5, 2)), g.normal(size=(6, 1, 4))
    for name, fn in (("iqm", metrics.aggregate_iqm), ("mean", metrics.aggregate_mean)):
        np.random.seed(3)
        point, ci = rly.get_interval_estimates({"a": x}, lambda s: np.array([fn(s)]), reps=400)
        mine = ag.interval_estimate(x, name, reps=400, seed=3)
        np.testing.assert_allclose([mine.estimate, mine.low, mine.high], [point["a"][0], *ci["a"][:, 0]], rtol=1e-12)
    np.random.seed(4)
    point, ci = rly.get_interval_estimates(
        {"a": c}, lambda s: np.array([metrics.aggregate_iqm(s[..., k]) for k in range(4)]), reps=300)
    mine = ag.interval_estimate(c, "iqm", reps=300, seed=4, chunk_elements=100)
    np.testing.assert_allclose([[m.low for m in mine], [m.high for m in mine]], ci["a"], rtol=1e-12)
    np.random.seed(5)
    point, ci = rly.get_interval_estimates({"a": [x, y]}, metrics.probability_of_improvement, reps=300)
    mine = ag.improvement_interval(x, y, reps=300, seed=5)
    np.testing.assert_allclose([mine.estimate, mine.low, mine.high], [point["a"], *np.ravel(ci["a"])], rtol=1e-12)


# ---------------------------------------------------------------------------------- analyze


def _record(policy: str, iterations: int, seed: int, finals: float, steps=(1000, 2000), episodes=2) -> dict:
    """Episode returns v - 1 and v + 1 around the run's score v (so the score is the episode mean);
    the score at the last step is ``finals``, earlier ones half of it."""
    rets = []
    for i, _ in enumerate(steps):
        v = finals if i == len(steps) - 1 else finals / 2
        rets.append([v - 1.0, v + 1.0] + [v] * (episodes - 2))
    return {"task": "Hopper-v5", "policy": policy, "iterations": iterations, "seed": seed, "steps": list(steps),
            "episodes": episodes, "returns": rets, "wall_clock": {"s_per_step": 0.01 * (1 + iterations)}}


def test_analyze_synthetic_records(tmp_path, capsys):
    direct = [1.0, 2, 3, 4, 5, 6, 7, 100]  # IQM 4.5, mean 16
    it5 = [0.0, 10, 20, 30]  # IQM 15 [0, 30], mean 15 [5, 25]
    records = [_record("direct", 0, s, v) for s, v in enumerate(direct)]
    records += [_record("iterative", 5, s, v) for s, v in enumerate(it5)]
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"records": records}))
    out = tmp_path / "out"
    assert main(["curves", "analyze", str(summary), "--out", str(out), "--reps", "20000", "--seed", "1"]) == 0
    res = json.loads((out / "learning_curves.json").read_text())["tasks"]["Hopper-v5"]
    d, i = res["configurations"]
    assert (d["label"], d["n_seeds"], i["label"], i["n_seeds"]) == ("direct", 8, "iterative-5", 4)
    assert d["final"]["iqm"]["estimate"] == pytest.approx(4.5) and d["final"]["mean"]["estimate"] == pytest.approx(16)
    assert (i["final"]["mean"]["low"], i["final"]["mean"]["high"]) == (5.0, 25.0)
    assert (i["final"]["iqm"]["low"], i["final"]["iqm"]["high"]) == (0.0, 30.0)
    assert i["curve"]["mean"][0]["estimate"] == pytest.approx(7.5)  # step 1000: half of the final scores
    assert d["curve"]["iqm"][1] == d["final"]["iqm"]
    # P(iterative-5 > direct) over the 32 pairs, no ties: 0 beats none, 10 beats 7, 20 and 30 beat 7
    (p,) = res["improvement"]
    assert (p["x"], p["y"]) == ("iterative-5", "direct")
    assert p["estimate"] == pytest.approx((0 + 7 + 7 + 7) / 32)
    assert p["low"] <= p["estimate"] <= p["high"]
    md = (out / "learning_curves.md").read_text()
    assert "direct 8, iterative-5 4" in md and "2 deterministic episodes per evaluation" in md
    assert "| iterative-5 | 4 | 15 [0, 30] | 15 [5, 25] |" in md
    assert (out / "curves_Hopper-v5.png").stat().st_size > 0 and (out / "final_Hopper-v5.png").stat().st_size > 0
    # a step off the grid, a bad record: one line each, exit 2
    assert main(["curves", "analyze", str(summary), "--out", str(out), "--at", "1500"]) == 2
    bad = dict(records[0], returns=[[1.0, 2.0]])
    summary.write_text(json.dumps({"records": [bad]}))
    assert main(["curves", "analyze", str(summary), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not on the Hopper-v5 evaluation grid" in err and "returns must hold 2 per-episode returns" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------- collect


def _fake_run(root: Path, seed: int, steps: list[int], episodes: int = 3, legacy: bool = False, **cfg) -> Path:
    """A run directory whose checkpoint metadata looks like the trainer's (no real networks)."""
    root.mkdir(parents=True)
    config = SACConfig(task="Hopper-v5", seed=seed, eval_every=1000, eval_episodes=episodes, **cfg).to_dict()
    hist = []
    for s in steps:
        rets = [float(s / 100 + seed + k) for k in range(episodes)]
        e = {"step": s, "mean": float(np.mean(rets)), "std": float(np.std(rets)), "episodes": episodes}
        if not legacy:
            e["returns"] = rets
        hist.append(e)
    meta = {"task": "Hopper-v5", "policy": config["policy"], "state_dim": 11, "action_dim": 3, "config": config,
            "step": steps[-1], "episodes": 10, "wall_time": 2.0 * steps[-1], "eval_history": hist}
    save_checkpoint(root / "checkpoint.safetensors", {"x": torch.zeros(1)}, meta)
    return root


def test_collect_checks_grids_episodes_and_seed_scheme(tmp_path, capsys):
    a = _fake_run(tmp_path / "a", 0, [1000, 2000, 3000])
    b = _fake_run(tmp_path / "b", 1, [1000, 2000])
    out = tmp_path / "summary.json"
    assert main(["curves", "collect", str(a), str(b), "--out", str(out)]) == 2
    assert "different evaluation grids" in capsys.readouterr().err and not out.exists()
    assert main(["curves", "collect", str(a), str(b), "--out", str(out), "--common-grid"]) == 0
    err = capsys.readouterr().err
    assert "step 3000 left out" in err
    doc = json.loads(out.read_text())
    assert [r["steps"] for r in doc["records"]] == [[1000, 2000], [1000, 2000]]
    assert doc["restricted"]["dropped"] == {str(a): [3000]}
    assert doc["records"][0]["returns"][1] == [20.0, 21.0, 22.0] and doc["records"][0]["wall_clock"]["s_per_step"] == 2.0
    c = _fake_run(tmp_path / "c", 2, [1000, 2000], episodes=5)
    assert main(["curves", "collect", str(b), str(c), "--out", str(out)]) == 2
    assert "different evaluation episode counts" in capsys.readouterr().err
    old = _fake_run(tmp_path / "old", 3, [1000, 2000], legacy=True)
    assert main(["curves", "collect", str(b), str(old), "--out", str(out)]) == 2
    assert "have no per-episode returns" in capsys.readouterr().err
    other = _fake_run(tmp_path / "other", 4, [1000, 2000], lr=1e-3)
    assert main(["curves", "collect", str(b), str(other), "--out", str(out)]) == 2
    assert "differ in lr" in capsys.readouterr().err
    assert main(["curves", "collect", str(b), str(b), "--out", str(out)]) == 2
    assert "appears twice" in capsys.readouterr().err
    assert main(["curves", "collect", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a training run directory" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------- gap over training


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """A direct and an iterative (2 iterations) agent, 600 steps, snapshots at 200, 400, 600."""
    from optbench.agents.trainer import Trainer

    root = tmp_path_factory.mktemp("tiny-runs")
    out = {}
    for policy in ("direct", "iterative"):
        cfg = SACConfig(task="Hopper-v5", policy=policy, iterations=2, steps=600, random_steps=200, batch_size=32,
                        hidden=(32, 32), model_pretrain_updates=10, eval_every=200, eval_episodes=1,
                        checkpoint_every=10**9)
        Trainer(cfg, root / policy, progress=False).train()
        out[policy] = root / policy
    return out


@pytest.mark.slow
def test_gap_over_training(tiny_runs, tmp_path, capsys):
    from optbench.agents.package import export_package, load_package
    from optbench.runner.experiments import amortization_gap
    from optbench.optimizers.base import make_optimizer
    from optbench.runner.drive import run_optimizer

    gap_dir = tmp_path / "r8" / "gap"
    small = ["--states", "16", "--score-samples", "32", "--quiet"]
    assert main(["curves", "gap", str(tiny_runs["direct"]), "--steps", "200,600", "--out", str(gap_dir), *small]) == 0
    assert main(["curves", "gap", str(tiny_runs["iterative"]), "--steps", "400", "--out", str(gap_dir), *small]) == 0
    d = json.loads((gap_dir / "gap-Hopper-v5-direct-s0.json").read_text())
    i = json.loads((gap_dir / "gap-Hopper-v5-iterative-2-s0.json").read_text())
    assert [r["step"] for r in d["results"]] == [200, 600] and [r["budget"] for r in d["results"]] == [1, 1]
    assert [r["step"] for r in i["results"]] == [400] and i["results"][0]["budget"] == 2
    for r in d["results"] + i["results"]:
        g = r["gap"]
        assert g["low"] <= g["estimate"] <= g["high"]
        assert g["estimate"] == pytest.approx(r["J_after"] - r["J_before"], abs=1e-9)

    # the same numbers as the report's protocol run by hand on the exported snapshot
    snap = tiny_runs["direct"] / "snapshots" / "step-00000600.safetensors"
    export_package(snap, tmp_path / "pkg", n_states=16, heldout=1, eval_episodes=2, seed=2024)
    pkg = load_package(tmp_path / "pkg")
    obj = pkg.objective("benchmark", n_states=16, score_samples=32, score_seed=12345)
    params = run_optimizer(make_optimizer("direct", package=pkg), obj, 1, seed=0).final_params
    ref = amortization_gap(obj, params.unsqueeze(0), seed=0)
    assert d["results"][1]["J_before"] == pytest.approx(float(ref.before.mean()), rel=1e-12)
    assert d["results"][1]["gap"]["estimate"] == pytest.approx(float(ref.gap.mean()), rel=1e-9)

    # a re-run keeps what was measured; a step without snapshot is one line
    assert main(["curves", "gap", str(tiny_runs["direct"]), "--steps", "200", "--out", str(gap_dir), *small]) == 0
    assert json.loads((gap_dir / "gap-Hopper-v5-direct-s0.json").read_text())["results"] == d["results"]
    assert main(["curves", "gap", str(tiny_runs["direct"]), "--steps", "300", "--out", str(gap_dir), *small]) == 2
    assert "no snapshot at step 300" in capsys.readouterr().err

    # real runs collect and analyze, with the gap files found beside the summary
    summary = tmp_path / "r8" / "summary.json"
    assert main(["curves", "collect", str(tiny_runs["direct"]), str(tiny_runs["iterative"]),
                 "--out", str(summary)]) == 0
    doc = json.loads(summary.read_text())
    assert [(r["label"], r["steps"], r["episodes"]) for r in doc["records"]] == [
        ("direct", [200, 400, 600], 1), ("iterative-2", [200, 400, 600], 1)]
    assert all(r["wall_clock"]["s_per_step_learning"] > 0 for r in doc["records"])
    assert main(["curves", "analyze", str(summary), "--out", str(tmp_path / "r8"), "--reps", "2000"]) == 0
    md = (tmp_path / "r8" / "learning_curves.md").read_text()
    assert "Amortization gap over training: Hopper-v5" in md and "beta_train" in md
