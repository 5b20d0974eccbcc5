"""Pseudo-labelling rounds of an experiment: confident test predictions join the training set of a new round
(``pseudo=True``: they train every fold and are never validated on), their images copied into a merged cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pandas as pd

from ..exceptions import DataError
from ..training import Run
from ._data import ExperimentData, absolute_table, cache_id
from ._recipe import Recipe
from ._steps import atomic_csv, file_digest, fingerprint, table_digest

__all__ = ["pseudo_rounds", "check_pseudo_guard"]


def pseudo_round(runner: Any, rnd: int, previous: Mapping[str, Path], train_caches: Mapping[str, Any],
                 test_caches: Mapping[str, Any], data: ExperimentData) -> Optional[Tuple[Dict[str, Any], Path]]:
    """Select pseudo-labels from the previous round; the merged caches and training table of round ``rnd``.

    Returns None when no test file reaches the threshold (the round is not run).
    """
    ps = runner.recipe.pseudo
    root = runner.out / f"round{rnd}"
    src = previous[ps.source] / Run.TEST_FILES
    fp = fingerprint({"source": file_digest(src), "threshold": ps.threshold, "max_per_class": ps.max_per_class,
                      "inclusive": getattr(ps, "inclusive", False), "train": table_digest(data.train_table)})
    picked_csv, table_csv = root / "pseudo_labels.csv", root / "train.csv"
    runner.step(f"round{rnd}/pseudo-labels", fp, [picked_csv, table_csv],
              lambda: _write_pseudo_tables(runner.recipe, src, data, picked_csv, table_csv),
              info=lambda n: {"n_pseudo": n})
    picked = pd.read_csv(picked_csv, dtype={"path": str, "label": str, "abspath": str, "true_label": str},
                         keep_default_na=False)
    if picked.empty:  # nothing confident enough: this round would repeat the previous one
        return None
    merged = {h: _merged_cache(runner, rnd, h, cache, test_caches[h], picked) for h, cache in train_caches.items()}
    return merged, table_csv

def _merged_cache(runner: Any, rnd: int, h: str, train: Any, test: Any, picked: pd.DataFrame) -> Any:
    """The training cache plus the pseudo-labelled test files' images (no re-rendering)."""
    from ..spectrogram import ImageCache

    root = runner.out / f"round{rnd}" / "caches" / h / "train"
    fp = fingerprint({"train": cache_id(train), "test": cache_id(test),
                      "picked": picked[["abspath", "label"]].to_csv(index=False)})
    runner.step(f"round{rnd}/merge/{h}", fp, [root / ImageCache.CONFIG_FILE],
              lambda: _merge_pseudo(train, test, picked, root),
              info=lambda c: {"n_files": len(c.files), "n_pseudo": int(c.files["pseudo"].sum())})
    return ImageCache.open(root)


def _write_pseudo_tables(recipe: Recipe, src: Path, data: ExperimentData, picked_csv: Path, table_csv: Path) -> int:
    """The pseudo-labelled test files (``pseudo_labels.csv``) and the training table with them (``train.csv``)."""
    from ..predict import read_predictions
    from ..stacking import pseudo_training_table, select_pseudo_labels

    ps = recipe.pseudo
    frame, classes, probs = read_predictions(src)
    picked = select_pseudo_labels(frame["path"].tolist(), probs, classes, threshold=ps.threshold,
                                  max_per_class=ps.max_per_class)
    abspath = dict(zip(data.test_table["path"], data.test_table["abspath"].astype(str)))
    truth = dict(zip(data.test_table["path"], data.test_table["label"]))
    picked["abspath"] = [abspath[p] for p in picked["path"]]
    if all(truth.get(p) is not None for p in picked["path"]):
        picked["true_label"] = [truth[p] for p in picked["path"]]
    atomic_csv(picked, picked_csv)
    base = absolute_table(data.train_table)
    extra = picked[["abspath", "label", "confidence"]].rename(columns={"abspath": "path"})
    extra["path"] = [str(Path(a).resolve()) for a in extra["path"]]
    gc = recipe.data.group_column
    if gc is not None and gc in data.test_table.columns:
        group_of = dict(zip(data.test_table["path"], data.test_table[gc]))
        extra[gc] = [group_of[p] for p in picked["path"]]
    atomic_csv(pseudo_training_table(base, extra), table_csv)
    return int(len(picked))


def _merge_pseudo(train: Any, test: Any, picked: pd.DataFrame, root: Path) -> Any:
    """``train`` followed by the picked test files (labelled, ``pseudo=True``, each its own group), as a new cache."""
    label_of = dict(zip(picked["abspath"], picked["label"]))
    base = train.select(np.ones(len(train.files), dtype=bool))
    base.files["pseudo"] = False
    chosen = test.select(test.files["path"].isin(label_of).to_numpy())
    chosen.files["label"] = [label_of[p] for p in chosen.files["path"]]
    chosen.files["pseudo"] = True
    chosen.files["group"] = chosen.files["path"]
    base.files = base.files.drop(columns=["n_segments"], errors="ignore")
    chosen.files = chosen.files.drop(columns=["n_segments"], errors="ignore")
    return base.concat(chosen, out=root)


def _shared_groups(recipe: Recipe, data: ExperimentData) -> List[str]:
    """The group values (speakers, patients) found in both the training and the test table."""
    gc = recipe.data.group_column
    if gc is None or data.test_table is None or gc not in data.test_table.columns:
        return []
    train = set(data.train_table[gc].dropna().astype(str))
    return sorted(train & set(data.test_table[gc].dropna().astype(str)))


def check_pseudo_guard(run: Any, files: pd.DataFrame) -> None:
    """Pseudo-labelled files (``files``' pseudo column) must never be validated on: fold -1 in folds.csv and
    absent from the out-of-fold table."""
    from ..data import pseudo_mask

    mask = pseudo_mask(files)
    if not mask.any():
        return
    pseudo_paths = set(files["path"][mask])
    leaked = sorted(pseudo_paths & set(run.oof_files["path"]))
    folds = run.folds
    if folds is not None:
        bad = folds[folds["path"].isin(pseudo_paths) & (folds["fold"] != -1)]
        leaked += sorted(set(bad["path"]) - set(leaked))
    if leaked:
        raise DataError(f"{len(leaked)} pseudo-labelled file(s) were put in a validation fold of {str(run.root)!r}, "
                        f"e.g. {leaked[0]!r}; their out-of-fold scores would be meaningless. This is a bug in "
                        "training's handling of the 'pseudo' column.")


def pseudo_rounds(runner: Any, rounds: List[Tuple[int, Dict[str, Path]]], train_caches: Mapping[str, Any],
                   test_caches: Mapping[str, Any], data: ExperimentData) -> List[str]:
    """The pseudo-label rounds (appended to ``rounds``); returns the report's lines about them."""
    recipe, out = runner.recipe, runner.out
    info: List[str] = []
    for rnd in range(2, recipe.pseudo.rounds + 2):
        merged = pseudo_round(runner, rnd, rounds[-1][1], train_caches, test_caches, data)
        picked = pd.read_csv(out / f"round{rnd}" / "pseudo_labels.csv", dtype=str, keep_default_na=False)
        msg = (f"round {rnd}: {len(picked)} of {len(data.test_table)} test files reached confidence > "
               f"{recipe.pseudo.threshold} in `{recipe.pseudo.source}` of round {rnd - 1}")
        if len(picked) and "true_label" in picked.columns:
            msg += f"; {np.mean(picked['label'] == picked['true_label']):.4f} of these pseudo-labels are correct"
        if merged is None:
            info.append(msg + f"; round {rnd} was not run (lower pseudo.threshold to pseudo-label some)")
            break
        info.append(msg)
        shared = _shared_groups(recipe, data)
        if shared:
            gc = recipe.data.group_column
            info.append(
                f"**Caveat**: the test set shares {len(shared)} `{gc}` value(s) with the training set (e.g. "
                f"{', '.join(map(str, shared[:3]))}). Pseudo-labelled files join every training split, so in round "
                f"{rnd} a validation {gc} is also trained on through its pseudo-labelled test files: the out-of-fold "
                f"scores of round {rnd} are optimistic and not comparable with round 1. Compare the rounds on the "
                "test scores.")
        merged_caches, round_table = merged
        rounds.append((rnd, runner.run_round(rnd, out / f"round{rnd}", merged_caches, test_caches, data,
                                             round_table)))
    return info
