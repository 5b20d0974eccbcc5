"""The tables of an experiment: the training and test inputs a recipe names, derived and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import pandas as pd

from ..exceptions import DataError, ParameterError
from ..tasks import Task, resolve_task
from ._recipe import Recipe
from ._steps import atomic_text, fingerprint

__all__ = ["ExperimentData", "prepare_data", "absolute_table", "cache_id", "experiment_task"]


@dataclass
class ExperimentData:
    train_source: Union[str, Path]   # what render_dataset reads
    train_table: pd.DataFrame        # read_table output of train_source
    test_table: Optional[pd.DataFrame]  # path (as in outputs), abspath, label (or None)


def absolute_table(table: pd.DataFrame) -> pd.DataFrame:
    """A read_table output as a CSV with absolute paths (so it works from any folder)."""
    out = table.drop(columns=["abspath"]).copy()
    out["path"] = [str(Path(a).resolve()) for a in table["abspath"]]
    if (table["group"] == table["path"]).all():
        out = out.drop(columns=["group"])
    return out


def _write_if_changed(frame: pd.DataFrame, path: Path) -> None:
    text = frame.to_csv(index=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_text(path, text)


def prepare_data(recipe: Recipe, out: Path) -> ExperimentData:
    from ..audio import read_table

    spec = recipe.data
    table = read_table(spec.train)
    derived = False
    test: Optional[pd.DataFrame] = None
    if spec.test_filter:
        mask = np.ones(len(table), dtype=bool)
        for col, pattern in spec.test_filter.items():
            if col not in table.columns:
                cols = [c for c in table.columns if c != "abspath"]
                raise ParameterError(f"data.test_filter names the column {col!r}, which the training input "
                                     f"{spec.train!r} does not have. Its columns: {cols}.")
            mask &= table[col].astype(str).str.contains(pattern, regex=True).to_numpy()
        if not mask.any() or mask.all():
            raise ParameterError(f"data.test_filter {dict(spec.test_filter)} moves {int(mask.sum())} of {len(table)} "
                                 "files to the test set; it must leave some files on each side. Fix the pattern.")
        test, table, derived = table[mask].reset_index(drop=True), table[~mask].reset_index(drop=True), True
    if spec.max_files_per_class is not None:
        if table["label"].isna().any():
            raise DataError(f"The training input {spec.train!r} has unlabelled files; every training file needs a "
                            "label.")
        shuffled = table.sample(frac=1.0, random_state=recipe.seed)
        keep = shuffled.groupby("label", sort=False).head(spec.max_files_per_class).index
        if len(keep) < len(table):
            table, derived = table.loc[sorted(keep)].reset_index(drop=True), True
    if spec.group_column is not None and spec.group_column not in table.columns:
        cols = [c for c in table.columns if c != "abspath"]
        raise ParameterError(f"data.group_column {spec.group_column!r} is not a column of the training input "
                             f"{spec.train!r}. Its columns: {cols}. Fix data.group_column, or set it to null to "
                             "keep each file in one fold.")
    _check_folds(recipe, table)
    data_dir = out / "data"
    if derived:
        train_csv = data_dir / "train.csv"
        _write_if_changed(absolute_table(table), train_csv)
        train_source: Union[str, Path] = train_csv
        table = read_table(train_csv)
        if test is not None:
            test = test.assign(path=[str(Path(a).resolve()) for a in test["abspath"]])
            _write_if_changed(absolute_table(test), data_dir / "test.csv")
    else:
        train_source = spec.train
    if spec.test is not None:
        test = read_table(spec.test)
    if test is not None:
        train_abs = {str(Path(a).resolve()) for a in table["abspath"]}
        both = [p for p, a in zip(test["path"], test["abspath"]) if str(Path(a).resolve()) in train_abs]
        if both:
            raise DataError(f"{len(both)} file(s) are in both the training and the test input, e.g. {both[0]!r}. "
                            "A test file must not be trained on; remove it from one of them.")
        test = test.reset_index(drop=True)
    return ExperimentData(train_source=train_source, train_table=table, test_table=test)


def cache_id(cache: Any) -> Dict[str, Any]:
    """What a step that reads an image cache depends on: its config and its tables."""
    return {"hash": cache.config.hash(), "files": fingerprint(cache.files.to_csv(index=False)),
            "segments": fingerprint(cache.segments.to_csv(index=False)), "shape": list(cache.images.shape)}


def _check_folds(recipe: Recipe, table: pd.DataFrame) -> None:
    """The recipe's 'folds' against the training table: enough groups, and enough files in every class."""
    where = f" ({recipe.source})" if recipe.source else ""
    gc = recipe.data.group_column
    groups = table[gc] if gc is not None else table["path"]
    n_groups = int(groups.nunique())
    if n_groups < recipe.folds:
        what = f"values of data.group_column {gc!r}" if gc is not None else "training files"
        raise ParameterError(f"The top-level 'folds'{where} is {recipe.folds}, but there are only {n_groups} {what} "
                             f"to split. Set folds to at most {n_groups}, or add data.")
    task = experiment_task(recipe, table)
    if task.truth_column != "label":  # tag sets: the task's fold plan says what is wrong (a missing tag...)
        task.check_input(table, n_splits=recipe.folds, group_column=gc, seed=recipe.seed)
        return
    counts = table["label"].dropna().astype(str).value_counts()
    small = counts[counts < recipe.folds]
    if len(small):
        listed = ", ".join(f"{c!r} ({int(n)} files)" for c, n in small.items())
        raise ParameterError(f"The top-level 'folds'{where} is {recipe.folds}, but class(es) {listed} have fewer "
                             f"files than folds. Set folds to at most {int(counts.min())}, or add files of these "
                             "classes.")


def experiment_task(recipe: Recipe, table: pd.DataFrame) -> Task:
    """The one task every model of the recipe learns on ``table`` (its models may not disagree)."""
    tasks = {m.name: resolve_task(table, recipe.train_config(m)) for m in recipe.models}
    kinds = {t.kind for t in tasks.values()}
    if len(kinds) > 1:
        where = f" ({recipe.source})" if recipe.source else ""
        raise ParameterError(f"The models of the recipe{where} learn different tasks ("
                             + ", ".join(f"{n}: {t.kind}" for n, t in tasks.items()) + "); their runs could not be "
                             "stacked. Give every model the same train.task.kind.")
    return next(iter(tasks.values()))
