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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .._io import PathLike
from .._validation import check_int
from ..config import RenderConfig, TrainConfig
from ..exceptions import ParameterError
from ..stacking import CLASSWISE_METHODS
from ..tasks import Task
from ._data import ExperimentData, cache_id, experiment_task, prepare_data
from ._pseudo import check_pseudo_guard, pseudo_rounds
from ._recipe import STACKERS, Recipe, load_recipe
from ._report import round_rows, write_report_step
from ..stacking import stack_runs
from ._steps import Steps, atomic_text, file_digest, file_stat, fingerprint, table_digest

__all__ = ["run_experiment", "ExperimentResult"]

_logger = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------- one experiment
class _Runner:
    """The steps of one experiment, each skipped when the fingerprint of its inputs did not change (:meth:`step`).

    Under ``torchrun`` rank 0 decides and the others follow; the training steps run on every process, the others
    on rank 0 alone.
    """

    def __init__(self, recipe: Recipe, out: Path, data: ExperimentData, *, resume: bool, verbose: bool,
                 workers: int) -> None:
        from ..training import is_main_process

        self.recipe = recipe
        self.out = out
        self.main = is_main_process()
        self.verbose = verbose and self.main
        self.steps = Steps(out, resume=resume, verbose=self.verbose)
        self.workers = workers
        self.render_cfg: Dict[str, RenderConfig] = {m.name: recipe.render_config(m) for m in recipe.models}
        self.train_cfg: Dict[str, TrainConfig] = {m.name: recipe.train_config(m) for m in recipe.models}
        #: what every model learns (the report and the stackers ask it)
        self.task: Task = experiment_task(recipe, data.train_table)
        methods = CLASSWISE_METHODS if self.task.activation == "sigmoid" else STACKERS
        bad = [m for m in recipe.stacking.methods if m not in methods]
        where = f" ({recipe.source})" if recipe.source else ""
        if bad:
            raise ParameterError(f"stacking.methods{where} lists {bad}, which {self.task.kind} runs do not have; "
                                 f"choose from {', '.join(m for m in methods if m != 'auto')}.")
        if recipe.pseudo.enabled and self.task.truth_column != "label":
            raise ParameterError(f"pseudo.enabled is true{where}, but pseudo-labels are single labels (a test file "
                                 f"whose top class is confident enough) and this recipe's runs are {self.task.kind}. "
                                 "Set pseudo.enabled: false.")

    def on_the_fly(self, name: str) -> bool:
        return self.train_cfg[name].images == "on-the-fly"

    def step(self, name: str, fp: str, outputs: Sequence[Path], work: Any, *, everyone: bool = False,
             info: Any = None) -> bool:
        """Run ``work()`` unless step ``name`` finished with fingerprint ``fp`` and its outputs exist; returns whether
        it ran. ``everyone``: every process runs it (training); ``info(result)`` adds entries to the step's record.
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
    def render(self, data: ExperimentData) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """One image cache per distinct render config of the cached models (on-the-fly models render nothing)."""
        from ..spectrogram import ImageCache, render_dataset

        caches: Dict[str, Dict[str, Any]] = {"train": {}, "test": {}}
        cached = {self.render_cfg[n].hash(): self.render_cfg[n] for n in self.render_cfg if not self.on_the_fly(n)}
        parts = [("train", data.train_table, lambda: data.train_source)]
        if data.test_table is not None:
            parts.append(("test", data.test_table, lambda: self._unlabelled(data)))
        for h, cfg in cached.items():
            for part, table, source in parts:
                folder = self.out / "caches" / h / part
                fp = fingerprint({"render": cfg.to_dict(), "table": table_digest(table)})
                self.step(f"render/{h}/{part}", fp, [folder / ImageCache.CONFIG_FILE],
                          lambda: render_dataset(source(), folder, cfg, workers=self.workers, overwrite=True,
                                                 progress=self.verbose),
                          info=lambda c: {"n_files": len(c.files), "n_errors": len(c.errors)})
                caches[part][h] = ImageCache.open(folder)
        return caches["train"], caches["test"]

    def _unlabelled(self, data: ExperimentData) -> pd.DataFrame:
        """The test files unlabelled, as at inference time (a per-class hop must not see their labels), under their
        absolute path; outputs map them back to the test table's paths. The group column is carried along."""
        table = pd.DataFrame({"path": data.test_table["abspath"].astype(str), "label": None})
        gc = self.recipe.data.group_column
        if gc is not None and gc in data.test_table.columns:  # carried to pseudo-labelled rows
            table[gc] = data.test_table[gc].to_numpy()
        return table

    # ---------------------------------------------------------------- one round
    def run_round(self, rnd: int, root: Path, train_caches: Mapping[str, Any], test_caches: Mapping[str, Any],
                  data: ExperimentData, train_source: Any) -> Dict[str, Any]:
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
            inputs = cache_id(source)
        fp = fingerprint({"train": cfg.result_dict(), "input": inputs})
        rec = self.steps.record(step)
        changed = rec is not None and rec.get("fingerprint") != fp

        def work() -> None:
            # a changed model config discards the old run; an interrupted one resumes its folds
            train_cv(source, run, cfg, render_config=render, cache_dir=cache_dir,
                     resume=self.steps.resume and not changed, verbose=self.verbose)
            if self.main:
                check_pseudo_guard(Run.open(run), source.files if not isinstance(source, (str, Path))
                                    else read_table(source))

        self.step(step, fp, [run / Run.OOF_FILES, run / Run.METRICS, run / Run.CONFIG], work, everyone=True)
        return fp

    def _predict(self, prefix: str, run: Path, name: str, model_fp: str, test_cache: Any, data: ExperimentData) -> None:
        """The fold ensemble's test-set predictions, ``RUN/test_files.csv`` (from the test cache, or the audio)."""
        from ..training import Run

        cfg = self.train_cfg[name]
        ckpts = [Run(run).checkpoint(k) for k in Run(run).trained_folds()]
        test_id = cache_id(test_cache) if test_cache is not None else table_digest(data.test_table)
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


def _predict_test(run: Path, cfg: TrainConfig, test_cache: Any, data: ExperimentData, unlabelled: pd.DataFrame,
                  workers: int, verbose: bool) -> Tuple[int, int]:
    """Write ``RUN/test_files.csv``: the fold ensemble on the test cache, or (on-the-fly models) on the audio."""
    from ..predict import Predictor
    from ..training import Run

    pred = Predictor.from_run(run, device=cfg.runtime.device, tta=cfg.tta)
    res = pred.predict(test_cache if test_cache is not None else unlabelled, workers=workers, progress=verbose)
    task = pred.task
    to_path = dict(zip(data.test_table["abspath"].astype(str), data.test_table["path"]))
    paths = [to_path[p] for p in res.files["path"]]
    probs = res.files[[f"prob_{c}" for c in res.classes]].to_numpy(dtype=np.float64)
    if task.normalize_pooled:  # single-label probabilities: rows sum to 1 exactly
        probs = probs / probs.sum(axis=1, keepdims=True)
    truth = task.input_truth(data.test_table)
    truth_of = dict(zip(data.test_table["path"], truth)) if truth is not None else {}
    values = [truth_of.get(p) for p in paths]
    labelled = truth is not None and all(v is not None for v in values)
    frame = task.prediction_frame(paths, probs, res.classes, truth=values if labelled else None, decision=pred.decision)
    Run(run).write_table(Run.TEST_FILES, frame)
    return len(frame), len(res.errors)


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

    The folder's layout is the module's docstring; pseudo-labelled test files join the training set of a new
    round, never as validation files. Every step records the fingerprint of its inputs and is skipped when they
    did not change, so running the same recipe again after a crash or an edit redoes only what is needed.

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

    check_int(workers, "workers", owner="run_experiment", low=1)
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    _check_before_work(recipe)
    # under torchrun: one process group for the whole experiment (gloo when every model trains on the CPU)
    devices = {recipe.train_config(m).runtime.device for m in recipe.models}
    init_distributed("gloo" if devices == {"cpu"} else None)
    main = is_main_process()
    out = Path(out_dir)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        recipe_json = json.dumps(recipe.to_dict(), indent=2, default=str)
        if not (out / "recipe.json").is_file() or (out / "recipe.json").read_text(encoding="utf-8") != recipe_json:
            atomic_text(out / "recipe.json", recipe_json)
        data = prepare_data(recipe, out)  # rank 0 writes the derived tables, the others read them after
    barrier()
    if not main:
        data = prepare_data(recipe, out)
    runner = _Runner(recipe, out, data, resume=resume, verbose=verbose, workers=workers)
    train_caches, test_caches = runner.render(data)
    rounds: List[Tuple[int, Dict[str, Path]]] = [
        (1, runner.run_round(1, out, train_caches, test_caches, data, data.train_source))]
    pseudo_info = pseudo_rounds(runner, rounds, train_caches, test_caches, data) if recipe.pseudo.enabled else []
    table = pd.DataFrame([r for rnd, dirs in rounds for r in round_rows(rnd, recipe, dirs, runner.task)])
    final = write_report_step(runner, table, rounds, train_caches, test_caches, data, pseudo_info)
    if runner.verbose:
        _logger.info("%s\nreport: %s", table.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
                     out / "report.md")
    return ExperimentResult(out_dir=out, table=table, report=out / "report.md", steps=dict(runner.steps.log),
                            final=final)
