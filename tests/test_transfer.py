"""Transfer experiments: how an amortized optimizer's training relates to an objective, and
the shipped `transfer` suite's quick variant end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main
from rich.console import Console

from optbench.metrics.summary import CellGroup
from optbench.reporting.paper_tables import relation, transfer_tables
from optbench.runner.store import ResultsStore


def group(trained_on: list[str]) -> CellGroup:
    z = np.zeros((1, 1, 1))
    return CellGroup("o", "iterative", np.array([0]), z, z[0], z[0], z[0], z, {
        "amortized": True, "settings": {"agent": trained_on[0], "trained_on": trained_on}})


@pytest.mark.parametrize("info, expected", [
    ({"agent": "HalfCheetah-v5-iterative-s0", "task": "HalfCheetah-v5"}, "in-distribution"),
    ({"agent": "HalfCheetah-v5-iterative-s0", "task": "HalfCheetah-v5", "model_based": True, "horizon": 2},
     "model-free → model-based h=2"),
    ({"agent": "HalfCheetah-v5-direct-s0", "task": "HalfCheetah-v5"}, "agent → agent (model-free)"),
    ({"agent": "Walker2d-v5-direct-s0", "task": "Walker2d-v5"}, "task → task (model-free)"),
])
def test_relation_of_training_to_objective(info, expected):
    assert relation(group(["HalfCheetah-v5-iterative-s0"]), {"info": info}) == expected


@pytest.mark.slow
def test_transfer_suite_quick_run_prints_the_transfer_table(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    proc = subprocess.run([sys.executable, "-m", "optbench.cli", "run", "--suite", "transfer", "--quick", "--out",
                           str(tmp_path / "r"), "--no-plots"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Transfer · amortized optimizers" in proc.stdout
    console = Console(width=400, record=True)
    for table in transfer_tables(ResultsStore.open_existing(tmp_path / "r")):
        console.print(table)
    out = console.export_text()
    assert "in-distribution" in out and "model-free → model-based h=2" in out and "agent → agent" in out
    assert "meta-training, K=5" in out and "SAC, K=5" in out


PACKAGES = Path(__file__).resolve().parents[1] / "suites" / "mujoco-states" / "packages"
PER_OBJECTIVE_SUITE = f"""
name = "per-objective"
optimizers = [
  {{ spec = "direct", label = "direct", iterations = 1 }},
  {{ spec = "direct", label = "direct (mapped)", iterations = 1, package = {{ hc = "{PACKAGES / 'halfcheetah-direct'}", hop = "{PACKAGES / 'hopper-direct'}" }} }},
]
[settings]
states = 4
score_samples = 16
[[objectives]]
name = "hc"
source = "package"
package = "{PACKAGES / 'halfcheetah-direct'}"
[[objectives]]
name = "hop"
source = "package"
package = "{PACKAGES / 'hopper-direct'}"
"""


def test_one_optimizer_label_with_a_package_per_objective(tmp_path):
    """`package = {objective = path}`: one labelled learned optimizer spanning several tasks,
    each objective getting its own package (here: each agent's own actor again)."""
    (tmp_path / "suite.toml").write_text(PER_OBJECTIVE_SUITE)
    assert main(["run", "--suite", str(tmp_path), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    cells = {(c["objective"], c["optimizer"]): c for c in map(json.loads, map(Path.read_text,
                                                                              (tmp_path / "r" / "cells").glob("*.json")))}
    for obj in ("hc", "hop"):
        assert cells[(obj, "direct (mapped)")]["scores"] == cells[(obj, "direct")]["scores"]
        assert cells[(obj, "direct (mapped)")]["settings"]["agent"] == cells[(obj, "direct")]["settings"]["agent"]


def test_package_table_must_cover_its_objectives(tmp_path, capsys):
    text = PER_OBJECTIVE_SUITE.replace('package = {', 'objectives = ["hc", "hop"], package = {').replace(
        f', hop = "{PACKAGES / "hopper-direct"}"', "")
    (tmp_path / "suite.toml").write_text(text)
    assert main(["run", "--suite", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "names no package for objective(s) ['hop']" in err and len(err.strip().splitlines()) == 1
