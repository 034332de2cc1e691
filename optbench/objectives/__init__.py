"""Objectives: the soft policy objective ``J(λ; s)`` and the Q-functions it is built on."""

from optbench.objectives.policy_objective import EvalCounts, PolicyObjective
from optbench.objectives.q_functions import ModuleEnsemble, QEnsemble, QFunction, pessimistic_value

__all__ = ["EvalCounts", "PolicyObjective", "ModuleEnsemble", "QEnsemble", "QFunction", "pessimistic_value"]
