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
    for g in result["grids"]:
        assert g["chosen"] == max(g["settings"], key=lambda s: g["normalized_improvement"][s])
        assert g["normalized_improvement"][g["chosen"]] == pytest.approx(1.0)  # one objective: its best
    # the sweep ran on the held-out states, not the benchmark ones
    record = json.loads(next((tmp_path / "sweep" / "objectives").glob("*.json")).read_text())
    pkg = load_package(PACKAGE)
    held = pkg.objective("heldout", n_states=6, score_samples=64, score_seed=12345)
    bench = pkg.objective("benchmark", n_states=6, score_samples=64, score_seed=12345)
    start = np.asarray(record["start_scores"])
    np.testing.assert_allclose(start, held.score(held.initial_params()).numpy(), rtol=1e-5)
    assert not np.allclose(start, bench.score(bench.initial_params()).numpy(), rtol=1e-3)
    out = capsys.readouterr().out
    assert 'spec = "adam(samples=4,lr=0.1)", label = "adam (tuned)"' in out
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
