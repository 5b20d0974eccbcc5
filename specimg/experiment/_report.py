"""The report of an experiment: one table of every model, their mean, every stacker and the blend, and the
plots of the final result."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..tasks import Task
from ..training import Run
from ._data import ExperimentData
from ._recipe import Recipe
from ._steps import atomic_csv, atomic_text, file_digest, fingerprint

__all__ = ["write_report_step", "round_rows"]


def _load(files: Sequence[Path], task: Task, *,
          mean: bool) -> Optional[Tuple[List[str], np.ndarray, np.ndarray, List[str]]]:
    """``(paths, truth, scores, classes)`` of a prediction table (``mean``: the mean of several aligned ones), or
    None when a table is missing or lacks the truth."""
    from ..predict.aggregate import read_predictions
    from ..stacking import align_runs

    if not all(f.is_file() for f in files):
        return None
    if mean:
        paths, X, y, classes, _ = align_runs(files, require_folds=False, task=task)
        return (paths, y, X.mean(axis=1), classes) if y is not None else None
    frame, classes, probs = read_predictions(files[0], task=task)
    column = task.truth_column
    if column not in frame.columns or any(v is None for v in frame[column]):
        return None
    return frame["path"].tolist(), task.truth_of(frame[column].tolist(), classes), probs, classes


def _scores(files: Sequence[Path], task: Task, *, mean: bool) -> Optional[Dict[str, float]]:
    """The task's headline scores of :func:`_load`'s predictions (None without them)."""
    loaded = _load(files, task, mean=mean)
    if loaded is None:
        return None
    _, y, probs, classes = loaded
    m = task.evaluation_metrics(y, probs, classes)
    return {**{k: _number(m[k]) for k, _ in task.headline_scores}, "n_files": int(len(y))}


def _number(v: Any) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def round_rows(rnd: int, recipe: Recipe, dirs: Mapping[str, Path], task: Task) -> List[Dict[str, Any]]:
    """The report's rows of one round: each model, their mean, each stacker, the blend; ``oof_<score>`` and
    (with a labelled test set) ``test_<score>`` of the task's headline scores."""
    rows = []
    models = [m.name for m in recipe.models]
    entries: List[Tuple[str, str, Optional[Path]]] = [("model", n, dirs[n]) for n in models]
    entries.append(("mean", "mean of models", None))
    entries += [("stacker", m, dirs[m]) for m in recipe.stacking.methods if m != "mean"]
    if "blend" in dirs:
        entries.append(("blend", "blend", dirs["blend"]))
    keys = [k for k, _ in task.headline_scores]
    for kind, name, d in entries:
        folders = [dirs[n] for n in models] if d is None else [d]
        oof = _scores([f / Run.OOF_FILES for f in folders], task, mean=d is None)
        test = _scores([f / Run.TEST_FILES for f in folders], task, mean=d is None)
        row: Dict[str, Any] = {"round": rnd, "kind": kind, "name": name, "n_files": oof["n_files"] if oof else None}
        row.update({f"oof_{k}": oof[k] if oof else None for k in keys})
        if test is not None:
            row.update({f"test_{k}": test[k] for k in keys})
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"


def _render_errors(out: Path, caches: Mapping[str, Any], kind: str) -> List[str]:
    """One line per image cache with files that could not be rendered (they were left out of the experiment)."""
    lines = []
    for cache in caches.values():
        if cache.errors is not None and len(cache.errors):
            first = cache.errors.iloc[0]
            listing = Path(cache.root) / "errors.csv"
            if listing.is_relative_to(out):
                listing = listing.relative_to(out)
            lines.append(f"{len(cache.errors)} {kind} file(s) could not be rendered and were left out, e.g. "
                         f"`{first['path']}`: {first['error']} (all listed in `{listing}`)")
    return lines


def _markdown(recipe: Recipe, table: pd.DataFrame, data: ExperimentData, classes: List[str], pseudo_info: List[str],
              final: str, task: Task, render_errors: Sequence[str] = ()) -> str:
    scores = task.headline_scores
    has_test = f"test_{scores[0][0]}" in table.columns
    n_test = 0 if data.test_table is None else len(data.test_table)
    lines = [f"# Experiment report: {recipe.name}", ""]
    if recipe.source:
        lines += [f"Recipe: `{recipe.source}`", ""]
    group = f"grouped by `{recipe.data.group_column}`" if recipe.data.group_column else "grouped by file"
    lines += [f"- training files: {len(data.train_table)}; {task.kind} classes ({len(classes)}): "
              f"{', '.join(classes)}",
              f"- cross-validation: {recipe.folds} folds {group}; stackers scored by an inner cross-validation "
              "grouped by the outer folds",
              f"- test files: {n_test}" + ("" if n_test else " (no test set)"),
              "- models: " + ", ".join(f"`{m.name}` ({m.backbone})" for m in recipe.models)]
    lines += [f"- {line}" for line in render_errors] + [""]
    for rnd, part in table.groupby("round", sort=True):
        title = "Round 1" if rnd == 1 else f"Round {rnd} (with pseudo-labels)"
        lines += [f"## {title}", ""]
        head = "| kind | name | " + " | ".join(f"OOF {name}" for _, name in scores) + " |" + (
            " " + " | ".join(f"test {name}" for _, name in scores) + " |" if has_test else "")
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for _, r in part.iterrows():
            cells = [r["kind"], r["name"], *(_fmt(r[f"oof_{k}"]) for k, _ in scores)]
            if has_test:
                cells += [_fmt(r.get(f"test_{k}")) for k, _ in scores]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    if pseudo_info:
        lines += ["## Pseudo-labels", ""] + [f"- {s}" for s in pseudo_info] + [
            "",
            "Pseudo-labelled files are never in a validation fold, so the out-of-fold scores of later rounds are "
            "computed on the same labelled files as round 1. They are still slightly optimistic: the pseudo-labels "
            "came from models that had seen every labelled file. The test scores are the fair comparison.", ""]
    lines += [f"Plots of the final result (`{final}`): [out-of-fold](report/report.md)"
              + (" and [test](report/test/report.md)" if has_test else "") + ".", ""]
    return "\n".join(lines)


def write_report_step(runner: Any, table: pd.DataFrame, rounds: List[Tuple[int, Dict[str, Path]]],
            train_caches: Mapping[str, Any], test_caches: Mapping[str, Any], data: ExperimentData,
            pseudo_info: List[str]) -> str:
    """``report.md``, ``report.csv`` and the plots of the final result (rank 0); returns the final result's name."""
    recipe, out, task = runner.recipe, runner.out, runner.task
    last_rnd, last = rounds[-1]
    final_key = "blend" if "blend" in last else (
        [m for m in recipe.stacking.methods if m in last][-1] if recipe.stacking.methods else None)
    final = f"round{last_rnd}/{final_key or 'mean of models'}"
    inputs = sorted(out.glob("**/oof_files.csv")) + sorted(out.glob("**/test_files.csv"))
    inputs = [p for p in inputs if "fold_" not in p.parent.name]
    fp = fingerprint({"table": table.to_csv(index=False), "inputs": [file_digest(p) for p in inputs],
                      "final": final})
    classes = Run(last[recipe.models[0].name]).classes

    def work() -> None:
        _write_final_report(out, recipe, last, final_key, final, task)
        atomic_csv(table, out / "report.csv")
        render_errors = _render_errors(out, train_caches, "training") + _render_errors(out, test_caches, "test")
        atomic_text(out / "report.md", _markdown(recipe, table, data, classes, pseudo_info, final, task,
                                                 render_errors))

    runner.step("report", fp, [out / "report.md", out / "report.csv", out / "report" / "report.md"], work)
    return final


def _write_final_report(out: Path, recipe: Recipe, dirs: Mapping[str, Path], key: Optional[str], final: str,
                        task: Task) -> None:
    from ..predict import write_report

    folders = [dirs[m.name] for m in recipe.models] if key is None else [dirs[key]]
    # the final result's decision rule (a stack's or a model's thresholds; none for the mean of models)
    decision = Run(dirs[key]).thresholds if key is not None else None
    for name, folder, what in ((Run.OOF_FILES, out / "report", "out-of-fold"),
                               (Run.TEST_FILES, out / "report" / "test", "test")):
        loaded = _load([f / name for f in folders], task, mean=key is None)
        if loaded is not None:
            write_report(folder, loaded[1], loaded[2], loaded[3], task=task, decision=decision, paths=loaded[0],
                         title=f"{recipe.name}: {what} predictions of {final}", extra={"result": final})
