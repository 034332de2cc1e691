"""Transfer experiments: how an amortized optimizer's training relates to an objective, and
the shipped `transfer` suite's quick variant end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from optbench.metrics.summary import CellGroup
from optbench.reporting.paper_tables import relation


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


def test_transfer_suite_quick_run_prints_the_transfer_table(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    proc = subprocess.run([sys.executable, "-m", "optbench.cli", "run", "--suite", "transfer", "--quick", "--out",
                           str(tmp_path / "r"), "--no-plots"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Transfer · amortized optimizers" in out
    assert "in-distribution" in out and "model-free → model-based h=2" in out
    assert "meta-training" in out
