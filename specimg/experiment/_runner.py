"""Run a recipe end to end: render, cross-validate every model, predict the test set, stack, blend,
pseudo-label, retrain, report. Every step is skipped when its inputs did not change.

Layout of an experiment folder::

    recipe.json                    the resolved recipe
    data/train.csv, data/test.csv  the tables used, when the recipe derives them (filter, subsample)
    caches/<hash>/train|test/      one image cache per distinct render config
    models/<name>/                 a train_cv run folder, plus test_files.csv
    stack/<method>/                oof_files.csv, metrics.json, test_files.csv of each stacker
    stack/blend/                   the final blend
    round2/...                     pseudo-label round: train.csv, pseudo_labels.csv, caches/, models/, stack/
    report.md, report.csv          every model, their mean, every stacker and the blend
    report/                        write_report plots of the final blend (out-of-fold, and test when labelled)
    steps/<step>.json              fingerprints of each finished step
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..config import RenderConfig, TrainConfig
from ..spectrogram import ImageCache
from ..training import Run
from ..exceptions import DataError, ParameterError
from ._recipe import Recipe, load_recipe
from ..stacking import stack_runs
from ._steps import Steps, atomic_csv, atomic_text, file_digest, file_stat, fingerprint, table_digest

__all__ = ["run_experiment", "ExperimentResult"]

_logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns (everything is also written under ``out_dir``).

    Attributes
    ----------
    out_dir : Path
    table : pd.DataFrame
        One row per result: ``round, kind ('model', 'mean', 'stacker',
        'blend'), name, n_files, oof_accuracy, oof_uar`` and, with a labelled
        test set, ``test_accuracy, test_uar`` (also ``OUT/report.csv``).
    report : Path
        ``OUT/report.md``.
    steps : dict[str, str]
        ``step -> 'ran' | 'skipped'``, in order.
    final : str
        The result the report's plots show (``'round1/blend'``, ...).
    """

    out_dir: Path
    table: pd.DataFrame
    report: Path
    steps: Dict[str, str] = field(default_factory=dict)
    final: str = ""


# --------------------------------------------------------------------------- data
@dataclass
class _Data:
    train_source: Union[str, Path]   # what render_dataset reads
    train_table: pd.DataFrame        # read_table output of train_source
    test_table: Optional[pd.DataFrame]  # path (as in outputs), abspath, label (or None)


def _table_csv(table: pd.DataFrame) -> pd.DataFrame:
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


def _prepare_data(recipe: Recipe, out: Path) -> _Data:
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
        data_dir.mkdir(parents=True, exist_ok=True)
        train_csv = data_dir / "train.csv"
        _write_if_changed(_table_csv(table), train_csv)
        train_source: Union[str, Path] = train_csv
        table = read_table(train_csv)
        if test is not None:
            test = test.assign(path=[str(Path(a).resolve()) for a in test["abspath"]])
            _write_if_changed(_table_csv(test), data_dir / "test.csv")
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
    return _Data(train_source=train_source, train_table=table, test_table=test)


def _cache_id(cache: Any) -> Dict[str, Any]:
    """What a step that reads an image cache depends on: its config and its tables."""
    return {"hash": cache.config.hash(), "files": fingerprint(cache.files.to_csv(index=False)),
            "segments": fingerprint(cache.segments.to_csv(index=False)), "shape": list(cache.images.shape)}


def _check_before_work(recipe: Recipe) -> None:
    """What can fail cheaply fails before any output is written: data paths and backbone names."""
    from ..models import check_backbone_name

    where = f" ({recipe.source})" if recipe.source else ""
    for key in ("train", "test"):
        path = getattr(recipe.data, key)
        if path is not None and not Path(path).exists():
            raise ParameterError(f"data.{key}{where} names {path!r}, which does not exist. Fix the path (a relative "
                                 "path is relative to the recipe's folder): it must name a CSV (path,label[,group]) "
                                 "or a folder of audio.")
    for i, m in enumerate(recipe.models):
        try:
            check_backbone_name(m.backbone)
        except ParameterError as exc:
            raise ParameterError(f"models[{i}].backbone{where} of model {m.name!r}: {exc} Register a custom "
                                 "network with specimg.models.register_backbone before running the recipe."
                                 ) from None


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
    counts = table["label"].dropna().astype(str).value_counts()
    small = counts[counts < recipe.folds]
    if len(small):
        listed = ", ".join(f"{c!r} ({int(n)} files)" for c, n in small.items())
        raise ParameterError(f"The top-level 'folds'{where} is {recipe.folds}, but class(es) {listed} have fewer "
                             f"files than folds. Set folds to at most {int(counts.min())}, or add files of these "
                             "classes.")


# --------------------------------------------------------------------------- one experiment
class _Runner:
    """The steps of one experiment, each skipped when the fingerprint of its inputs did not change.

    One mechanism (:meth:`step`) decides for every step. Under ``torchrun``
    rank 0 decides and the others follow; the training steps run on every
    process (data-parallel, :func:`~specimg.training.train_cv`), every other
    step on rank 0 alone while the others wait.
    """

    def __init__(self, recipe: Recipe, out: Path, *, resume: bool, verbose: bool, workers: int) -> None:
        from ..training import is_main_process

        self.recipe = recipe
        self.out = out
        self.main = is_main_process()
        self.verbose = verbose and self.main
        self.steps = Steps(out, resume=resume, verbose=self.verbose)
        self.workers = workers
        self.render_cfg: Dict[str, RenderConfig] = {m.name: recipe.render_config(m) for m in recipe.models}
        self.train_cfg: Dict[str, TrainConfig] = {m.name: recipe.train_config(m) for m in recipe.models}

    def on_the_fly(self, name: str) -> bool:
        return self.train_cfg[name].images == "on-the-fly"

    def step(self, name: str, fp: str, outputs: Sequence[Path], work: Any, *, everyone: bool = False,
             info: Any = None) -> bool:
        """Run ``work()`` unless step ``name`` finished with fingerprint ``fp`` and its outputs exist.

        ``everyone``: every process runs it (training); otherwise rank 0
        alone. ``info(result)`` adds entries to the step's record. Returns
        whether the step ran.
        """
        from ..training import barrier, broadcast_object

        done = broadcast_object(self.steps.is_done(name, fp, outputs) if self.main else None)
        if done:
            self.steps.log[name] = "skipped"
            return False
        if self.main:
            self.steps.start(name)
        result = work() if everyone or self.main else None
        barrier()
        if self.main:
            self.steps.mark(name, fp, outputs, **(info(result) if info is not None else {}))
        self.steps.log[name] = "ran"
        barrier()
        return True

    # ---------------------------------------------------------------- render
    def render(self, data: _Data) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """One image cache per distinct render config of the cached models (on-the-fly models render nothing)."""
        from ..spectrogram import ImageCache, render_dataset

        train_caches: Dict[str, Any] = {}
        test_caches: Dict[str, Any] = {}
        cached = {self.render_cfg[n].hash(): self.render_cfg[n] for n in self.render_cfg if not self.on_the_fly(n)}
        for h, cfg in cached.items():
            root = self.out / "caches" / h
            fp = fingerprint({"render": cfg.to_dict(), "table": table_digest(data.train_table)})
            self.step(f"render/{h}/train", fp, [root / "train" / ImageCache.CONFIG_FILE],
                      lambda: render_dataset(data.train_source, root / "train", cfg, workers=self.workers,
                                             overwrite=True, progress=self.verbose),
                      info=lambda c: {"n_files": len(c.files), "n_errors": len(c.errors)})
            train_caches[h] = ImageCache.open(root / "train")
            if data.test_table is None:
                continue
            fp = fingerprint({"render": cfg.to_dict(), "table": table_digest(data.test_table)})
            self.step(f"render/{h}/test", fp, [root / "test" / ImageCache.CONFIG_FILE],
                      lambda: render_dataset(self._unlabelled(data), root / "test", cfg, workers=self.workers,
                                             overwrite=True, progress=self.verbose),
                      info=lambda c: {"n_files": len(c.files), "n_errors": len(c.errors)})
            test_caches[h] = ImageCache.open(root / "test")
        return train_caches, test_caches

    def _unlabelled(self, data: _Data) -> pd.DataFrame:
        """The test files unlabelled, as at inference time (a per-class hop must not see their labels), under their
        absolute path; outputs map them back to the test table's paths. The group column is carried along."""
        table = pd.DataFrame({"path": data.test_table["abspath"].astype(str), "label": None})
        gc = self.recipe.data.group_column
        if gc is not None and gc in data.test_table.columns:  # carried to pseudo-labelled rows
            table[gc] = data.test_table[gc].to_numpy()
        return table

    # ---------------------------------------------------------------- one round
    def run_round(self, rnd: int, root: Path, train_caches: Mapping[str, Any], test_caches: Mapping[str, Any],
                  data: _Data, train_source: Any) -> Dict[str, Any]:
        """Train every model (on its cache, or on the audio for on-the-fly models), predict the test set, stack."""
        prefix = f"round{rnd}"
        model_fp = {m.name: self._train(prefix, root, m.name, train_caches, train_source) for m in self.recipe.models}
        if data.test_table is not None:
            for m in self.recipe.models:
                test = test_caches.get(self.render_cfg[m.name].hash()) if not self.on_the_fly(m.name) else None
                self._predict(prefix, root / "models" / m.name, m.name, model_fp[m.name], test, data)
        names = [m.name for m in self.recipe.models]
        member_dirs = {n: root / "models" / n for n in names}
        st = self.recipe.stacking
        has_test = data.test_table is not None
        for method in st.methods:
            params = dict(st.cnn) if method.startswith("cnn") else dict(st.lgbm) if method == "lgbm" else {}
            self._stack(f"{prefix}/stack/{method}", root / "stack" / method, method, names,
                        [member_dirs[n] for n in names], has_test, params=params)
            member_dirs[method] = root / "stack" / method
        blend = st.blend_members()
        if blend is not None:
            members, weights = blend
            self._stack(f"{prefix}/stack/blend", root / "stack" / "blend", "blend", members,
                        [member_dirs[n] for n in members], has_test, weights=weights)
            member_dirs["blend"] = root / "stack" / "blend"
        return member_dirs

    def _train(self, prefix: str, root: Path, name: str, train_caches: Mapping[str, Any], train_source: Any) -> str:
        """Cross-validate one model (every process under torchrun); returns its fingerprint."""
        from ..audio import read_table
        from ..training import Run, train_cv

        cfg, rcfg = self.train_cfg[name], self.render_cfg[name]
        run, step = root / "models" / name, f"{prefix}/train/{name}"
        if self.on_the_fly(name):  # the audio is decoded once per render config into <root>/waves/<hash>
            source, render = train_source, rcfg
            inputs: Any = {"table": table_digest(read_table(train_source)), "render": rcfg.to_dict()}
            cache_dir: Optional[Path] = root / "waves" / rcfg.hash()
        else:
            source, render, cache_dir = train_caches[rcfg.hash()], None, None
            inputs = _cache_id(source)
        fp = fingerprint({"train": cfg.result_dict(), "input": inputs})
        rec = self.steps.record(step)
        changed = rec is not None and rec.get("fingerprint") != fp

        def work() -> None:
            # a changed model config discards the old run; an interrupted one resumes its folds
            train_cv(source, run, cfg, render_config=render, cache_dir=cache_dir,
                     resume=self.steps.resume and not changed, verbose=self.verbose)
            if self.main:
                _check_pseudo_guard(Run.open(run), source.files if not isinstance(source, (str, Path))
                                    else read_table(source))

        self.step(step, fp, [run / Run.OOF_FILES, run / Run.METRICS, run / Run.CONFIG], work, everyone=True)
        return fp

    def _predict(self, prefix: str, run: Path, name: str, model_fp: str, test_cache: Any, data: _Data) -> None:
        """The fold ensemble's test-set predictions, ``RUN/test_files.csv`` (from the test cache, or the audio)."""
        from ..training import Run

        cfg = self.train_cfg[name]
        ckpts = [Run(run).checkpoint(k) for k in Run(run).trained_folds()]
        test_id = _cache_id(test_cache) if test_cache is not None else table_digest(data.test_table)
        fp = fingerprint({"model": model_fp, "checkpoints": [[str(c.relative_to(run)), *file_stat(c)] for c in ckpts],
                          "test": test_id, "tta": cfg.tta, "paths": table_digest(data.test_table)})
        out = run / Run.TEST_FILES
        self.step(f"{prefix}/predict/{name}", fp, [out],
                  lambda: _predict_test(run, cfg, test_cache, data, self._unlabelled(data), self.workers,
                                        self.verbose),
                  info=lambda r: {"n_files": r[0], "n_errors": r[1]})

    def _stack(self, step: str, out: Path, method: str, names: Sequence[str], dirs: Sequence[Path],
               has_test: bool, *, weights: Optional[Sequence[float]] = None,
               params: Optional[Mapping[str, Any]] = None) -> None:
        from ..training import Run

        st = self.recipe.stacking
        oof = [d / Run.OOF_FILES for d in dirs]
        test = [d / Run.TEST_FILES for d in dirs] if has_test else None
        fp = fingerprint({"method": method, "names": list(names), "weights": weights, "params": dict(params or {}),
                          "inner_folds": st.folds, "seed": self.recipe.seed,
                          "oof": [file_digest(p) for p in oof], "test": [file_digest(p) for p in test or []]})
        outputs = [out / Run.OOF_FILES, out / Run.METRICS] + ([out / Run.TEST_FILES] if has_test else [])
        self.step(step, fp, outputs,
                  lambda: stack_runs(oof, method=method, names=names, test=test, weights=weights,
                                     inner_folds=st.folds, params=params, seed=self.recipe.seed).write(out))

    # ---------------------------------------------------------------- pseudo-labels
    def pseudo_round(self, rnd: int, previous: Mapping[str, Path], train_caches: Mapping[str, Any],
                     test_caches: Mapping[str, Any], data: _Data) -> Optional[Tuple[Dict[str, Any], Path]]:
        """Select pseudo-labels from the previous round; the merged caches and training table of round ``rnd``.

        Returns None when no test file reaches the threshold (the round is not run).
        """
        ps = self.recipe.pseudo
        root = self.out / f"round{rnd}"
        src = previous[ps.source] / Run.TEST_FILES
        fp = fingerprint({"source": file_digest(src), "threshold": ps.threshold, "max_per_class": ps.max_per_class,
                          "inclusive": getattr(ps, "inclusive", False), "train": table_digest(data.train_table)})
        picked_csv, table_csv = root / "pseudo_labels.csv", root / "train.csv"
        self.step(f"round{rnd}/pseudo-labels", fp, [picked_csv, table_csv],
                  lambda: _write_pseudo_tables(self.recipe, src, data, picked_csv, table_csv),
                  info=lambda n: {"n_pseudo": n})
        picked = pd.read_csv(picked_csv, dtype={"path": str, "label": str, "abspath": str, "true_label": str},
                             keep_default_na=False)
        if picked.empty:  # nothing confident enough: this round would repeat the previous one
            return None
        merged = {h: self._merged_cache(rnd, h, cache, test_caches[h], picked) for h, cache in train_caches.items()}
        return merged, table_csv

    def _merged_cache(self, rnd: int, h: str, train: Any, test: Any, picked: pd.DataFrame) -> Any:
        """The training cache plus the pseudo-labelled test files' images (no re-rendering)."""
        from ..spectrogram import ImageCache

        root = self.out / f"round{rnd}" / "caches" / h / "train"
        fp = fingerprint({"train": _cache_id(train), "test": _cache_id(test),
                          "picked": picked[["abspath", "label"]].to_csv(index=False)})
        self.step(f"round{rnd}/merge/{h}", fp, [root / ImageCache.CONFIG_FILE],
                  lambda: _merge_pseudo(train, test, picked, root),
                  info=lambda c: {"n_files": len(c.files), "n_pseudo": int(c.files["pseudo"].sum())})
        return ImageCache.open(root)


def _predict_test(run: Path, cfg: TrainConfig, test_cache: Any, data: _Data, unlabelled: pd.DataFrame,
                  workers: int, verbose: bool) -> Tuple[int, int]:
    """Write ``RUN/test_files.csv``: the fold ensemble on the test cache, or (on-the-fly models) on the audio."""
    from ..predict import Predictor, predictions_frame
    from ..training import Run

    pred = Predictor.from_run(run, device=cfg.device, tta=cfg.tta)
    if test_cache is not None:
        res = pred.predict(test_cache, progress=verbose)
    else:
        res = pred.predict(unlabelled, workers=workers, progress=verbose)
    to_path = dict(zip(data.test_table["abspath"].astype(str), data.test_table["path"]))
    label_of = dict(zip(data.test_table["path"], data.test_table["label"]))
    paths = [to_path[p] for p in res.files["path"]]
    probs = res.files[[f"prob_{c}" for c in res.classes]].to_numpy(dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    labels = [label_of[p] for p in paths]
    labelled = all(v is not None for v in labels)
    frame = predictions_frame(paths, probs, res.classes, labels=labels if labelled else None)
    Run(run).write_table(Run.TEST_FILES, frame)
    return len(frame), len(res.errors)


def _write_pseudo_tables(recipe: Recipe, src: Path, data: _Data, picked_csv: Path, table_csv: Path) -> int:
    """The pseudo-labelled test files (``pseudo_labels.csv``) and the training table with them (``train.csv``)."""
    from ..predict import read_predictions
    from ..stacking import pseudo_training_table, select_pseudo_labels

    ps = recipe.pseudo
    frame, classes, probs = read_predictions(src)
    extra_kw = {"inclusive": ps.inclusive} if hasattr(ps, "inclusive") else {}
    picked = select_pseudo_labels(frame["path"].tolist(), probs, classes, threshold=ps.threshold,
                                  max_per_class=ps.max_per_class, **extra_kw)
    abspath = dict(zip(data.test_table["path"], data.test_table["abspath"].astype(str)))
    truth = dict(zip(data.test_table["path"], data.test_table["label"]))
    picked["abspath"] = [abspath[p] for p in picked["path"]]
    if all(truth.get(p) is not None for p in picked["path"]):
        picked["true_label"] = [truth[p] for p in picked["path"]]
    atomic_csv(picked, picked_csv)
    base = _table_csv(data.train_table)
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


def _shared_groups(recipe: Recipe, data: _Data) -> List[str]:
    """The group values (speakers, patients) found in both the training and the test table."""
    gc = recipe.data.group_column
    if gc is None or data.test_table is None or gc not in data.test_table.columns:
        return []
    train = set(data.train_table[gc].dropna().astype(str))
    return sorted(train & set(data.test_table[gc].dropna().astype(str)))


def _check_pseudo_guard(run: Any, files: pd.DataFrame) -> None:
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


# --------------------------------------------------------------------------- the report
def _scores_of(csv: Path) -> Optional[Dict[str, float]]:
    from ..predict.aggregate import read_predictions
    from ..predict.metrics import uar

    if not csv.is_file():
        return None
    frame, classes, probs = read_predictions(csv)
    if "label" not in frame.columns or any(v is None for v in frame["label"]):
        return None
    y = frame["label"].astype(str).to_numpy()
    pred = np.asarray(classes, dtype=object)[probs.argmax(1)].astype(str)
    return {"accuracy": float(np.mean(pred == y)), "uar": float(uar(y, pred)), "n_files": int(len(y))}


def _mean_scores(dirs: Sequence[Path], name: str) -> Optional[Dict[str, float]]:
    from ..predict.metrics import uar
    from ..stacking import align_runs

    files = [d / name for d in dirs]
    if not all(f.is_file() for f in files):
        return None
    paths, X, y, classes, _ = align_runs(files, require_folds=False)
    if y is None:
        return None
    pred = np.asarray(classes, dtype=object)[X.mean(axis=1).argmax(1)].astype(str)
    return {"accuracy": float(np.mean(pred == y)), "uar": float(uar(y, pred)), "n_files": int(len(y))}


def _round_rows(rnd: int, recipe: Recipe, dirs: Mapping[str, Path]) -> List[Dict[str, Any]]:
    rows = []
    models = [m.name for m in recipe.models]
    entries: List[Tuple[str, str, Optional[Path]]] = [("model", n, dirs[n]) for n in models]
    entries.append(("mean", "mean of models", None))
    entries += [("stacker", m, dirs[m]) for m in recipe.stacking.methods if m != "mean"]
    if "blend" in dirs:
        entries.append(("blend", "blend", dirs["blend"]))
    for kind, name, d in entries:
        if d is None:
            oof = _mean_scores([dirs[n] for n in models], Run.OOF_FILES)
            test = _mean_scores([dirs[n] for n in models], Run.TEST_FILES)
        else:
            oof = _scores_of(d / Run.OOF_FILES)
            test = _scores_of(d / Run.TEST_FILES)
        row: Dict[str, Any] = {"round": rnd, "kind": kind, "name": name,
                               "n_files": oof["n_files"] if oof else None,
                               "oof_accuracy": oof["accuracy"] if oof else None,
                               "oof_uar": oof["uar"] if oof else None}
        if test is not None:
            row.update(test_accuracy=test["accuracy"], test_uar=test["uar"])
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


def _markdown(recipe: Recipe, table: pd.DataFrame, data: _Data, classes: List[str], pseudo_info: List[str],
              final: str, render_errors: Sequence[str] = ()) -> str:
    has_test = "test_accuracy" in table.columns
    n_test = 0 if data.test_table is None else len(data.test_table)
    lines = [f"# Experiment report: {recipe.name}", ""]
    if recipe.source:
        lines += [f"Recipe: `{recipe.source}`", ""]
    group = f"grouped by `{recipe.data.group_column}`" if recipe.data.group_column else "grouped by file"
    lines += [f"- training files: {len(data.train_table)}; classes ({len(classes)}): {', '.join(classes)}",
              f"- cross-validation: {recipe.folds} folds {group}; stackers scored by an inner cross-validation "
              "grouped by the outer folds",
              f"- test files: {n_test}" + ("" if n_test else " (no test set)"),
              "- models: " + ", ".join(f"`{m.name}` ({m.backbone})" for m in recipe.models)]
    lines += [f"- {line}" for line in render_errors] + [""]
    for rnd, part in table.groupby("round", sort=True):
        title = "Round 1" if rnd == 1 else f"Round {rnd} (with pseudo-labels)"
        lines += [f"## {title}", ""]
        head = "| kind | name | OOF accuracy | OOF UAR |" + (" test accuracy | test UAR |" if has_test else "")
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for _, r in part.iterrows():
            cells = [r["kind"], r["name"], _fmt(r["oof_accuracy"]), _fmt(r["oof_uar"])]
            if has_test:
                cells += [_fmt(r.get("test_accuracy")), _fmt(r.get("test_uar"))]
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


# --------------------------------------------------------------------------- entry point
def run_experiment(
    recipe: Union[Recipe, PathLike, Mapping[str, Any]],
    out_dir: PathLike,
    *,
    resume: bool = True,
    verbose: bool = True,
    workers: int = 1,
) -> ExperimentResult:
    """Run a recipe: render, train every model, predict, stack, blend, pseudo-label, report.

    Each distinct render config is rendered once (``OUT/caches/<hash>/``);
    each model is cross-validated with :func:`specimg.training.train_cv`
    into ``OUT/models/<name>/`` and predicts the test set with its fold
    ensemble and flip TTA; the stackers are scored by an inner
    cross-validation grouped by the outer folds and blended; with
    pseudo-labelling, confident test predictions join the training set of a
    new round (``OUT/round2/``), never as validation files. Every step
    records the fingerprint of its inputs and is skipped when they did not
    change, so running the same recipe again after a crash or an edit redoes
    only what is needed.

    Parameters
    ----------
    recipe : Recipe, path or mapping
        See :func:`load_recipe`.
    out_dir : path
        The experiment folder.
    resume : bool
        False reruns every step (models are retrained from scratch; complete
        image caches of the same config are kept, their images are
        deterministic).
    verbose : bool
        Progress bars and one line per step.
    workers : int
        Processes rendering audio.

    Returns
    -------
    result : ExperimentResult

    Examples
    --------
    >>> res = run_experiment("examples/recipes/music_genre_quick.yaml", "runs/quick")  # doctest: +SKIP
    >>> print(res.table.to_string())  # doctest: +SKIP
    """
    from ..training import barrier, init_distributed, is_main_process

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"The 'workers' parameter of run_experiment must be an int >= 1. Got {workers!r}.")
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    _check_before_work(recipe)
    # under torchrun: one process group for the whole experiment (gloo when every model trains on the CPU)
    devices = {recipe.train_config(m).device for m in recipe.models}
    init_distributed("gloo" if devices == {"cpu"} else None)
    main = is_main_process()
    out = Path(out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        recipe_json = json.dumps(recipe.to_dict(), indent=2, default=str)
        if not (out / "recipe.json").is_file() or (out / "recipe.json").read_text(encoding="utf-8") != recipe_json:
            atomic_text(out / "recipe.json", recipe_json)
        data = _prepare_data(recipe, out)  # rank 0 writes the derived tables, the others read them after
    barrier()
    if not main:
        data = _prepare_data(recipe, out)
    runner = _Runner(recipe, out, resume=resume, verbose=verbose, workers=workers)
    train_caches, test_caches = runner.render(data)
    rounds: List[Tuple[int, Dict[str, Path]]] = [
        (1, runner.run_round(1, out, train_caches, test_caches, data, data.train_source))]
    pseudo_info = _pseudo_rounds(runner, rounds, train_caches, test_caches, data) if recipe.pseudo.enabled else []
    table = pd.DataFrame([r for rnd, dirs in rounds for r in _round_rows(rnd, recipe, dirs)])
    final = _report(runner, table, rounds, train_caches, test_caches, data, pseudo_info)
    if runner.verbose:
        _logger.info("%s\nreport: %s", table.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
                     out / "report.md")
    return ExperimentResult(out_dir=out, table=table, report=out / "report.md", steps=dict(runner.steps.log),
                            final=final)


def _pseudo_rounds(runner: _Runner, rounds: List[Tuple[int, Dict[str, Path]]], train_caches: Mapping[str, Any],
                   test_caches: Mapping[str, Any], data: _Data) -> List[str]:
    """The pseudo-label rounds (appended to ``rounds``); returns the report's lines about them."""
    recipe, out = runner.recipe, runner.out
    info: List[str] = []
    for rnd in range(2, recipe.pseudo.rounds + 2):
        merged = runner.pseudo_round(rnd, rounds[-1][1], train_caches, test_caches, data)
        picked = pd.read_csv(out / f"round{rnd}" / "pseudo_labels.csv", dtype=str, keep_default_na=False)
        op = ">=" if getattr(recipe.pseudo, "inclusive", False) else ">"
        msg = (f"round {rnd}: {len(picked)} of {len(data.test_table)} test files reached confidence {op} "
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


def _report(runner: _Runner, table: pd.DataFrame, rounds: List[Tuple[int, Dict[str, Path]]],
            train_caches: Mapping[str, Any], test_caches: Mapping[str, Any], data: _Data,
            pseudo_info: List[str]) -> str:
    """``report.md``, ``report.csv`` and the plots of the final result (rank 0); returns the final result's name."""
    from ..audio import sort_labels

    recipe, out = runner.recipe, runner.out
    last_rnd, last = rounds[-1]
    final_key = "blend" if "blend" in last else (
        [m for m in recipe.stacking.methods if m in last][-1] if recipe.stacking.methods else None)
    final = f"round{last_rnd}/{final_key or 'mean of models'}"
    inputs = sorted(out.glob("**/oof_files.csv")) + sorted(out.glob("**/test_files.csv"))
    inputs = [p for p in inputs if "fold_" not in p.parent.name]
    fp = fingerprint({"table": table.to_csv(index=False), "inputs": [file_digest(p) for p in inputs],
                      "final": final})
    classes = sort_labels(data.train_table["label"].dropna().astype(str).unique())

    def work() -> None:
        _write_final_report(out, recipe, last, final_key, final)
        atomic_csv(table, out / "report.csv")
        render_errors = _render_errors(out, train_caches, "training") + _render_errors(out, test_caches, "test")
        atomic_text(out / "report.md", _markdown(recipe, table, data, classes, pseudo_info, final, render_errors))

    runner.step("report", fp, [out / "report.md", out / "report.csv", out / "report" / "report.md"], work)
    return final


def _write_final_report(out: Path, recipe: Recipe, dirs: Mapping[str, Path], key: Optional[str], final: str) -> None:
    from ..predict import write_report
    from ..predict.aggregate import read_predictions
    from ..stacking import align_runs

    def load(name: str) -> Optional[Tuple[List[str], np.ndarray, np.ndarray, List[str]]]:
        if key is not None:
            csv = dirs[key] / name
            if not csv.is_file():
                return None
            frame, classes, probs = read_predictions(csv)
            if "label" not in frame.columns or any(v is None for v in frame["label"]):
                return None
            return frame["path"].tolist(), frame["label"].astype(str).to_numpy(), probs, classes
        files = [dirs[m.name] / name for m in recipe.models]
        if not all(f.is_file() for f in files):
            return None
        paths, X, y, classes, _ = align_runs(files, require_folds=False)
        return (paths, y, X.mean(axis=1), classes) if y is not None else None

    oof = load(Run.OOF_FILES)
    if oof is not None:
        write_report(out / "report", oof[1], oof[2], oof[3], paths=oof[0],
                     title=f"{recipe.name}: out-of-fold predictions of {final}", extra={"result": final})
    test = load(Run.TEST_FILES)
    if test is not None:
        write_report(out / "report" / "test", test[1], test[2], test[3], paths=test[0],
                     title=f"{recipe.name}: test predictions of {final}", extra={"result": final})
