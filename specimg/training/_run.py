"""The run folder: one object owns its layout (config, folds, checkpoints, out-of-fold tables, metrics).

Every file name of a run is defined here; every stage writes and reads a run through :class:`Run`.

Layout::

    RUN/
      config.json          resolved train + render config, classes, backbone, normalisation, fingerprint
      folds.csv            path, label[, group], fold
      fold_{k}/            best.pt, last.pt, log.csv, fold.json, oof_files.csv, oof_segments.csv
      oof_files.csv        path, label, fold, prediction, prob_<class>...
      oof_segments.csv     path, segment, start, end, fold, prob_<class>...
      metrics.json         per-fold and mean +- std scores
      thresholds.json      the task's decision rule fitted on the out-of-fold scores (multi-label: per-class
                           thresholds)
      test_files.csv       (experiments) test-set predictions of the fold ensemble
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .._io import PathLike, atomic_write_csv, atomic_write_text, read_done, write_done
from ..config import RenderConfig, TrainConfig
from ..exceptions import DataError
from ..tasks import Task

__all__ = ["Run"]

_STR_COLUMNS = {"path": str, "label": str, "labels": str, "prediction": str}


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class Run:
    """A run folder written by :func:`~specimg.training.train_cv` (or a stacking step).

    ``Run(path)`` only names the folder; :meth:`open` checks that it holds a
    run, :meth:`create` makes it. Reading methods never write; every write is
    atomic (a temporary file renamed over the target).

    Parameters
    ----------
    root : path
        The run folder.

    Examples
    --------
    >>> run = Run.open("runs/fsdd")  # doctest: +SKIP
    >>> run.classes, run.finished_folds()  # doctest: +SKIP
    (['0', '1', ...], [0, 1, 2, 3, 4, 5])
    >>> run.oof_files.head()  # doctest: +SKIP
    """

    CONFIG = "config.json"
    FOLDS = "folds.csv"
    OOF_FILES = "oof_files.csv"
    OOF_SEGMENTS = "oof_segments.csv"
    TEST_FILES = "test_files.csv"
    METRICS = "metrics.json"
    THRESHOLDS = "thresholds.json"
    ANCHOR = "anchor.json"
    FOLD_DIR = "fold_{}"
    FOLD_INFO = "fold.json"
    BEST = "best.pt"
    LAST = "last.pt"
    LOG = "log.csv"
    #: the keys a config.json must hold for the run's models to be rebuilt
    REQUIRED = ("classes", "render", "train")

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        self._config: Optional[Dict[str, Any]] = None

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # ------------------------------------------------------------------ open / create
    @classmethod
    def create(cls, root: PathLike) -> "Run":
        """The run folder ``root``, made if missing."""
        run = cls(root)
        run.root.mkdir(parents=True, exist_ok=True)
        return run

    @classmethod
    def open(cls, root: Union[PathLike, "Run"], *, need_models: bool = True) -> "Run":
        """An existing run; raises :class:`~specimg.exceptions.DataError` naming what is missing.

        Parameters
        ----------
        root : path or Run
        need_models : bool
            Also require the keys that rebuild the models (classes, render
            and train configs); ``False`` accepts any folder with a
            ``config.json`` or an ``oof_files.csv`` (a stacking result).
        """
        run = root if isinstance(root, Run) else cls(root)
        if not run.root.is_dir():
            raise DataError(f"{str(run.root)!r} is not a specimg run folder (no {cls.CONFIG}): it does not exist. "
                            "Train one with `specimg train` (--out RUN).")
        if not need_models and run.path(cls.OOF_FILES).is_file():
            return run
        cfg = run.path(cls.CONFIG)
        if not cfg.is_file():
            raise DataError(f"{str(run.root)!r} is not a specimg run folder (no {cls.CONFIG}). Train one with "
                            "`specimg train`.")
        meta = _read_json(cfg)
        if meta is None:
            raise DataError(f"{str(cfg)!r} cannot be read as JSON: the run folder is damaged. Train it again.")
        if need_models:
            for key in cls.REQUIRED:
                if key not in meta:
                    raise DataError(f"{str(cfg)!r} lacks {key!r}: the run folder is incomplete or from another "
                                    "tool. Train it again.")
        return run

    # ------------------------------------------------------------------ paths
    def path(self, name: str) -> Path:
        """``root / name`` (``name``: one of the class's file-name constants)."""
        return self.root / name

    def fold_dir(self, fold: int) -> Path:
        return self.root / self.FOLD_DIR.format(int(fold))

    def checkpoint(self, fold: int, which: str = "best") -> Path:
        """``fold_{k}/best.pt`` (``which='best'``) or ``fold_{k}/last.pt``."""
        return self.fold_dir(fold) / {"best": self.BEST, "last": self.LAST}[which]

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> Dict[str, Any]:
        """The resolved ``config.json`` (read once)."""
        if self._config is None:
            meta = _read_json(self.path(self.CONFIG))
            if meta is None:
                raise DataError(f"{str(self.path(self.CONFIG))!r} is missing or unreadable. Train the run first.")
            self._config = meta
        return self._config

    def has_config(self) -> bool:
        return _read_json(self.path(self.CONFIG)) is not None

    @property
    def classes(self) -> List[str]:
        return [str(c) for c in self.config["classes"]]

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.config["train"])

    @property
    def render_config(self) -> RenderConfig:
        return RenderConfig.from_dict(self.config["render"])

    @property
    def images(self) -> str:
        """How the run's models saw images: ``'cached'`` or ``'on-the-fly'``."""
        train = self.config.get("train", {})
        value = train.get("images") or {"gpu": "on-the-fly"}.get(str(train.get("frontend")), "cached")
        return str(value)

    @property
    def task(self) -> Task:
        """What the run learnt (:mod:`specimg.tasks`), as :func:`~specimg.training.train_cv` resolved it.

        A stacking result (no ``config.json``) is multi-label when its out-of-fold table has a ``labels``
        column; runs from before the task existed are single-label.
        """
        if self.has_config():
            train = self.config.get("train")
            if isinstance(train, dict):
                cfg = TrainConfig.from_dict(train).task
                if cfg.resolved:
                    return Task.from_config(cfg)
            return Task.for_kind(str(self.config.get("task", "single-label")))
        if self.path(self.OOF_FILES).is_file():
            cols = pd.read_csv(self.path(self.OOF_FILES), nrows=0).columns
            return Task.for_kind("multi-label" if "labels" in cols else "single-label")
        return Task.for_kind("single-label")

    @property
    def thresholds(self) -> Optional[Dict[str, Any]]:
        """What the task's decision rule learnt (``thresholds.json``: a multi-label run's per-class thresholds),
        or None.

        ``{'classes': [...], 'file': {class: t}, 'window': {class: t}, ...}``:
        a file's pooled score (``file``) or a window's score (``window``) at or
        above its class's threshold is a detection.
        """
        return _read_json(self.path(self.THRESHOLDS))

    def write_thresholds(self, thresholds: Mapping[str, Any]) -> Path:
        atomic_write_text(self.path(self.THRESHOLDS), json.dumps(dict(thresholds), indent=2) + "\n")
        return self.path(self.THRESHOLDS)

    @property
    def fingerprint(self) -> Optional[str]:
        return self.config.get("fingerprint") if self.has_config() else None

    def write_config(self, resolved: Mapping[str, Any]) -> None:
        atomic_write_text(self.path(self.CONFIG), json.dumps(dict(resolved), indent=2))
        self._config = dict(resolved)

    def audio_path(self, path: str) -> Optional[Path]:
        """Where the audio of a table path (as in ``oof_files.csv``) lies, or None when unknown.

        Relative paths are resolved against the folder of the table the run
        was trained from (``config.json["data_root"]``), else through the
        run's image cache (its ``files.csv`` ``abspath``).
        """
        p = Path(path)
        if p.is_absolute():
            return p
        root = self.config.get("data_root")
        if root:
            return Path(root) / p
        return self._cache_abspaths().get(str(path))

    def _cache_abspaths(self) -> Dict[str, Path]:
        cache = self.config.get("cache")
        table = Path(cache) / "files.csv" if cache else None
        if table is None or not table.is_file():
            return {}
        files = pd.read_csv(table, dtype={"path": str, "abspath": str}, usecols=lambda c: c in ("path", "abspath"))
        if "abspath" not in files:
            return {}
        return {p: Path(a) for p, a in zip(files["path"], files["abspath"])}

    # ------------------------------------------------------------------ folds
    def fold_info(self, fold: int) -> Optional[Dict[str, Any]]:
        return read_done(self.fold_dir(fold) / self.FOLD_INFO)

    def fold_done(self, fold: int, fingerprint: Optional[str] = None) -> bool:
        """A finished fold: ``fold.json`` (of this ``fingerprint``), ``best.pt`` and its out-of-fold tables
        (:func:`specimg._io.read_done`)."""
        d = self.fold_dir(fold)
        return read_done(d / self.FOLD_INFO, fingerprint,
                         [d / n for n in (self.BEST, self.OOF_FILES, self.OOF_SEGMENTS)]) is not None

    def finished_folds(self, fingerprint: Optional[str] = None) -> List[int]:
        """The folds with a ``fold.json`` (of this fingerprint), ``best.pt`` and out-of-fold tables, sorted."""
        return [k for k in self._fold_indices() if self.fold_done(k, fingerprint)]

    def trained_folds(self) -> List[int]:
        """The folds that have a ``best.pt`` (what :meth:`load_models` can load), sorted."""
        return [k for k in self._fold_indices() if self.checkpoint(k).is_file()]

    def _fold_indices(self) -> List[int]:
        out = []
        for d in self.root.glob(self.FOLD_DIR.format("*")):
            tail = d.name[len(self.FOLD_DIR.format("")):]
            if d.is_dir() and tail.isdigit():
                out.append(int(tail))
        return sorted(out)

    def start_fold(self, fold: int) -> Path:
        """Mark a fold unfinished (remove its ``fold.json``) before it trains; returns its folder."""
        (self.fold_dir(fold) / self.FOLD_INFO).unlink(missing_ok=True)
        return self.fold_dir(fold)

    def write_fold(self, fold: int, segments: pd.DataFrame, files: pd.DataFrame, info: Mapping[str, Any]) -> None:
        """A fold's out-of-fold tables, then ``fold.json`` last (the fold counts as done once it exists)."""
        d = self.fold_dir(fold)
        atomic_write_csv(segments, d / self.OOF_SEGMENTS)
        atomic_write_csv(files, d / self.OOF_FILES)
        info = dict(info)
        write_done(d / self.FOLD_INFO, str(info.pop("fingerprint", "")), **info)

    def read_fold(self, fold: int) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[str, Any]]:
        """A finished fold's (segments, files, info)."""
        d = self.fold_dir(fold)
        seg = pd.read_csv(d / self.OOF_SEGMENTS, dtype={"path": str, "labels": str})
        files = pd.read_csv(d / self.OOF_FILES, dtype=_STR_COLUMNS, keep_default_na=False)
        return seg, files, self.fold_info(fold) or {}

    def discard(self) -> None:
        """Remove every fold and the run-level tables (a run retrained from scratch with another config)."""
        for d in self.root.glob(self.FOLD_DIR.format("*")):
            shutil.rmtree(d, ignore_errors=True)
        for name in (self.OOF_SEGMENTS, self.OOF_FILES, self.METRICS, self.THRESHOLDS):
            self.path(name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ tables
    def _table(self, name: str, *, strings: bool = True) -> pd.DataFrame:
        path = self.path(name)
        if not path.is_file():
            raise DataError(f"The run {str(self.root)!r} has no {name}: no fold has finished yet. Run the same "
                            "`specimg train` command again to resume it.")
        if strings:
            return pd.read_csv(path, dtype=_STR_COLUMNS, keep_default_na=False)
        return pd.read_csv(path, dtype={"path": str, "labels": str})

    @property
    def oof_files(self) -> pd.DataFrame:
        """``path, label, fold, prediction, prob_<class>...``: one row per out-of-fold file."""
        return self._table(self.OOF_FILES)

    @property
    def oof_segments(self) -> pd.DataFrame:
        """``path, segment, start, end, fold, prob_<class>...``: one row per out-of-fold window."""
        return self._table(self.OOF_SEGMENTS, strings=False)

    @property
    def test_files(self) -> Optional[pd.DataFrame]:
        """The test-set predictions an experiment wrote (``test_files.csv``), or None."""
        return self._table(self.TEST_FILES) if self.path(self.TEST_FILES).is_file() else None

    @property
    def folds(self) -> Optional[pd.DataFrame]:
        """``folds.csv`` (path, label[, group], fold), or None for runs without one."""
        path = self.path(self.FOLDS)
        return pd.read_csv(path, dtype={"path": str, "label": str, "labels": str}) if path.is_file() else None

    @property
    def metrics(self) -> Dict[str, Any]:
        meta = _read_json(self.path(self.METRICS))
        if meta is None:
            raise DataError(f"The run {str(self.root)!r} has no readable {self.METRICS}. Run the same `specimg "
                            "train` command again.")
        return meta

    def write_table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write one of the run's tables (``Run.OOF_FILES``, ``Run.TEST_FILES``, ``Run.FOLDS``...) atomically."""
        atomic_write_csv(frame, self.path(name))
        return self.path(name)

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        atomic_write_text(self.path(self.METRICS), json.dumps(dict(metrics), indent=2) + "\n")
        return self.path(self.METRICS)

    # ------------------------------------------------------------------ models
    def load_models(self, folds: Union[str, int, Sequence[int]] = "all", *,
                    device: Any = "cpu") -> Tuple[List[Any], Dict[str, Any]]:
        """The fold models (eval mode) and the run's meta (``config.json`` + ``folds``, ``mean``, ``std``,
        ``input_size`` from the checkpoints).

        Raises
        ------
        DataError
            A run without the requested (or any) trained fold, or whose
            checkpoints were trained on other classes than its config lists.
        """
        from ._checkpoint import load_trained

        Run.open(self)
        meta = dict(self.config)
        available = self.trained_folds()
        if not available:
            raise DataError(f"The run {str(self.root)!r} has no trained fold (no fold_*/best.pt): training did not "
                            "finish a fold. Run the same `specimg train` command again to resume it.")
        if isinstance(folds, str) and folds == "all":
            chosen = available
        else:
            chosen = [int(folds)] if isinstance(folds, (int, np.integer, str)) else [int(f) for f in folds]
            missing = sorted(set(chosen) - set(available))
            if missing:
                raise DataError(f"The run {str(self.root)!r} has no finished fold(s) {missing}; finished folds: "
                                f"{available}.")
        models, ckpt = [], {}
        for k in chosen:
            model, ckpt = load_trained(self.checkpoint(k), device=device)
            if list(ckpt.get("classes", meta["classes"])) != list(meta["classes"]):
                raise DataError(f"fold_{k}/best.pt was trained on other classes than "
                                f"{str(self.path(self.CONFIG))!r} lists. Train the run again.")
            models.append(model)
        data = meta.get("data", {})
        meta["folds"] = chosen
        meta["mean"] = list(ckpt.get("mean", data.get("mean")))
        meta["std"] = list(ckpt.get("std", data.get("std")))
        meta["input_size"] = list(ckpt.get("input_size", data.get("input_size")))
        return models, meta
