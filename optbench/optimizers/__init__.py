"""Policy optimizers behind one interface, looked up by name in :data:`REGISTRY`."""

from optbench.optimizers.base import (REGISTRY, Iterate, OptimizerError, PolicyOptimizer, Trace, make_optimizer,
                                      parse_spec, register, run_optimizer, score_schedule)

__all__ = ["REGISTRY", "Iterate", "OptimizerError", "PolicyOptimizer", "Trace", "make_optimizer", "parse_spec",
           "register", "run_optimizer", "score_schedule"]

# Built-in optimizers register themselves on import.
from optbench.optimizers import adam, amortized, cem, cmaes, library  # noqa: E402,F401
