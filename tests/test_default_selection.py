"""A suite's ``[default]`` selection: what a plain ``optbench run`` runs, ``--all`` runs every
optimizer, and a bad selection is a one-line error."""

from __future__ import annotations

import json

import pytest

from optbench.cli import main
from optbench.suites.spec import SuiteError, load_suite

SUITE = """
name = "default-selection-test"
optimizers = ["adam(lr=0.05)", {{ spec = "cmaes", label = "cmaes" }}, {{ spec = "pycma", label = "pycma" }}]
{default}
[settings]
states = 2
iterations = 3
seeds = [0]
score_samples = 16

[[objectives]]
name = "quadratic"
source = "analytic"
profile = "quadratic"
state_dim = 11
action_dim = 3
alpha = 0.05
"""


def write(tmp_path, default: str):
    d = tmp_path / "suite"
    d.mkdir(exist_ok=True)
    (d / "suite.toml").write_text(SUITE.format(default=default))
    return d


def labels(run) -> list[str]:
    return [o["label"] for o in json.loads((run / "run.json").read_text())["config"]["optimizers"]]


def test_a_plain_run_runs_the_default_selection_and_all_runs_every_optimizer(tmp_path, capsys):
    d = write(tmp_path, '[default]\noptimizers = ["cmaes", "adam(lr=0.05)"]\n')
    assert load_suite(str(d)).default == ("cmaes", "adam(lr=0.05)")
    base = ["run", "--suite", str(d), "--no-plots", "--executor", "inprocess"]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert "default selection, 2 of 3 optimizers" in capsys.readouterr().out
    assert labels(tmp_path / "default") == ["cmaes", "adam(lr=0.05)"]
    assert main([*base, "--all", "--out", str(tmp_path / "all")]) == 0
    assert labels(tmp_path / "all") == ["adam(lr=0.05)", "cmaes", "pycma"]
    assert main([*base, "--optimizers", "pycma", "--out", str(tmp_path / "one")]) == 0
    assert labels(tmp_path / "one") == ["pycma"]
    assert main([*base, "--all", "--optimizers", "pycma", "--out", str(tmp_path / "both")]) == 2
    assert "give --all (every optimizer of the suite) or --optimizers, not both" in capsys.readouterr().err


def test_without_a_default_selection_a_run_runs_every_optimizer(tmp_path):
    d = write(tmp_path, "")
    assert load_suite(str(d)).default == ()
    assert main(["run", "--suite", str(d), "--no-plots", "--executor", "inprocess", "--out", str(tmp_path / "r")]) == 0
    assert labels(tmp_path / "r") == ["adam(lr=0.05)", "cmaes", "pycma"]


@pytest.mark.parametrize("default, message", [
    ('[default]\noptimizers = ["cmaes", "nope"]\n', r"\[default\].optimizers names unknown label\(s\) \['nope'\]"),
    ('[default]\noptimizers = []\n', r"\[default\].optimizers must be a non-empty list"),
    ('[default]\noptimizers = ["cmaes", "cmaes"]\n', r"\[default\].optimizers lists a label twice"),
    ('[default]\nlabels = ["cmaes"]\n', r"\[default\] must be a table with one field"),
])
def test_a_bad_default_selection_is_a_one_line_error(tmp_path, default, message):
    with pytest.raises(SuiteError, match=message) as err:
        load_suite(str(write(tmp_path, default)))
    assert "\n" not in str(err.value)


def test_mujoco_states_default_leaves_the_library_references_to_all():
    suite = load_suite("mujoco-states")
    assert set(suite.default) == {e.label for e in suite.optimizers} - {"pycma", "scipy:L-BFGS-B"}
