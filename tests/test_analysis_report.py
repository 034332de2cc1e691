"""`optbench analyze`, `optbench report` and `optbench compare` end to end on a tiny analytic suite,
the report's independence from everything that builds objectives, resuming, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main
from optbench.metrics.fixed_target import ecdf, runtimes
from optbench.objectives.analytic import solve_optimum
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.runner.analysis import AnalysisError, AnalysisOptions, analyze_run, pending_units, rebuild_run
from optbench.runner.stored import ANALYSES, ANALYSIS_DIR, load_run

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--mode-runs", "3", "--mode-states", "2", "--landscape-resolution", "15", "--quiet"]

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
    """The tiny suite run and analysed (small analysis settings)."""
    root = tmp_path_factory.mktemp("analysis")
    (root / "suite").mkdir()
    (root / "suite" / "suite.toml").write_text(SUITE)
    out = root / "run"
    assert main(["run", "--suite", str(root / "suite"), "--out", str(out), "--no-plots"]) == 0
    assert main(["analyze", str(out), *SMALL]) == 0
    return out


def _copy_cells_only(run: Path, target: Path) -> Path:
    """The run without its analyses."""
    shutil.copytree(run, target, ignore=shutil.ignore_patterns(ANALYSIS_DIR))
    return target


@pytest.mark.slow
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
    args = ["report", str(tiny_run), "--out", str(out), "--resamples", "200", "--quiet"]
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
    assert "Not analysed" not in text


BLOCKED = ("optbench.suites.sources", "optbench.agents.package", "optbench.objectives.policy_objective",
           "optbench.optimizers", "optbench.runner.analysis", "optbench.runner.experiments", "optbench.runner.grid")


@pytest.mark.slow
def test_report_reads_only_the_store(tiny_run, tmp_path):
    """`optbench report` of an analysed run, with every module that builds objectives or runs optimizers
    unimportable: the same report, and none of them imported."""
    code = ("import sys\n"
            f"for name in {BLOCKED!r}:\n"
            "    sys.modules[name] = None  # import raises ImportError\n"
            "from optbench.cli import main\n"
            f"rc = main(['report', {str(tiny_run)!r}, '--out', {str(tmp_path / 'blocked')!r}, '--resamples', '200',"
            " '--quiet'])\n"
            "assert rc == 0, rc\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('optbench') and sys.modules[m] is not None)\n"
            "print(' '.join(loaded))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout.split()
    assert not [m for m in loaded if m.startswith(("optbench.objectives", "optbench.optimizers", "optbench.suites",
                                                   "optbench.agents"))], loaded
    assert main(["report", str(tiny_run), "--out", str(tmp_path / "free"), "--resamples", "200", "--quiet"]) == 0
    strip = lambda p: [ln for ln in p.read_text().splitlines() if not ln.startswith("*Generated by")]  # noqa: E731
    assert strip(tmp_path / "blocked" / "report.md") == strip(tmp_path / "free" / "report.md")


def test_report_of_a_run_not_analysed_lists_what_is_missing(tiny_run, tmp_path, capsys):
    run = _copy_cells_only(tiny_run, tmp_path / "fresh")
    assert main(["report", str(run), "--out", str(tmp_path / "r"), "--resamples", "100"]) == 0
    err = capsys.readouterr().err
    assert f"run `optbench analyze {run}`" in err and len(err.strip().splitlines()) == 1, err
    text = (tmp_path / "r" / "report.md").read_text()
    assert "## Fixed-target statistics" in text and "| analysis-test-perfect | 100% " in text  # what needs no analysis
    for kind in ("gap", "modes", "landscapes", "exploitation"):
        assert f"*Not analysed yet ({kind}): " in text, kind
    assert not (tmp_path / "r" / "gap.png").exists()


@pytest.mark.slow
def test_analyze_resumes_without_redoing_finished_units(tiny_run, tmp_path):
    run = _copy_cells_only(tiny_run, tmp_path / "resume")
    opts = AnalysisOptions(mode_runs=3, mode_states=2, landscape_resolution=15)
    units, pending = pending_units(load_run(run), opts)
    assert len(units) == len(pending) == 3 * 2 + 2  # gap and modes per optimizer, landscape and exploitation per objective
    # an analyze that dies part-way (a real failure: the landscape state does not exist, and landscapes come
    # after gap and modes): the units finished before it are stored whole, nothing else
    bad = AnalysisOptions(mode_runs=3, mode_states=2, landscape_resolution=15, landscape_state=99)
    with pytest.raises(AnalysisError, match="--landscape-state"):
        analyze_run(run, bad)
    stamps = {p: p.stat().st_mtime_ns for p in (run / ANALYSIS_DIR).rglob("*.json")}
    assert len(stamps) == 6 and not list((run / ANALYSIS_DIR).rglob("*.tmp"))
    done = analyze_run(run, opts)
    assert (done.total, done.computed, done.reused) == (8, 2, 6)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished units are not redone
    assert analyze_run(run, opts).computed == 0
    # other settings: only the units they change are recomputed
    assert analyze_run(run, AnalysisOptions(mode_runs=4, mode_states=2, landscape_resolution=15)).computed == 3
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p.parent.name != "modes")


def test_every_analysis_is_named_in_the_analyze_help(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(kind in out for kind in ANALYSES)


def test_rebuilt_objective_must_match_the_stored_run(tiny_run, tmp_path):
    rebuilt = rebuild_run(load_run(tiny_run))
    assert rebuilt.objective("multimodal-a2").objective.batch_size == 4
    assert rebuilt.run.budget("adam(lr=0.05)") == 12
    # a run whose stored start scores were produced by another objective is refused
    copy = _copy_cells_only(tiny_run, tmp_path / "copy")
    rec_path = copy / "objectives" / "multimodal-a2.json"
    rec = json.loads(rec_path.read_text())
    rec["start_scores"] = [s + 1.0 for s in rec["start_scores"]]
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(AnalysisError, match="does not match the stored run"):
        rebuild_run(load_run(copy)).objective("multimodal-a2")
    assert main(["analyze", str(copy), "--quiet"]) == 2  # one line, no traceback


def test_compare_two_runs(tiny_run, tmp_path, capsys):
    assert main(["compare", str(tiny_run), str(tiny_run), "--out", str(tmp_path / "cmp"), "--resamples", "100"]) == 0
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "identical (paired Δ)" in text and (tmp_path / "cmp" / "compare_ecdf.png").stat().st_size > 5000
    assert "| 0 [0, 0] |" in text  # a run compared with itself differs by exactly 0
    assert "analysis-test-perfect" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "not-a-run", "no-cells", "bad-json", "file", "no-objective", "bad-cell"])
def test_bad_input_gives_one_line_error(tiny_run, tmp_path, capsys, case):
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
    assert main(["analyze", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err


def test_bad_options_give_one_line_errors(tiny_run, tmp_path, capsys):
    assert main(["analyze", str(tiny_run), "--mode-runs", "0"]) == 2
    assert "--mode-runs must be >= 1" in capsys.readouterr().err
    assert main(["analyze", str(tiny_run), "--only", "gap,nonsense"]) == 2
    assert "unknown analyses ['nonsense']" in capsys.readouterr().err
    run = _copy_cells_only(tiny_run, tmp_path / "states")
    assert main(["analyze", str(run), "--only", "landscapes", "--landscape-state", "99", "--quiet"]) == 2
    assert "--landscape-state must be in 0..3" in capsys.readouterr().err
    assert main(["report", str(tiny_run), "--mode-threshold", "0"]) == 2
    assert "--mode-threshold must be > 0" in capsys.readouterr().err


def test_rollout_check_restores_the_stored_mujoco_state():
    """Shipped Hopper package: restoring qpos/qvel reproduces the stored observation, and a short
    rollout from the direct actor's own mean action gives a finite soft return near Q̂."""
    import torch

    from optbench.agents.package import load_package
    from optbench.runner.experiments import rollout_check
    from optbench.suites.spec import find_suite

    pkg = load_package(find_suite("mujoco-states").parent / "packages" / "hopper-direct")
    params = pkg.direct(pkg.states["benchmark"][:2])
    rc = rollout_check(pkg, "benchmark", params, [0, 1], rollouts=1, horizon=30, seed=0)
    assert rc.restore_error.max() < 1e-5
    assert np.isfinite(rc.returns).all() and rc.returns.shape == (2, 1)
    assert np.all(np.abs(rc.error) < 0.5 * np.abs(rc.q_hat) + 20), (rc.q_hat, rc.returns)
    assert torch.is_tensor(params)
