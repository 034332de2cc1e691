"""`optbench tune`: sweeps on held-out states, the choice rule, and shipped suites' consistency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optbench.agents.package import load_package
from optbench.cli import main
from optbench.suites.spec import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "suites/mujoco-states/packages/hopper-direct"

SUITE = f"""
name = "tune-test"
optimizers = ["adam"]
[settings]
states = 6
score_samples = 64
[[objectives]]
name = "hopper"
source = "package"
package = "{PACKAGE}"
[tuning]
iterations = 8
grids = [
  {{ label = "adam (tuned)", spec = "adam(samples=4)", lr = [0.0001, 0.1] }},
  {{ label = "cmaes (tuned)", spec = "cmaes(samples=4)", sigma0 = [0.3, 1.0], popsize = [6] }},
]
"""


def write_suite(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "suite"
    d.mkdir(exist_ok=True)
    (d / "suite.toml").write_text(text)
    return d


def test_tune_sweeps_heldout_states_and_chooses_the_best_setting(tmp_path, capsys):
    d = write_suite(tmp_path, SUITE)
    assert main(["tune", "--suite", str(d), "--out", str(tmp_path / "sweep")]) == 0
    result = json.loads((d / "tuning.json").read_text())
    assert (d / "tuning.md").read_text().count("| `") + (d / "tuning.md").read_text().count("| **`") == 4
    adam, cmaes = result["grids"]
    assert adam["settings"] == ["adam(samples=4,lr=0.0001)", "adam(samples=4,lr=0.1)"]
    assert cmaes["settings"] == ["cmaes(samples=4,sigma0=0.3,popsize=6)", "cmaes(samples=4,sigma0=1.0,popsize=6)"]
    # a learning rate of 1e-4 barely moves in 8 steps: 0.1 must win, and the rule is the argmax
    assert adam["chosen"] == "adam(samples=4,lr=0.1)"
    assert result["criterion"]["name"] == "anytime:q_evals" and "log q_evals" in result["criterion"]["description"]
    for g in result["grids"]:
        assert g["chosen"] == max(g["settings"], key=lambda s: g["score"][s])
        assert g["per_objective"]["hopper"]["best"] == g["chosen"]  # one objective: the compromise is its best
    # 0.1 is the largest step size swept: flagged at the grid's edge (and said so)
    assert adam["at_edge"] == {"lr": "highest"}
    assert "At the grid's edge" in (d / "tuning.md").read_text()
    printed = capsys.readouterr().out
    assert "grid's edge (highest lr)" in " ".join(printed.split())
    assert 'spec = "adam(samples=4,lr=0.1)", label = "adam (tuned)"' in printed
    # the fixed-budget criterion on the same sweep: J at iteration 8, the old rule
    from optbench.runner.store import ResultsStore
    from optbench.runner.tuning import select

    fixed = select(ResultsStore.open_existing(tmp_path / "sweep"), load_suite(str(d)), "budget:8")
    assert fixed["criterion"]["name"] == "budget:8"
    for g in fixed["grids"]:
        assert g["score"][g["chosen"]] == pytest.approx(1.0)  # one objective: its best normalized J is 1
    # the sweep ran on the held-out states, not the benchmark ones
    record = json.loads(next((tmp_path / "sweep" / "objectives").glob("*.json")).read_text())
    pkg = load_package(PACKAGE)
    held = pkg.objective("heldout", n_states=6, score_samples=64, score_seed=12345)
    bench = pkg.objective("benchmark", n_states=6, score_samples=64, score_seed=12345)
    start = np.asarray(record["start_scores"])
    np.testing.assert_allclose(start, held.score(held.initial_params()).numpy(), rtol=1e-5)
    assert not np.allclose(start, bench.score(bench.initial_params()).numpy(), rtol=1e-3)
    # resuming a finished sweep recomputes nothing and chooses the same
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / "cells").glob("*.json")}
    assert main(["tune", "--suite", str(d), "--out", str(tmp_path / "sweep")]) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / "cells").glob("*.json")} == mtimes
    assert json.loads((d / "tuning.json").read_text())["grids"][0]["chosen"] == adam["chosen"]


@pytest.mark.parametrize("tuning, message", [
    ('[tuning]\ngrids = [{ label = "a", spec = "adam", lr = [] }]', "non-empty list"),
    ('[tuning]\nsplit = "benchmark"\ngrids = [{ label = "a", spec = "adam", lr = [0.1] }]', "held-out"),
    ('[tuning]\ngrids = [{ label = "a", spec = "adam(", lr = [0.1] }]', "malformed"),
    ('[tuning]\nbudget = 3\ngrids = [{ label = "a", spec = "adam", lr = [0.1] }]', "unknown field"),
])
def test_malformed_tuning_is_a_one_line_error(tmp_path, capsys, tuning, message):
    d = write_suite(tmp_path, SUITE.split("[tuning]")[0] + tuning)
    assert main(["tune", "--suite", str(d)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_tune_needs_heldout_states(tmp_path, capsys):
    assert main(["tune", "--suite", "synthetic"]) == 2
    assert "declares no [tuning] sweeps" in capsys.readouterr().err
    d = write_suite(tmp_path, SUITE.replace('source = "package"\npackage = "' + str(PACKAGE) + '"',
                                            'source = "analytic"\nprofile = "quadratic"\nstate_dim = 2\n'
                                            'action_dim = 2\nalpha = 0.1'))
    assert main(["tune", "--suite", str(d)]) == 2
    assert "no held-out state split" in capsys.readouterr().err


@pytest.mark.parametrize("name", [p.parent.name for p in sorted((ROOT / "suites").glob("*/suite.toml"))
                                  if "[tuning]" in p.read_text()])
def test_shipped_tuned_entries_match_their_sweep(name):
    """A shipped suite with [tuning] has its sweep's result, and runs, under each grid's
    label, exactly the setting the sweep chose."""
    suite = load_suite(name)
    assert (suite.directory / "tuning.json").exists(), f"run `optbench tune --suite {name}`"
    result = json.loads((suite.directory / "tuning.json").read_text())
    specs = {e.label: e.spec for e in suite.optimizers}
    assert [g["label"] for g in result["grids"]] == [g.label for g in suite.tuning.grids]
    for g in result["grids"]:
        assert specs.get(g["label"]) == g["chosen"], f"{g['label']}: suite runs {specs.get(g['label'])}"


def test_tuning_suite_without_tuning_table_is_refused():
    from optbench.runner.tuning import tuning_suite

    with pytest.raises(SuiteError, match="no \\[tuning\\]"):
        tuning_suite(load_suite("synthetic"))


@pytest.mark.parametrize("criterion, message", [
    ("budget:x", "needs an integer"), ("budget:9", "between 1 and the sweep's 8"), ("anytime:parsecs", "cost unit"),
    ("fastest", "unknown tuning criterion"),
])
def test_bad_criterion_is_a_one_line_error_before_any_work(tmp_path, capsys, criterion, message):
    d = write_suite(tmp_path, SUITE)
    assert main(["tune", "--suite", str(d), "--out", str(tmp_path / "sweep"), "--criterion", criterion]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sweep").exists()


def _curve_group(name: str, curve: list[float], q_per_iteration: float, iterations: list[int]):
    from optbench.metrics.summary import CellGroup

    budget = iterations[-1]
    scores = np.asarray(curve, dtype=float)[None, :, None]  # one seed, one state
    return CellGroup("o", name, np.asarray(iterations), scores, np.full((1, budget), 0.01),
                     np.full((1, budget), q_per_iteration), np.zeros((1, budget)), np.zeros((1, 1, 2)))


def test_anytime_criterion_rewards_early_progress_and_cheap_iterations():
    from optbench.runner.tuning import anytime_scores, budget_scores

    its = [0, 1, 2, 4, 8]
    # same final J; "early" gets there at once, "late" only at the end: anytime separates what budget:8 ties
    early = _curve_group("early", [0, 1, 1, 1, 1], 10, its)
    late = _curve_group("late", [0, 0, 0, 0, 1], 10, its)
    assert budget_scores({"early": early, "late": late}, 0.0, 8) == {"early": 1.0, "late": 1.0}
    scores = anytime_scores({"early": early, "late": late}, 0.0, "q_evals", "o")
    # late: 0 until iteration 4, then linear in log cost to 1 at 8: half of the last third of log [10, 80]
    assert scores["early"] == pytest.approx(1.0) and scores["late"] == pytest.approx(0.5 / 3, abs=2e-3)
    # per Q-evaluation, a setting 10× cheaper per iteration with the same curve in iterations wins
    cheap = _curve_group("cheap", [0, 0.5, 0.75, 0.9, 1], 1, its)
    dear = _curve_group("dear", [0, 0.5, 0.75, 0.9, 1], 10, its)
    by_q = anytime_scores({"cheap": cheap, "dear": dear}, 0.0, "q_evals", "o")
    by_it = anytime_scores({"cheap": cheap, "dear": dear}, 0.0, "iterations", "o")
    assert by_q["cheap"] > by_q["dear"] and by_it["cheap"] == pytest.approx(by_it["dear"])
    with pytest.raises(SuiteError, match="record no flops"):
        anytime_scores({"cheap": cheap}, 0.0, "flops", "o")


def test_grid_edges_and_refused_settings():
    from optbench.runner.tuning import at_edge, grid_settings
    from optbench.suites.spec import Grid

    grid = Grid("cem (tuned)", "cem", (("population", (10, 50, 100)), ("elites", (5, 20)), ("smoothing", (0.3,))))
    valid, skipped = grid_settings(grid)
    assert [k["setting"] for k in skipped] == ["cem(population=10,elites=20,smoothing=0.3)"] and "elites" in skipped[0]["reason"]
    assert len(valid) == 5
    assert at_edge(grid, "cem(population=50,elites=5,smoothing=0.3)") == {"elites": "lowest"}  # one value: no edge
    assert at_edge(grid, "cem(population=100,elites=20,smoothing=0.3)") == {"population": "highest", "elites": "highest"}
    assert at_edge(grid, "cem(population=50,elites=20,smoothing=0.3)") == {"elites": "highest"}


def test_shipped_grids_reach_past_the_old_edges():
    """mujoco-states' grids were extended where the last sweep chose an edge: Adam's step sizes reach 1,
    CEM's populations go down to 10 (with fewer elites and more smoothing), CMA-ES's sigma0 lower."""
    grids = {g.label: dict(g.axes) for g in load_suite("mujoco-states").tuning.grids}
    assert max(grids["adam (tuned)"]["lr"]) >= 1.0
    assert min(grids["cem (tuned)"]["population"]) <= 10 and min(grids["cem (tuned)"]["elites"]) <= 2
    assert min(grids["cem (tuned)"]["smoothing"]) < 0.3 and min(grids["cmaes (tuned)"]["sigma0"]) < 0.1
    # the settings the current tuning.json chose are still in the grids, so the suite stays consistent
    from optbench.runner.tuning import grid_settings

    suite = load_suite("mujoco-states")
    result = json.loads((suite.directory / "tuning.json").read_text())
    for g, chosen in zip(suite.tuning.grids, (x["chosen"] for x in result["grids"])):
        assert chosen in grid_settings(g)[0]
