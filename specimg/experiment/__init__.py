"""Experiments: one recipe file runs render -> train every model -> predict -> stack -> blend -> pseudo-label -> report.

:func:`load_recipe` validates a YAML recipe into frozen dataclasses;
:func:`run_experiment` runs it, skipping every step whose inputs did not
change. :func:`stack_runs`, :class:`StackResult` and :func:`pseudo_label_table`
live in :mod:`specimg.stacking` (the functions behind ``specimg stack`` and
``specimg pseudo-label``); they are re-exported here so older imports keep working.
"""

from ._recipe import DataSpec as DataSpec
from ._recipe import ModelSpec as ModelSpec
from ._recipe import PseudoSpec as PseudoSpec
from ._recipe import Recipe as Recipe
from ._recipe import StackingSpec as StackingSpec
from ._recipe import load_recipe as load_recipe
from ._runner import ExperimentResult as ExperimentResult
from ._runner import run_experiment as run_experiment
from ..stacking import StackResult as StackResult
from ..stacking import pseudo_label_table as pseudo_label_table
from ..stacking import stack_runs as stack_runs

__all__ = [
    "Recipe",
    "DataSpec",
    "ModelSpec",
    "StackingSpec",
    "PseudoSpec",
    "load_recipe",
    "run_experiment",
    "ExperimentResult",
    "stack_runs",
    "StackResult",
    "pseudo_label_table",
]
