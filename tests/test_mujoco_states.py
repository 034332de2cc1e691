"""The shipped mujoco-states agents: manifest up to date, returns reproducible."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.agents.evaluate import run_episodes
from optbench.agents.package import load_package

SUITE = Path(__file__).resolve().parents[1] / "suites" / "mujoco-states"
MANIFEST = json.loads((SUITE / "manifest.json").read_text())


def _make_manifest():
    spec = importlib.util.spec_from_file_location("make_manifest", SUITE / "make_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_matches_the_shipped_packages():
    """manifest.json is what make_manifest.py writes from the packages now (checksums included)."""
    assert _make_manifest().build_manifest() == MANIFEST
    assert {a["package"] for a in MANIFEST["agents"]} == {p.name for p in (SUITE / "packages").iterdir()}


def _direct_agents() -> list[dict]:
    return [a for a in MANIFEST["agents"] if a["policy"] == "direct"]


@pytest.mark.parametrize("agent", _direct_agents()[:1], ids=lambda a: a["package"])
def test_shipped_agent_return_reproduces_the_manifest(agent):
    """Re-run the first evaluation episodes (same seeds, deterministic actions) of a shipped
    direct agent from its package alone; the returns match the recorded ones within the spread."""
    pkg = load_package(SUITE / "packages" / agent["package"])
    recorded = pkg.meta["eval"]
    net = pkg.direct

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
        mu = out[0, : pkg.action_dim]
        return torch.tanh(mu).numpy()

    episodes = 3
    res = run_episodes(policy, pkg.task, episodes, seed=recorded["seed"])
    expected = recorded["returns"][:episodes]
    tolerance = max(2 * agent["eval_return_std"], 0.02 * abs(agent["eval_return_mean"]))
    assert abs(res.mean - np.mean(expected)) <= tolerance, (res.returns, expected)
    assert abs(np.mean(expected) - agent["eval_return_mean"]) <= 3 * agent["eval_return_std"] + 1e-6
