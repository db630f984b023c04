"""``maskcls solve``: measure this machine, plan the best use of a time budget, run the plan as ordinary
runs and ensembles, re-plan after every stage, resume after a kill."""

from ..core.budget import BudgetError, parse_budget
from .plan import Plan, Speed, Stage, Workload, make_plan, replan
from .run import resume_solve, solve

__all__ = [
    "BudgetError",
    "Plan",
    "Speed",
    "Stage",
    "Workload",
    "make_plan",
    "parse_budget",
    "replan",
    "resume_solve",
    "solve",
]
