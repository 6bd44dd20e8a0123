"""The planned path of the round machine (docs/rounds.md §9): synchronous rounds compiled
once from the `Schedule` into a `Layout`, run by `PlannedRounds` without message tuples."""

from neurolocal.engines.plan.layout import Layout, compile_layout
from neurolocal.engines.plan.runner import PlannedRounds, PlanState

__all__ = ["Layout", "PlanState", "PlannedRounds", "compile_layout"]
