"""Predict files with a trained run: CPU render or device front end, fold ensemble, flip TTA, file pooling."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..audio import read_table
from ..config import RenderConfig
from ..exceptions import AudioError, DataError, ParameterError
from ..spectrogram import ImageCache, render_file, render_signal, signal_windows
from .._parallel import failure_reason, single_threaded_worker
from .._progress import progress_bar
from .aggregate import aggregate_segments

__all__ = ["Predictor", "PredictionResult", "load_run_models"]

PathLike = Union[str, "os.PathLike[str]"]
TTA = Literal["flip", "none"]
Aggregate = Literal["mean", "max", "gmean"]
Frontend = Literal["cpu", "gpu"]


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ParameterError(f"The 'device' option must be 'auto', 'cpu' or 'cuda'. Got {device!r}.")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError("device='cuda' was asked for but no CUDA GPU is visible. Use --device cpu or auto.")
    return torch.device(device)


def load_run_models(run: PathLike, *, folds: Union[str, int, Sequence[int]] = "all",
                    device: Union[str, torch.device] = "cpu") -> Tuple[List[nn.Module], Dict[str, Any]]:
    """Load the fold models of a run folder.

    Parameters
    ----------
    run : path
        A folder written by :func:`specimg.training.train_cv`.
    folds : 'all', int or sequence of int
        Which folds' ``best.pt`` to load.
    device : str or torch.device

    Returns
    -------
    models : list of nn.Module
        In eval mode, one per fold.
    meta : dict
        The run's ``config.json`` plus ``folds`` (the loaded fold indices),
        ``mean``, ``std`` and ``input_size`` from the checkpoints.

    Raises
    ------
    DataError
        A folder that is not a run, or a run without the requested folds.
    """
    from ..training import load_trained

    run = Path(run)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise DataError(f"{str(run)!r} is not a specimg run folder (no config.json). Train one with `specimg train`.")
    meta = json.loads(cfg_path.read_text())
    for key in ("classes", "render", "train"):
        if key not in meta:
            raise DataError(f"{str(cfg_path)!r} lacks {key!r}: the run folder is incomplete or from another tool. "
                            "Train it again.")
    available = sorted(int(p.parent.name.split("_")[1]) for p in run.glob("fold_*/best.pt"))
    if not available:
        raise DataError(f"The run {str(run)!r} has no trained fold (no fold_*/best.pt): training did not finish a "
                        "fold. Run the same `specimg train` command again to resume it.")
    if folds == "all":
        chosen = available
    else:
        chosen = [int(folds)] if isinstance(folds, (int, np.integer, str)) else [int(f) for f in folds]
        missing = sorted(set(chosen) - set(available))
        if missing:
            raise DataError(f"The run {str(run)!r} has no finished fold(s) {missing}; finished folds: {available}.")
    models, ckpt_meta = [], {}
    for k in chosen:
        model, ckpt_meta = load_trained(run / f"fold_{k}" / "best.pt", device=device)
        if list(ckpt_meta.get("classes", meta["classes"])) != list(meta["classes"]):
            raise DataError(f"fold_{k}/best.pt was trained on other classes than {str(cfg_path)!r} lists. "
                            "Train the run again.")
        models.append(model)
    meta = dict(meta)
    meta["folds"] = chosen
    meta["mean"] = list(ckpt_meta.get("mean", meta.get("data", {}).get("mean")))
    meta["std"] = list(ckpt_meta.get("std", meta.get("data", {}).get("std")))
    meta["input_size"] = list(ckpt_meta.get("input_size", meta.get("data", {}).get("input_size")))
    return models, meta


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


class Predictor:
    """The fold ensemble of a trained run, ready to predict audio of any length.

    Every window and (with ``tta='flip'``, the seed's default) its horizontal
    flip are predicted by every fold model; probabilities are averaged over
    flips and folds, then pooled per file (``aggregate``).

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
    frontend : {'cpu', 'gpu'}
        How audio becomes model input. ``'cpu'``: images rendered with
        librosa and PIL (:func:`~specimg.spectrogram.render_file`), resized
        to ``input_size`` like the cached training path. ``'gpu'``: waveform
        windows (:func:`~specimg.spectrogram.signal_windows`, each with its
        file's dB reference) go through
        :class:`~specimg.data.FrontendPipeline` on ``device`` (a CUDA GPU or
        the CPU), exactly the input of a run trained with
        ``TrainConfig(frontend='gpu')``; no image is rendered on the CPU.

    Notes
    -----
    The two front ends give the same files, windows and bounds. Their images
    agree to +-1 in a few pixels on one-window files; on longer files the
    device front end sees each window alone, so the 2-3 image columns at
    each window edge differ from the cached ones (see
    :class:`~specimg.spectrogram.SpectrogramFrontend`), and a resize to
    ``input_size`` is bilinear on floats instead of albumentations' on uint8.
    Predict with the front end the run was trained with
    (``Predictor.from_run(..., frontend='auto')``).

    An :class:`~specimg.spectrogram.ImageCache` input already holds its
    images, so no front end runs for it; with ``frontend='gpu'`` they are
    resized and normalised as :class:`~specimg.data.FrontendPipeline` does
    (see :meth:`predict_images`).

    Examples
    --------
    >>> pred = Predictor.from_run("runs/fsdd")  # doctest: +SKIP
    >>> pred.predict_file("recordings/7_theo_3.wav")  # doctest: +SKIP
    array([0.01, ..., 0.93, ...])
    """

    def __init__(self, models: Sequence[nn.Module], *, classes: Sequence[str], render_config: RenderConfig,
                 mean: Sequence[float], std: Sequence[float], input_size: Sequence[int], device: str = "auto",
                 tta: TTA = "flip", aggregate: Aggregate = "mean", batch_size: int = 64,
                 frontend: Frontend = "cpu") -> None:
        if frontend not in ("cpu", "gpu"):
            raise ParameterError(f"The 'frontend' parameter of Predictor must be 'cpu' (render images with librosa "
                                 f"and PIL) or 'gpu' (the torch front end on the predictor's device). Got "
                                 f"{frontend!r}.")
        if tta not in ("flip", "none"):
            raise ParameterError(f"The 'tta' option must be 'flip' or 'none'. Got {tta!r}.")
        if aggregate not in ("mean", "max", "gmean"):
            raise ParameterError(f"The 'aggregate' option must be 'mean', 'max' or 'gmean'. Got {aggregate!r}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"The 'batch_size' option must be an int >= 1. Got {batch_size!r}.")
        if not models:
            raise ParameterError("Predictor needs at least one model.")
        self.device = _resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.models = [m.to(self.device).eval() for m in models]
        self.classes = [str(c) for c in classes]
        self.render_config = render_config
        self.tta = tta
        self.aggregate = aggregate
        self.batch_size = batch_size
        self.input_hw = (int(input_size[-2]), int(input_size[-1]))
        from ..data import PixelNormalize
        from ..models import Ensemble

        # the inference core shared with training's validation and the exported graph
        self.core = Ensemble(self.models, normalize=PixelNormalize(mean, std), tta=tta,
                             channels_last=True).to(self.device).eval()
        from ..data import spectrogram_transforms

        self._resize = spectrogram_transforms(train=False, image_size=self.input_hw,
                                              cache_size=tuple(render_config.spectrogram.image_size))
        self.amp_dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else None
        self.frontend = frontend
        self.pipeline = None
        if frontend == "gpu":
            from ..data import FrontendPipeline

            self.pipeline = FrontendPipeline(render_config, image_size=self.input_hw, mean=mean, std=std,
                                             normalize=False).to(self.device).eval()

    @classmethod
    def from_run(cls, run: PathLike, *, folds: Union[str, int, Sequence[int]] = "all", device: str = "auto",
                 tta: TTA = "flip", aggregate: Aggregate = "mean", batch_size: int = 64,
                 frontend: Literal["auto", "cpu", "gpu"] = "auto") -> "Predictor":
        """Load a run folder's fold models (see :func:`load_run_models`).

        Parameters
        ----------
        run : path
            A folder written by :func:`specimg.training.train_cv`.
        folds, device, tta, aggregate, batch_size
            As for :class:`Predictor` and :func:`load_run_models`.
        frontend : {'auto', 'cpu', 'gpu'}
            ``'auto'``: the front end the run was trained with (its
            ``config.json["train"]["frontend"]``; ``'cpu'`` for runs from
            before the option existed).

        Returns
        -------
        predictor : Predictor
            With ``run_meta``, the run's config plus the loaded folds.
        """
        if frontend not in ("auto", "cpu", "gpu"):
            raise ParameterError(f"The 'frontend' parameter of Predictor.from_run must be 'auto' (the run's own), "
                                 f"'cpu' or 'gpu'. Got {frontend!r}.")
        dev = _resolve_device(device)
        models, meta = load_run_models(run, folds=folds, device=dev)
        chosen = meta["train"].get("frontend", "cpu") if frontend == "auto" else frontend
        pred = cls(models, classes=meta["classes"], render_config=RenderConfig.from_dict(meta["render"]),
                   mean=meta["mean"], std=meta["std"], input_size=meta["input_size"], device=str(dev), tta=tta,
                   aggregate=aggregate, batch_size=batch_size, frontend=chosen)
        pred.run_meta = meta
        return pred

    # ------------------------------------------------------------------ arrays
    @torch.no_grad()
    def _ensemble(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of pixel input, averaged over flips and fold models (:class:`~specimg.models.Ensemble`).

        Parameters
        ----------
        x : torch.Tensor [shape=(B, 3, H, W)]
            Pixels in [0, 255] (uint8 or float) on ``self.device``, at the
            models' input size.

        Returns
        -------
        probs : torch.Tensor [shape=(B, n_classes), dtype=float32]
            On ``self.device``.
        """
        # One memory layout for both front ends: channels-last, what the cached images (HWC) give after the
        # permute. Convolutions are faster on it (measured 1.75x for test_efficientnet at 512x512 on a CPU).
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.core(x)

    @torch.no_grad()
    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """Window probabilities of cached-style images.

        With ``frontend='cpu'`` the images are resized to ``input_size`` by
        the albumentations evaluation pipeline (as the cached training path
        does); with ``frontend='gpu'`` as :class:`~specimg.data.FrontendPipeline`
        resizes its own images (bilinear with anti-aliasing on floats in
        [0, 1]), so a run trained on the device front end sees the resize it
        was trained with.

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
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            if self.pipeline is not None:
                x = torch.from_numpy(np.array(chunk, copy=True, order="C")).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, h, w) in [0, 1]
                x = self.pipeline.resize(x) * 255.0  # (B, 3, H, W) pixels, resized as in training
            else:
                if self._resize is not None:
                    chunk = np.stack([self._resize(image=im)["image"] for im in chunk])
                x = torch.from_numpy(np.array(chunk, copy=True, order="C")).to(self.device).permute(0, 3, 1, 2)
            out.append(self._ensemble(x))
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return torch.cat(out).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def _frontend_probs(self, items: Sequence[Tuple[np.ndarray, np.ndarray]]) -> List[np.ndarray]:
        """Window probabilities of several files through the device front end, batched across files.

        Parameters
        ----------
        items : sequence of (windows, padded)
            Per file, :func:`~specimg.spectrogram.signal_windows`' windows
            [shape=(n_windows, n_samples), float32] and padded signal
            [shape=(m,)].

        Returns
        -------
        probs : list of np.ndarray [shape=(n_windows, n_classes), dtype=float32]
            One per file, in order.
        """
        if self.pipeline is None:
            raise ParameterError("Waveform windows need Predictor(frontend='gpu'); this predictor renders images "
                                 "on the CPU (frontend='cpu').")
        if not items:
            return []
        # The dB reference of each file (the maximum of its padded signal's mel power, as the cached path and
        # training use): files of equal length are stacked into one call (short clips padded to one window are).
        refs = torch.empty(len(items), dtype=torch.float32, device=self.device)
        by_length: Dict[int, List[int]] = {}
        for k, (_, padded) in enumerate(items):
            by_length.setdefault(len(padded), []).append(k)
        for ks in by_length.values():
            signals = torch.from_numpy(np.stack([items[k][1] for k in ks])).to(self.device)  # (n, m)
            refs[torch.as_tensor(ks, device=self.device)] = self.pipeline.frontend.reference(signals)  # (n,)
        counts = [len(w) for w, _ in items]
        ref_w = torch.repeat_interleave(refs, torch.as_tensor(counts, device=self.device))  # (n_windows,)
        windows = items[0][0] if len(items) == 1 else np.concatenate([w for w, _ in items])  # (n_windows, n)
        out = []
        for start in range(0, len(windows), self.batch_size):
            x = torch.from_numpy(windows[start:start + self.batch_size]).to(self.device)  # (B, n_samples)
            out.append(self._ensemble(self.pipeline(x, ref_w[start:start + self.batch_size])))  # (B, n_classes)
        wp = torch.cat(out).cpu().numpy().astype(np.float32)  # (n_windows, n_classes), one copy back
        return np.split(wp, np.cumsum(counts)[:-1])

    def _pool(self, window_probs: np.ndarray) -> np.ndarray:
        _, p = aggregate_segments(window_probs, np.zeros(len(window_probs), dtype=np.int64), method=self.aggregate)
        return p[0]

    def predict_signal(self, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Predict a signal at ``render_config.audio.sample_rate`` (with the predictor's ``frontend``).

        Parameters
        ----------
        y : np.ndarray [shape=(n,)]

        Returns
        -------
        file_probs : np.ndarray [shape=(n_classes,)]
        window_probs : np.ndarray [shape=(n_windows, n_classes)]
        """
        y = np.asarray(y, dtype=np.float32)
        if self.pipeline is not None:
            windows, _, padded = signal_windows(y, config=self.render_config)
            wp = self._frontend_probs([(windows, padded)])[0]
        else:
            images, _ = render_signal(y, config=self.render_config)
            wp = self.predict_images(images)
        return self._pool(wp), wp

    def predict_file(self, path: PathLike) -> np.ndarray:
        """Probabilities of one audio file (any sample rate or length), with the predictor's ``frontend``.

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
        if self.pipeline is not None:
            windows, _, padded = _load_windows(str(path), self.render_config)
            return self._pool(self._frontend_probs([(windows, padded)])[0])
        images, _, _ = render_file(str(path), config=self.render_config)
        return self._pool(self.predict_images(images))

    # ------------------------------------------------------------------ datasets
    def predict(self, source: Union[PathLike, pd.DataFrame, ImageCache], *, segments: bool = False,
                workers: int = 1, progress: bool = True, strict: bool = False) -> PredictionResult:
        """Predict every file of a CSV, class-folder tree, plain folder or image cache.

        Files are loaded with the run's config (resampled to its rate,
        looped up to one window, covered to their end) without writing an
        image cache, and streamed: memory does not grow with the number of
        files. With ``frontend='cpu'`` the worker processes render each
        file's images; with ``frontend='gpu'`` they only decode and resample
        it into waveform windows, and the windows of several files are
        rendered and predicted together on the device. Unreadable files are
        reported in ``errors``; the rest are predicted.

        An image cache is predicted from its images (no front end runs; see
        :meth:`predict_images` for how each ``frontend`` resizes them).

        Parameters
        ----------
        source : path, DataFrame or ImageCache
        segments : bool
            Also return per-window probabilities.
        workers : int
            Processes loading (``frontend='gpu'``) or rendering (``'cpu'``)
            audio in parallel.
        progress : bool
        strict : bool
            Stop at the first bad file.

        Returns
        -------
        result : PredictionResult
        """

        if isinstance(source, ImageCache) or (not isinstance(source, pd.DataFrame) and ImageCache.is_complete(source)):
            return self._predict_cache(source if isinstance(source, ImageCache) else ImageCache.open(source),
                                       segments=segments, progress=progress)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError(f"The 'workers' option must be an int >= 1. Got {workers!r}.")
        table = read_table(source)
        has_labels = table["label"].notna().any()
        rows: List[Dict[str, Any]] = []
        seg_rows: List[Dict[str, Any]] = []
        errors: Dict[str, str] = {}
        # (table row, images or waveform windows, bounds, padded signal or None)
        pending: List[Tuple[int, np.ndarray, np.ndarray, Optional[np.ndarray]]] = []
        n_pending = 0

        def flush() -> None:
            nonlocal pending, n_pending
            if not pending:
                return
            if self.pipeline is not None:
                probs = self._frontend_probs([(w, padded) for _, w, _, padded in pending])
            else:
                wp = self.predict_images(np.concatenate([im for _, im, _, _ in pending]))
                probs = np.split(wp, np.cumsum([len(im) for _, im, _, _ in pending])[:-1])
            for (i, _, bounds, _), p in zip(pending, probs):
                rec = {"path": table["path"].iat[i]}
                if has_labels:
                    rec["label"] = table["label"].iat[i]
                fp = self._pool(p)
                rec["prediction"] = self.classes[int(np.argmax(fp))]
                rec.update({f"prob_{c}": float(v) for c, v in zip(self.classes, fp)})
                rows.append(rec)
                if segments:
                    for s, (a, b) in enumerate(bounds):
                        seg = {"path": rec["path"], "segment": s, "start": float(a), "end": float(b)}
                        seg.update({f"prob_{c}": float(v) for c, v in zip(self.classes, p[s])})
                        seg_rows.append(seg)
            pending, n_pending = [], 0

        bar = progress_bar(total=len(table), desc="predict", unit="file", disable=not progress, file=sys.stderr)
        try:
            for i, res in _prepare_stream(table["abspath"].tolist(), self.render_config, workers,
                                          frontend=self.frontend):
                bar.update(1)
                if isinstance(res, str):
                    errors[table["path"].iat[i]] = res
                    if strict:
                        raise AudioError(table["path"].iat[i], res + " (stopped by --strict)")
                    continue
                pending.append((i, res[0], res[1], res[2] if len(res) > 2 else None))
                n_pending += len(res[0])
                if n_pending >= self.batch_size:
                    flush()
            flush()
        finally:
            bar.close()
        order = {p: k for k, p in enumerate(table["path"])}
        files = pd.DataFrame(rows, columns=["path"] + (["label"] if has_labels else []) + ["prediction"]
                             + [f"prob_{c}" for c in self.classes])
        files = files.iloc[np.argsort(files["path"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
        seg_df = pd.DataFrame(seg_rows) if segments else None
        err = pd.DataFrame({"path": list(errors), "error": list(errors.values())})
        if errors:
            print(f"specimg predict: {len(errors)} file(s) could not be predicted:", file=sys.stderr)
            for p, e in list(errors.items())[:20]:
                print(f"  {p}: {e}", file=sys.stderr)
        return PredictionResult(files=files, segments=seg_df, errors=err, classes=list(self.classes))

    def _predict_cache(self, cache: ImageCache, *, segments: bool, progress: bool) -> PredictionResult:

        fids = cache.segments["file_id"].to_numpy()
        wp = np.concatenate([self.predict_images(np.asarray(cache.images[s:s + 4 * self.batch_size]))
                             for s in progress_bar(range(0, len(cache.images), 4 * self.batch_size), desc="predict",
                                           unit="batch", disable=not progress, file=sys.stderr)]
                            or [np.zeros((0, len(self.classes)), np.float32)])
        ids, fp = aggregate_segments(wp, fids, method=self.aggregate)
        files = cache.files.set_index("file_id").loc[ids]
        out = pd.DataFrame({"path": files["path"].to_numpy()})
        if files["label"].notna().any():
            out["label"] = files["label"].to_numpy()
        out["prediction"] = np.asarray(self.classes, dtype=object)[fp.argmax(1)]
        for j, c in enumerate(self.classes):
            out[f"prob_{c}"] = fp[:, j]
        seg_df = None
        if segments:
            path_of = dict(zip(cache.files["file_id"], cache.files["path"]))
            seg_df = cache.segments.assign(path=[path_of[f] for f in fids])[["path", "segment", "start", "end"]]
            for j, c in enumerate(self.classes):
                seg_df[f"prob_{c}"] = wp[:, j]
        return PredictionResult(files=out, segments=seg_df, errors=cache.errors.copy(), classes=list(self.classes))


def _load_windows(path: str, config: RenderConfig) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load a file with the run's audio settings and cut it like the cached path: (windows, bounds, padded)."""
    from ..spectrogram._image import _load

    return signal_windows(_load(path, config), config=config, path=path)


Prepared = Union[str, Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]


def _prepare_one(abspath: str, config_dict: Dict[str, Any], frontend: str = "cpu") -> Prepared:
    """One file's model input, or the reason it cannot be predicted.

    Returns
    -------
    prepared : (images, bounds), (windows, bounds, padded) or str
        ``frontend='cpu'``: rendered images [shape=(n_windows, H, W, 3)];
        ``'gpu'``: waveform windows [shape=(n_windows, n_samples)] and the
        padded signal; a str: why the file failed.
    """
    try:
        config = RenderConfig.from_dict(config_dict)
        if frontend == "gpu":
            return _load_windows(abspath, config)
        images, bounds, _ = render_file(abspath, config=config)
    except Exception as exc:  # one bad file never costs the batch its work
        return failure_reason(exc)
    return images, bounds


def _prepare_stream(paths: List[str], config: RenderConfig, workers: int, *, frontend: str = "cpu"
                    ) -> Iterator[Tuple[int, Prepared]]:
    """Prepare files in order (:func:`_prepare_one`), at most ``2 * workers`` in flight (bounded memory)."""
    cfg = config.to_dict()
    if workers == 1:
        for i, p in enumerate(paths):
            yield i, _prepare_one(p, cfg, frontend)
        return
    import librosa  # noqa: F401  imported once, inherited by forked workers

    with ProcessPoolExecutor(max_workers=workers, initializer=single_threaded_worker) as pool:
        inflight: List[Tuple[int, Any]] = []
        nxt = 0
        while nxt < len(paths) or inflight:
            while nxt < len(paths) and len(inflight) < 2 * workers:
                inflight.append((nxt, pool.submit(_prepare_one, paths[nxt], cfg, frontend)))
                nxt += 1
            i, fut = inflight.pop(0)
            yield i, fut.result()
