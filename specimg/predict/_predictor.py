"""Predict files with a trained run: fold ensemble, flip TTA, file pooling, written as it goes and resumable."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._io import PathLike, atomic_write_csv, read_done, write_done
from .._progress import progress_bar
from .._validation import check_choice, check_int
from ..audio import read_table
from ..config import RenderConfig
from ..exceptions import AudioError, DataError, ParameterError
from ..spectrogram import ImageCache
from ..tasks import SingleLabel, Task
from ..training import resolve_device
from ._inputs import PredictionInput, payload_stream, prediction_input

__all__ = ["Predictor", "PredictionResult"]

_logger = logging.getLogger(__name__)
TTA = Literal["flip", "none"]
Aggregate = Literal["mean", "max", "gmean"]
Images = Literal["cached", "on-the-fly"]

#: Files per part of a prediction written as it goes (see :meth:`Predictor.predict`'s ``out``): each part is
#: computed in batches of its own, so a resumed prediction batches, and so computes, exactly as a fresh one.
PART_FILES = 256


@dataclass
class PredictionResult:
    """What :meth:`Predictor.predict` returns.

    Attributes
    ----------
    files : pd.DataFrame
        One row per predicted file: ``path``, optional ``label``,
        ``prediction``, one ``prob_<class>`` column per class.
    segments : pd.DataFrame or None
        Per-window probabilities (``path, segment, start, end, prob_*``)
        when asked for.
    errors : pd.DataFrame
        ``path, error`` of the files that could not be predicted.
    classes : list of str
    """

    files: pd.DataFrame
    segments: Optional[pd.DataFrame]
    errors: pd.DataFrame
    classes: List[str] = field(default_factory=list)

    def write(self, out: PathLike) -> Path:
        """``out`` (the files), ``<stem>_segments.csv`` and ``<stem>_errors.csv`` beside it, atomically."""
        out = Path(out)
        atomic_write_csv(self.files, out)
        if self.segments is not None:
            atomic_write_csv(self.segments, out.with_name(out.stem + "_segments.csv"))
        errors = out.with_name(out.stem + "_errors.csv")
        if len(self.errors):
            atomic_write_csv(self.errors, errors)
        else:
            errors.unlink(missing_ok=True)
        return out


class Predictor:
    """The fold ensemble of a trained run, ready to predict audio of any length.

    Every window and (with ``tta='flip'``, the seed's default) its horizontal
    flip are predicted by every fold model; probabilities are averaged over
    flips and folds (the inference core :class:`~specimg.models.Ensemble`,
    the same module training validates with and export writes out), then
    pooled per file (``aggregate``).

    Parameters
    ----------
    models : list of nn.Module
        Trained backbones (eval mode) that output logits.
    classes : list of str
    render_config : RenderConfig
        How audio becomes images (the run's own config).
    mean, std : (float, float, float)
        Normalisation the models were trained with (0-1 scale).
    input_size : (3, H, W)
        Image size the models expect; rendered images are resized to it as in
        training.
    device : {'auto', 'cpu', 'cuda'}
    tta : {'flip', 'none'}
    aggregate : {'mean', 'max', 'gmean'}
    batch_size : int
        Windows per forward pass.
    images : {'cached', 'on-the-fly'}
        How audio becomes model input (:mod:`specimg.predict._inputs`): images rendered on the CPU
        (:func:`~specimg.spectrogram.render_file`, the image cache's pixels), or waveform windows
        (:func:`~specimg.spectrogram.signal_windows`) made into images by :class:`~specimg.data.FrontendPipeline`
        on ``device``, the input of a run trained with ``TrainConfig(images='on-the-fly')``.
    model_names : list of str or None
        How errors name the models (``Predictor.from_run``: ``'fold 3'``).
    task : Task or None
        What the models learnt (:mod:`specimg.tasks`; ``from_run`` reads the run's): the activation, the
        pooling (``aggregate=None``), the ``prediction`` column and the truth columns. ``None``: single-label.
    decision : dict or None
        What the task's decision rule learnt: a multi-label run's ``thresholds.json`` (0.5 without).

    Notes
    -----
    The two kinds of input give the same files, windows and bounds; their images agree to +-1 in a few pixels
    on one-window files, but the device front end sees each window alone (the 2-3 columns at each window edge
    differ, see :class:`~specimg.spectrogram.SpectrogramFrontend`) and resizes bilinearly on floats. Predict
    with the input the run was trained with (``Predictor.from_run(..., images='auto')``). An
    :class:`~specimg.spectrogram.ImageCache` input already holds its images (see :meth:`predict_images`).

    Examples
    --------
    >>> pred = Predictor.from_run("runs/fsdd")  # doctest: +SKIP
    >>> pred.predict_file("recordings/7_theo_3.wav")  # doctest: +SKIP
    array([0.01, ..., 0.93, ...])
    """

    def __init__(self, models: Sequence[nn.Module], *, classes: Sequence[str], render_config: RenderConfig,
                 mean: Sequence[float], std: Sequence[float], input_size: Sequence[int], device: str = "auto",
                 tta: TTA = "flip", aggregate: Optional[Aggregate] = None, batch_size: int = 64,
                 images: Images = "cached", model_names: Optional[Sequence[str]] = None,
                 task: Optional[Task] = None, decision: Optional[Dict[str, Any]] = None) -> None:
        o = "Predictor"
        self.images = check_choice(images, "images", ("cached", "on-the-fly"), owner=o)
        if task is not None and not isinstance(task, Task):
            raise ParameterError(f"The 'task' parameter of Predictor must be a specimg.tasks.Task or None. Got "
                                 f"{type(task).__name__}.")
        self.task: Task = task or SingleLabel()
        self.decision = decision
        aggregate = aggregate or self.task.pooling
        check_choice(tta, "tta", ("flip", "none"), owner=o)
        check_choice(aggregate, "aggregate", ("mean", "max", "gmean"), owner=o)
        check_int(batch_size, "batch_size", owner=o, low=1)
        if not models:
            raise ParameterError("Predictor needs at least one model.")
        from ..data import PixelNormalize
        from ..models import Ensemble

        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.models = [m.to(self.device).eval() for m in models]
        self.model_names = list(model_names) if model_names else [f"model {i}" for i in range(len(self.models))]
        self.classes = [str(c) for c in classes]
        self.render_config = render_config
        self.tta, self.aggregate, self.batch_size = tta, aggregate, batch_size
        self.input_hw = (int(input_size[-2]), int(input_size[-1]))
        # the inference core shared with training's validation and the exported graph; channels-last input is
        # what the cached images (HWC) give after the permute, and convolutions are faster on it
        self._normalize = PixelNormalize(mean, std)
        self.core = Ensemble(self.models, normalize=self._normalize, tta=tta, channels_last=True,
                             activation=self.task.activation).to(self.device)
        self.amp_dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else None
        self.input: PredictionInput = prediction_input(self.images, render_config, input_hw=self.input_hw, mean=mean,
                                                       std=std, device=self.device)
        self.pipeline = self.input.pipeline
        self.run_meta: Dict[str, Any] = {}

    @classmethod
    def from_run(cls, run: PathLike, *, folds: Union[str, int, Sequence[int]] = "all", device: str = "auto",
                 tta: TTA = "flip", aggregate: Optional[Aggregate] = None, batch_size: int = 64,
                 images: Literal["auto", "cached", "on-the-fly"] = "auto") -> "Predictor":
        """Load a run folder's fold models (:meth:`specimg.training.Run.load_models`).

        Parameters
        ----------
        run : path or Run
            A folder written by :func:`specimg.training.train_cv`.
        folds, device, tta, aggregate, batch_size
            As for :class:`Predictor` and :meth:`specimg.training.Run.load_models`;
            ``aggregate=None`` is the run's task's pooling (``'mean'`` for a
            single-label run, per class ``'max'`` for a multi-label one).
        images : {'auto', 'cached', 'on-the-fly'}
            ``'auto'``: the input the run was trained with (``'cached'`` for
            runs from before the option existed).

        Returns
        -------
        predictor : Predictor
            With ``run_meta``, the run's config plus the loaded folds.
        """
        from ..training import Run

        check_choice(images, "images", ("auto", "cached", "on-the-fly"), owner="Predictor.from_run")
        dev = resolve_device(device)
        run = Run.open(run)
        models, meta = run.load_models(folds, device=dev)
        pred = cls(models, classes=meta["classes"], render_config=RenderConfig.from_dict(meta["render"]),
                   mean=meta["mean"], std=meta["std"], input_size=meta["input_size"], device=str(dev), tta=tta,
                   aggregate=aggregate, batch_size=batch_size, images=run.images if images == "auto" else images,
                   model_names=[f"fold {k}" for k in meta["folds"]], task=run.task, decision=run.thresholds)
        pred.run_meta = meta
        return pred

    # ------------------------------------------------------------------ arrays
    @torch.no_grad()
    def _ensemble(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_classes) float32 probabilities of (B, 3, H, W) pixels in [0, 255] on ``self.device``, averaged
        over flips and fold models (:class:`~specimg.models.Ensemble`)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.core(x)

    @torch.no_grad()
    def _culprits(self, payload: Any) -> List[str]:
        """The models whose probabilities of one file's windows are not finite."""
        from ..models import Ensemble

        bad = []
        for name, model in zip(self.model_names, self.models):
            one = Ensemble([model], normalize=self._normalize, tta=self.tta, channels_last=True,
                           activation=self.task.activation)
            (p,) = self.input.window_probs([payload], one, self.batch_size)
            if not np.isfinite(p).all():
                bad.append(name)
        return bad

    @torch.no_grad()
    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """Window probabilities of cached-style images.

        Resized to ``input_size`` as the run's training input was (albumentations for ``images='cached'``,
        :class:`~specimg.data.FrontendPipeline`'s bilinear resize on floats for ``'on-the-fly'``).

        Parameters
        ----------
        images : np.ndarray [shape=(n, H, W, 3), dtype=uint8]

        Returns
        -------
        probs : np.ndarray [shape=(n, n_classes), dtype=float32]
            Averaged over fold models and (``tta='flip'``) horizontal flips.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"predict_images expects uint8 images of shape (n, H, W, 3). Got {images.dtype} "
                            f"{images.shape}.")
        out = [self._ensemble(self.input.image_pixels(images[s:s + self.batch_size]))
               for s in range(0, len(images), self.batch_size)]
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return torch.cat(out).cpu().numpy().astype(np.float32)

    def _pool(self, window_probs: np.ndarray) -> np.ndarray:
        _, p = self.task.pool(window_probs, np.zeros(len(window_probs), dtype=np.int64), self.aggregate)
        return p[0]

    def predict_signal(self, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Predict a signal at ``render_config.audio.sample_rate``.

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]

        Returns
        -------
        file_probs : np.ndarray [shape=(n_classes,)]
        window_probs : np.ndarray [shape=(n_windows, n_classes)]
        """
        payload = self.input.prepare_signal(np.asarray(y, dtype=np.float32))
        (wp,) = self.input.window_probs([payload], self._ensemble, self.batch_size)
        return self._pool(wp), wp

    def predict_file(self, path: PathLike) -> np.ndarray:
        """Probabilities of one audio file (any sample rate or length).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        probs : np.ndarray [shape=(n_classes,)]

        Raises
        ------
        AudioError
            A file that cannot be used; the message names it.
        """
        payload = self.input.prepare(str(path), self.render_config)
        (wp,) = self.input.window_probs([payload], self._ensemble, self.batch_size)
        return self._pool(wp)

    # ------------------------------------------------------------------ datasets
    def predict(self, source: Union[PathLike, pd.DataFrame, ImageCache], *, segments: bool = False,
                workers: int = 1, progress: bool = True, strict: bool = False,
                out: Optional[PathLike] = None, part_files: int = PART_FILES) -> PredictionResult:
        """Predict every file of a CSV, class-folder tree, plain folder or image cache.

        Files are loaded with the run's config and streamed by worker processes, without an image cache: memory
        does not grow with the number of files. A file that cannot be read, whose worker dies, or for which a
        fold model gives NaN/inf probabilities is reported in ``errors`` (naming the model).

        With ``out``, results are written a part of :data:`PART_FILES` files at a time (atomically, in
        ``<out>.parts/``): the same call after a crash or ``kill -9`` recomputes no finished part and ends with
        the output of an uninterrupted run (:meth:`PredictionResult.write`); the parts are then removed.

        Parameters
        ----------
        source : path, DataFrame or ImageCache
        segments : bool
            Also return per-window probabilities.
        workers : int
            Processes preparing audio in parallel.
        progress : bool
        strict : bool
            Stop at the first bad file.
        out : path or None
            Write the prediction there as it goes (resumable).
        part_files : int
            Files per part with ``out`` (default :data:`PART_FILES`).

        Returns
        -------
        result : PredictionResult
        """
        if isinstance(source, ImageCache) or (not isinstance(source, pd.DataFrame) and ImageCache.is_complete(source)):
            result = self._predict_cache(source if isinstance(source, ImageCache) else ImageCache.open(source),
                                         segments=segments, progress=progress)
            if out is not None:
                result.write(out)
            return result
        check_int(workers, "workers", owner="Predictor.predict", low=1)
        check_int(part_files, "part_files", owner="Predictor.predict", low=1)
        table = read_table(source)
        parts = _Parts(out, self._fingerprint(table, segments, part_files)) if out is not None else None
        results: List[Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]] = []
        bounds = _part_bounds(len(table), part_files if parts is not None else len(table))
        if parts is not None and parts.n_done():
            _logger.info("resuming the prediction in %s: %d of %d part(s) already done", parts.root, parts.n_done(),
                         len(bounds))
        bar = progress_bar(total=len(table), desc="predict", unit="file", disable=not progress)
        try:
            for p, (lo, hi) in enumerate(bounds):
                done = parts.read(p) if parts is not None else None
                if done is None:
                    done = self._predict_part(table.iloc[lo:hi], segments=segments, workers=workers, strict=strict,
                                              bar=bar)
                    if parts is not None:
                        parts.write(p, *done)
                        done = parts.read(p)  # what a resumed run reads: the same values in both
                else:
                    bar.update(hi - lo)
                results.append(done)
        finally:
            bar.close()
        result = self._result(results, table, segments)
        if len(result.errors):
            _logger.warning("%d file(s) could not be predicted:\n%s", len(result.errors),
                            "\n".join(f"  {p}: {e}" for p, e in zip(result.errors["path"][:20],
                                                                   result.errors["error"][:20])))
        if parts is not None:
            result.write(out)
            parts.remove()
        return result

    def _fingerprint(self, table: pd.DataFrame, segments: bool, part_files: int) -> str:
        """What a prediction's parts depend on: the models' weights, the input, the options, the table."""
        h = hashlib.sha1()
        for model in self.models:
            for name, t in model.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(json.dumps({"classes": self.classes, "render": self.render_config.to_dict(), "tta": self.tta,
                             **({"task": self.task.to_dict(), "decision": self.decision}
                                if self.task.kind != "single-label" else {}),
                             "aggregate": self.aggregate, "batch": self.batch_size, "images": self.images,
                             "input": list(self.input_hw), "segments": segments, "part": part_files,
                             "rows": table[["path", "abspath"]].astype(str).values.tolist()}).encode())
        return h.hexdigest()[:16]

    def _predict_part(self, table: pd.DataFrame, *, segments: bool, workers: int, strict: bool,
                      bar: Any) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Predict some rows of the input table: (files, segments, errors) tables."""
        rows: List[Dict[str, Any]] = []
        seg_rows: List[Dict[str, Any]] = []
        errors: Dict[str, str] = {}
        pending: List[Tuple[int, Any]] = []
        task, column = self.task, self.task.truth_column
        truth = task.input_truth(table)
        offset = self.render_config.audio.offset

        def fail_file(i: int, reason: str) -> None:
            path = table["path"].iat[i]
            errors[path] = reason
            if strict:
                raise AudioError(path, reason + " (stopped by --strict)")

        def flush() -> None:
            probs = self.input.window_probs([p for _, p in pending], self._ensemble, self.batch_size)
            for (i, payload), wp in zip(pending, probs):
                if not np.isfinite(wp).all():
                    names = self._culprits(payload) or ["the ensemble"]
                    fail_file(i, f"{', '.join(names)} gave NaN/inf probabilities for it (the model's output "
                                 "overflowed); it is left out. Predict with --folds without that model, or retrain it")
                    continue
                fp = self._pool(wp)
                rec: Dict[str, Any] = {"path": table["path"].iat[i]}
                if truth is not None:
                    rec[column] = truth[i]
                rec["prediction"] = task.decide(fp[None], self.classes, self.decision)[0]
                rec.update({f"prob_{c}": float(v) for c, v in zip(self.classes, fp)})
                rows.append(rec)
                if segments:
                    labels = task.window_truth(table, i, payload[1], self.classes, offset=offset)
                    for k, (a, b) in enumerate(payload[1]):
                        seg: Dict[str, Any] = {"path": rec["path"], "segment": k, "start": float(a), "end": float(b)}
                        if labels is not None:
                            seg[column] = labels[k]
                        seg.update({f"prob_{c}": float(v) for c, v in zip(self.classes, wp[k])})
                        seg_rows.append(seg)
            pending.clear()

        for i, res in payload_stream(table["abspath"].tolist(), self.render_config, self.images, workers):
            bar.update(1)
            if isinstance(res, str):
                fail_file(i, res)  # unreadable, bad audio, or WORKER_DIED
                continue
            pending.append((i, res))
            if sum(self.input.n_windows(p) for _, p in pending) >= self.batch_size:
                flush()
        if pending:
            flush()
        truth_cols = [column] if truth is not None else []
        win_cols = truth_cols if task.window_truth_column else []
        files = pd.DataFrame(rows, columns=["path"] + truth_cols + ["prediction"]
                             + [f"prob_{c}" for c in self.classes])
        seg_df = pd.DataFrame(seg_rows, columns=["path", "segment", "start", "end"] + win_cols
                              + [f"prob_{c}" for c in self.classes])
        err = pd.DataFrame({"path": list(errors), "error": list(errors.values())}, columns=["path", "error"])
        return files, seg_df, err

    def _result(self, parts: List[Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]], table: pd.DataFrame,
                segments: bool) -> PredictionResult:
        # one part at least (_part_bounds), each with its columns even when empty
        files, errors = (pd.concat([p[j] for p in parts], ignore_index=True) for j in (0, 2))
        order = {p: k for k, p in enumerate(table["path"])}
        files = files.iloc[np.argsort(files["path"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
        seg_df = pd.concat([p[1] for p in parts], ignore_index=True) if segments else None
        return PredictionResult(files=files, segments=seg_df, errors=errors, classes=list(self.classes))

    def _predict_cache(self, cache: ImageCache, *, segments: bool, progress: bool) -> PredictionResult:
        fids = cache.segments["file_id"].to_numpy()
        step = 4 * self.batch_size
        wp = np.concatenate([self.predict_images(np.asarray(cache.images[s:s + step]))
                             for s in progress_bar(range(0, len(cache.images), step), desc="predict", unit="batch",
                                                   disable=not progress)]
                            or [np.zeros((0, len(self.classes)), np.float32)])
        ids, fp = self.task.pool(wp, fids, self.aggregate)
        files = cache.files.set_index("file_id").loc[ids]
        out = self.task.prediction_frame(files["path"].to_numpy(), fp, self.classes,
                                         truth=self.task.input_truth(files.reset_index()), decision=self.decision)
        seg_df = None
        if segments:
            path_of = dict(zip(cache.files["file_id"], cache.files["path"]))
            seg_df = cache.segments.assign(path=[path_of[f] for f in fids])[["path", "segment", "start", "end"]]
            seg_df[[f"prob_{c}" for c in self.classes]] = wp
        return PredictionResult(files=out, segments=seg_df, errors=cache.errors.copy(), classes=list(self.classes))


def _part_bounds(n: int, size: int) -> List[Tuple[int, int]]:
    size = max(1, size)
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)] or [(0, 0)]


class _Parts:
    """``<out>.parts/``: the finished parts of a prediction written as it goes.

    Each part writes its three tables, then its record ``part-NNNNN.json`` with the prediction's fingerprint
    (:func:`specimg._io.write_done`, the resume mechanism of runs and experiments too): a part counts as done
    only with a record of this fingerprint.
    """

    def __init__(self, out: PathLike, fingerprint: str) -> None:
        out = Path(out)
        self.root = out.with_name(out.name + ".parts")
        self.fingerprint = fingerprint
        records = [read_done(p) for p in self.root.glob("part-*.json")]
        if any(r is None or r.get("fingerprint") != fingerprint for r in records):
            # another prediction (models, options or input) left parts here: they cannot be reused
            _logger.warning("%s holds parts of another prediction; starting over", self.root)
            shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    def n_done(self) -> int:
        return sum(read_done(p, self.fingerprint) is not None for p in self.root.glob("part-*.json"))

    def _names(self, p: int) -> Tuple[Path, Path, Path, Path]:
        stem = self.root / f"part-{p:05d}"
        return (stem.with_suffix(".files.csv"), stem.with_suffix(".segments.csv"), stem.with_suffix(".errors.csv"),
                stem.with_suffix(".json"))

    def write(self, p: int, files: pd.DataFrame, segments: pd.DataFrame, errors: pd.DataFrame) -> None:
        f, s, e, done = self._names(p)
        atomic_write_csv(files, f)
        atomic_write_csv(segments, s)
        atomic_write_csv(errors, e)
        write_done(done, self.fingerprint, files=int(len(files)))  # last: the part counts once this exists

    def read(self, p: int) -> Optional[Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
        f, s, e, done = self._names(p)
        if read_done(done, self.fingerprint, (f, s, e)) is None:
            return None
        strings = {"path": str, "label": str, "labels": str, "prediction": str}
        return (pd.read_csv(f, dtype=strings, keep_default_na=False),
                pd.read_csv(s, dtype={"path": str, "labels": str}, keep_default_na=False),
                pd.read_csv(e, dtype=str, keep_default_na=False))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
