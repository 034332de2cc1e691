"""Shared fixtures: small analytic objectives with exactly known optima."""

from __future__ import annotations

import pytest
import torch

from optbench.backends import onednn
from optbench.runner import executors
from optbench.objectives import PolicyObjective
from optbench.objectives.analytic import AnalyticQ, solve_optimum

# One thread: the tests share 2 cores with other work, and small element-wise kernels
# slow down many-fold when OpenMP threads compete for a busy core.
torch.set_num_threads(1)
# The tests exercise oneDNN's products wherever this torch has them (as the command line uses
# them on a CPU where they are faster), without the timing probe; tests of the plain path
# switch it off themselves.
onednn.ENABLED = onednn.kernel_available()


def pytest_configure(config):
    """The fast tier (`pytest -q`, i.e. `-m 'not slow'`) computes `--executor auto` runs in this
    process, as `auto` does on one core: a worker pool's start-up would cost more than these tiny
    runs. The pools themselves, and that they store the in-process bits, are slow-tier tests."""
    if config.getoption("markexpr", "") == "not slow":
        executors.usable_cores = lambda: 1


def analytic_problem(profile: str, action_dim: int, alpha: float, n_states: int = 16, score_samples: int = 2000):
    q = AnalyticQ(profile, 11, action_dim, seed=0)
    states = torch.randn(n_states, 11, generator=torch.Generator().manual_seed(0))
    objective = PolicyObjective(q, states, alpha, score_samples=score_samples, score_seed=7, name=profile)
    return objective, solve_optimum(q, states, alpha)


@pytest.fixture(scope="session")
def quadratic():
    return analytic_problem("quadratic", 3, 0.05)


@pytest.fixture(scope="session")
def multimodal():
    return analytic_problem("multimodal", 2, 0.02)
