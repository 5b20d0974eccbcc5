"""``specimg experiment RECIPE.yaml`` (a thin layer over :func:`run_experiment`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_experiment_parser"]


def _cmd_experiment(args: argparse.Namespace) -> int:
    from ..training import is_main_process
    from ._recipe import load_recipe
    from ._runner import run_experiment

    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path("runs") / recipe.name
    result = run_experiment(recipe, out, resume=args.resume, verbose=not args.quiet, workers=args.workers)
    if not is_main_process():  # under torchrun, rank 0 reports
        return 0
    ran = sum(1 for v in result.steps.values() if v == "ran")
    print(f"{len(result.steps)} step(s): {ran} ran, {len(result.steps) - ran} skipped (inputs unchanged)")
    print(result.table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"report: {result.report}")
    return 0


def add_experiment_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``experiment`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "experiment", help="run a whole recipe: render, train every model, stack, blend, pseudo-label, report",
        description="Run RECIPE.yaml end to end: render each distinct render config once, cross-validate every "
                    "model, predict the test set (fold ensemble + flip TTA), score the stackers with an inner "
                    "cross-validation, blend them, optionally retrain with pseudo-labels, and write OUT/report.md. "
                    "Running it again skips every step whose inputs did not change; after editing one model, only "
                    "that model and what depends on it run again. A model with `train: {images: on-the-fly}` "
                    "trains on images made on the device from the audio (no image cache). Under `torchrun "
                    "--nproc_per_node N -m specimg experiment ...` the models train data-parallel and rank 0 alone "
                    "renders, predicts, stacks, pseudo-labels and reports.")
    p.add_argument("recipe", metavar="RECIPE.yaml", help="the recipe (paths in it are relative to its folder)")
    p.add_argument("--out", metavar="DIR", help="experiment folder (default: runs/<recipe name>)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip the steps whose inputs did not change (default); --no-resume reruns everything")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="processes rendering audio (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or step lines")
    p.set_defaults(func=_cmd_experiment)
    return p
