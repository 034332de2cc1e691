"""Warm-started baselines (direct+adam, direct+cem, direct+cmaes, direct+iterative) on one small
package, and the iterative optimizer's estimate at its trained budget (R3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.agents.package import load_package
from optbench.cli import main
from optbench.objectives.cost import module_forward_flops
from optbench.optimizers import OptimizerError, make_optimizer
from optbench.runner.drive import run_optimizer
from optbench.suites.spec import load_suite

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "suites/mujoco-states/packages/hopper-iterative"

SUITE = f"""
name = "warm-start-test"
tables = ["r1", "r2", "r5"]
optimizers = [
  {{ spec = "direct", label = "direct", iterations = 1 }},
  {{ spec = "iterative", label = "iterative", iterations = 8 }},
  {{ spec = "adam(lr=0.03)", label = "adam (tuned)" }},
  {{ spec = "direct+adam(lr=0.01)", label = "direct+adam" }},
  {{ spec = "direct+cem(population=20,elites=4)", label = "direct+cem" }},
  {{ spec = "direct+cmaes(samples=4,sigma0=0.1)", label = "direct+cmaes" }},
  {{ spec = "direct+iterative", label = "direct+iterative", iterations = 8 }},
]
[settings]
states = 3
iterations = 6
score_samples = 64
score_at = "log"
[[objectives]]
name = "hopper"
source = "package"
package = "{PACKAGE}"
"""


@pytest.fixture(scope="module")
def objective():
    return load_package(PACKAGE).objective("benchmark", n_states=3, score_samples=64, score_seed=12345)


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("warm")
    (root / "suite").mkdir()
    (root / "suite" / "suite.toml").write_text(SUITE)
    assert main(["run", "--suite", str(root / "suite"), "--out", str(root / "run"), "--no-plots"]) == 0
    return root / "run"


def _cell(run: Path, label: str) -> dict:
    return json.loads((run / "cells" / f"hopper__{label}__s0.json").read_text())


@pytest.mark.parametrize("label", ["direct+adam", "direct+cem", "direct+cmaes", "direct+iterative"])
def test_warm_start_begins_at_the_direct_estimate_and_pays_for_it(warm_run, label):
    direct, warm = _cell(warm_run, "direct"), _cell(warm_run, label)
    assert warm["scores"][0] == direct["scores"][1]  # iteration 0 is the direct network's estimate, scored alike
    actor = load_package(PACKAGE).direct
    assert warm["start_cost"]["flops"] == module_forward_flops(actor) * 3 and warm["start_cost"]["q_evals"] == 0
    assert warm["settings"]["warm_start"]["agent"] == "Hopper-v5-iterative-s0"
    assert np.mean(warm["scores"][-1]) >= np.mean(warm["scores"][0]) - 0.05  # refining, not wandering off


def test_warm_start_specs_labels_and_errors(objective):
    pkg = load_package(PACKAGE)
    adam = make_optimizer("direct+adam(lr=0.03)", package=pkg)
    assert adam.label() == "direct+adam(lr=0.03,samples=10)" and not adam.amortized
    it = make_optimizer("direct+iterative", package=pkg)
    assert it.amortized and it.settings()["start"] == "given" and it.trained_budget() == 5
    scipy = make_optimizer("direct+scipy:L-BFGS-B(maxcor=5)", package=pkg)
    assert scipy.label() == "direct+scipy:L-BFGS-B(maxcor=5,samples=10)"
    start = make_optimizer("direct", package=pkg)
    trace = run_optimizer(adam, objective, 2)
    assert torch.allclose(trace.scores[0], run_optimizer(start, objective, 1).scores[1])
    for spec, message in [("cem+adam", "one-shot optimizer before '+'"), ("direct+nosuch", "unknown optimizer 'nosuch'"),
                          ("direct+iterative(start='network')", "start must be 'given'"),
                          ("direct+adam(bogus=1)", "bad settings for optimizer 'adam'")]:
        with pytest.raises(OptimizerError, match=re.escape(message)) as err:
            make_optimizer(spec, package=pkg)
        assert "\n" not in str(err.value)


def test_warm_starts_are_in_the_mujoco_suite_and_its_tables(warm_run, capsys):
    suite = load_suite("mujoco-states")
    labels = {e.label: e for e in suite.optimizers}
    for name in ("direct+adam", "direct+cem", "direct+cmaes", "direct+iterative"):
        assert name in labels
    assert all(o.endswith("/iterative") for o in labels["direct+iterative"].objectives)
    assert main(["show", str(warm_run)]) == 0
    out = capsys.readouterr().out
    assert "cost to reach the amortized optimizers' J" in out and "direct+cmaes" in out and "speed-up" in out


def test_iterative_keeps_its_trained_budget_estimate_and_the_gap_uses_it(warm_run, objective):
    from optbench.runner.analysis import rebuild_run, trained_budget_estimate
    from optbench.runner.stored import load_run

    cell = _cell(warm_run, "iterative")
    assert list(cell["params_at"]) == ["5"]
    five = run_optimizer(make_optimizer("iterative", package=load_package(PACKAGE)), objective, 5, seed=0)
    np.testing.assert_allclose(cell["params_at"]["5"], five.final_params.double().numpy(), rtol=1e-6, atol=1e-6)
    run = load_run(warm_run)
    rebuilt = rebuild_run(run)
    k, stored = trained_budget_estimate(rebuilt, run.groups[("hopper", "iterative")])
    assert k == 5 and stored.shape == (1, 3, 6)
    # cells stored before the estimate was kept: recomputed by re-running 5 iterations, checked against the scores
    group = run.groups[("hopper", "iterative")]
    group.params_at.clear()
    k, again = trained_budget_estimate(rebuilt, group)
    np.testing.assert_allclose(again, stored, rtol=1e-5, atol=1e-5)
    assert trained_budget_estimate(rebuilt, run.groups[("hopper", "adam (tuned)")]) is None
