"""Policy optimizers behind one interface, looked up by name in :data:`REGISTRY`.

Running one (timing, scoring, the anytime trace) is the runner's job:
:func:`optbench.runner.drive.run_optimizer`.
"""

from optbench.optimizers.base import REGISTRY, Iterate, OptimizerError, PolicyOptimizer, make_optimizer, parse_spec, register

__all__ = ["REGISTRY", "Iterate", "OptimizerError", "PolicyOptimizer", "make_optimizer", "parse_spec", "register"]

# Built-in optimizers register themselves on import.
from optbench.optimizers import adam, amortized, cem, cmaes, library  # noqa: E402,F401
