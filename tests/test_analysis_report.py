"""`optbench report` and `optbench compare` end to end on a tiny analytic suite, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main
from optbench.metrics.fixed_target import ecdf, runtimes
from optbench.objectives.analytic import solve_optimum
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.reporting.report import ReportError, load_run, rebuild_run

SUITE = """
name = "analysis-tiny"
description = "one multimodal analytic objective"
optimizers = ["analysis-test-perfect", "adam(lr=0.05)", "cem(population=50,elites=5)"]

[settings]
states = 4
iterations = 12
seeds = [0, 1]
score_samples = 200
score_at = "all"

[[objectives]]
name = "multimodal-a2"
source = "analytic"
profile = "multimodal"
state_dim = 5
action_dim = 2
alpha = 0.02
"""


@register("analysis-test-perfect")
class Perfect(PolicyOptimizer):
    """Jumps to the exactly known optimum at its first iteration (analytic objectives only)."""

    stochastic = False

    def iterate(self, objective, start, iterations, generator):
        best = solve_optimum(objective.q, objective.states.cpu(), float(objective.alpha)).params
        for _ in range(iterations):
            yield best.to(objective.device, objective.states.dtype)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("analysis")
    (root / "suite").mkdir()
    (root / "suite" / "suite.toml").write_text(SUITE)
    out = root / "run"
    assert main(["run", "--suite", str(root / "suite"), "--out", str(out), "--no-plots"]) == 0
    return out


def test_perfect_optimizer_ecdf_from_a_stored_run(tiny_run):
    run = load_run(tiny_run)
    start = run.start("multimodal-a2")
    ref, known = run.reference("multimodal-a2")
    assert known
    rt = runtimes(run.groups[("multimodal-a2", "analysis-test-perfect")], start, ref)
    assert (rt.runtime["iterations"] == 1).all()
    assert ecdf(rt.runtime["iterations"], np.array([0, 0.9, 1, 12])).tolist() == [0, 0, 1, 1]


def test_report_writes_markdown_and_plots(tiny_run, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["report", str(tiny_run), "--out", str(out), "--mode-runs", "3", "--mode-states", "2",
            "--resamples", "200", "--landscape-resolution", "15", "--quiet"]
    assert main(args) == 0
    text = (out / "report.md").read_text()
    for section in ("## Results", "## Fixed-target statistics", "## Amortization gap", "## Mode coverage",
                    "## Landscapes", "## Exploitation checks", "aRT it → 90%", "Known distinct local optima"):
        assert section in text, section
    pngs = {p.name for p in out.glob("*.png")}
    assert {"j_vs_iteration.png", "j_vs_time.png", "ecdf.png", "gap.png", "modes.png",
            "landscape_multimodal-a2.png"} <= pngs
    for name in pngs:  # every plot is referenced, every reference exists: the directory is self-contained
        assert f"]({name})" in text
    assert "wrote" in capsys.readouterr().out
    # the perfect optimizer reaches every target at iteration 1 and has no amortization gap to speak of
    row = next(line for line in text.splitlines() if line.startswith("| analysis-test-perfect | 100% "))
    assert row.count("100% [100, 100]") == 3 and "| 1 [1, 1] | 1 [1, 1] | 1 [1, 1] |" in row


def test_rebuilt_objective_must_match_the_stored_run(tiny_run, tmp_path):
    rebuilt = rebuild_run(load_run(tiny_run))
    assert rebuilt.objective("multimodal-a2").objective.batch_size == 4
    assert rebuilt.budget("adam(lr=0.05)") == 12
    # a run whose stored start scores were produced by another objective is refused
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(tiny_run, copy)
    rec_path = copy / "objectives" / "multimodal-a2.json"
    rec = json.loads(rec_path.read_text())
    rec["start_scores"] = [s + 1.0 for s in rec["start_scores"]]
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(ReportError, match="does not match the stored run"):
        rebuild_run(load_run(copy)).objective("multimodal-a2")


def test_compare_two_runs(tiny_run, tmp_path, capsys):
    assert main(["compare", str(tiny_run), str(tiny_run), "--out", str(tmp_path / "cmp"), "--resamples", "100"]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "identical (paired Δ)" in text and (tmp_path / "cmp" / "compare_ecdf.png").stat().st_size > 5000
    assert "| 0 [0, 0] |" in text  # a run compared with itself differs by exactly 0
    assert "analysis-test-perfect" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "not-a-run", "no-cells", "bad-json", "file", "no-objective", "bad-cell"])
def test_bad_input_gives_one_line_error(tiny_run, tmp_path, capsys, case):
    import shutil

    target = tmp_path / case
    if case in ("no-objective", "bad-cell"):
        shutil.copytree(tiny_run, target)
        if case == "no-objective":
            (target / "objectives" / "multimodal-a2.json").unlink()
        else:
            cell = next((target / "cells").glob("*.json"))
            cell.write_text(cell.read_text()[:50])
    elif case == "not-a-run":
        target.mkdir()
    elif case == "no-cells":
        target.mkdir()
        (target / "run.json").write_text((tiny_run / "run.json").read_text())
    elif case == "bad-json":
        target.mkdir()
        (target / "run.json").write_text("{not json")
    elif case == "file":
        target.write_text("x")
    assert main(["report", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert main(["compare", str(tiny_run), str(target)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_bad_options_give_one_line_errors(tiny_run, capsys):
    assert main(["report", str(tiny_run), "--mode-runs", "0"]) == 2
    assert "--mode-runs must be >= 1" in capsys.readouterr().err
    assert main(["report", str(tiny_run), "--landscape-state", "99", "--no-modes", "--no-gap", "--out",
                 str(tiny_run / "r")]) == 2
    assert "--landscape-state must be in 0..3" in capsys.readouterr().err


def test_rollout_check_restores_the_stored_mujoco_state():
    """Shipped Hopper package: restoring qpos/qvel reproduces the stored observation, and a short
    rollout from the direct actor's own mean action gives a finite soft return near Q̂."""
    import torch

    from optbench.agents.package import load_package
    from optbench.metrics.exploitation import rollout_check
    from optbench.suites.spec import find_suite

    pkg = load_package(find_suite("mujoco-states").parent / "packages" / "hopper-direct")
    params = pkg.direct(pkg.states["benchmark"][:2])
    rc = rollout_check(pkg, "benchmark", params, [0, 1], rollouts=1, horizon=30, seed=0)
    assert rc.restore_error.max() < 1e-5
    assert np.isfinite(rc.returns).all() and rc.returns.shape == (2, 1)
    assert np.all(np.abs(rc.error) < 0.5 * np.abs(rc.q_hat) + 20), (rc.q_hat, rc.returns)
    assert torch.is_tensor(params)
