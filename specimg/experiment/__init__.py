"""Experiments: one recipe file runs render -> train every model -> predict -> stack -> blend -> pseudo-label -> report.
"""

from ._recipe import DataSpec as DataSpec
from ._recipe import ModelSpec as ModelSpec
from ._recipe import PseudoSpec as PseudoSpec
from ._recipe import Recipe as Recipe
from ._recipe import StackingSpec as StackingSpec
from ._recipe import load_recipe as load_recipe
from ._runner import ExperimentResult as ExperimentResult
from ._runner import run_experiment as run_experiment

__all__ = [
    "Recipe",
    "DataSpec",
    "ModelSpec",
    "StackingSpec",
    "PseudoSpec",
    "load_recipe",
    "run_experiment",
    "ExperimentResult",
]
