"""Predict files with a trained run: render, fold ensemble, flip TTA, per-file aggregation."""

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
from ..exceptions import AudioError, DataError, ParameterError, SpecimgError
from ..spectrogram import ImageCache, render_file, render_signal
from .aggregate import aggregate_segments

__all__ = ["Predictor", "PredictionResult", "load_run_models"]

PathLike = Union[str, "os.PathLike[str]"]
TTA = Literal["flip", "none"]
Aggregate = Literal["mean", "max", "gmean"]


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

    Examples
    --------
    >>> pred = Predictor.from_run("runs/fsdd")  # doctest: +SKIP
    >>> pred.predict_file("recordings/7_theo_3.wav")  # doctest: +SKIP
    array([0.01, ..., 0.93, ...])
    """

    def __init__(self, models: Sequence[nn.Module], *, classes: Sequence[str], render_config: RenderConfig,
                 mean: Sequence[float], std: Sequence[float], input_size: Sequence[int], device: str = "auto",
                 tta: TTA = "flip", aggregate: Aggregate = "mean", batch_size: int = 64) -> None:
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
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
        self._scale = (1.0 / (255.0 * std_t)).to(self.device)
        self._bias = (-mean_t / std_t).to(self.device)
        from ..data import spectrogram_transforms

        self._resize = spectrogram_transforms(train=False, image_size=self.input_hw,
                                              cache_size=tuple(render_config.spectrogram.image_size))
        self.amp_dtype = torch.bfloat16 if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else None

    @classmethod
    def from_run(cls, run: PathLike, *, folds: Union[str, int, Sequence[int]] = "all", device: str = "auto",
                 tta: TTA = "flip", aggregate: Aggregate = "mean", batch_size: int = 64) -> "Predictor":
        """Load a run folder's fold models (see :func:`load_run_models`)."""
        dev = _resolve_device(device)
        models, meta = load_run_models(run, folds=folds, device=dev)
        pred = cls(models, classes=meta["classes"], render_config=RenderConfig.from_dict(meta["render"]),
                   mean=meta["mean"], std=meta["std"], input_size=meta["input_size"], device=str(dev), tta=tta,
                   aggregate=aggregate, batch_size=batch_size)
        pred.run_meta = meta
        return pred

    # ------------------------------------------------------------------ arrays
    @torch.no_grad()
    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """Window probabilities of cached-style images.

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
            if self._resize is not None:
                chunk = np.stack([self._resize(image=im)["image"] for im in chunk])
            x = torch.from_numpy(np.array(chunk, copy=True, order="C")).to(self.device).permute(0, 3, 1, 2).float()
            x = x * self._scale + self._bias  # (B, 3, H, W)
            if self.tta == "flip":
                x = torch.cat([x, x.flip(3)])  # (2B, 3, H, W)
            p = torch.zeros(len(chunk), len(self.classes), device=self.device)
            for model in self.models:
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    logits = model(x)  # (B or 2B, n_classes)
                q = logits.float().softmax(1)
                if self.tta == "flip":
                    q = 0.5 * (q[: len(chunk)] + q[len(chunk):])  # (B, n_classes)
                p += q
            out.append((p / len(self.models)).cpu())
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    def _pool(self, window_probs: np.ndarray) -> np.ndarray:
        _, p = aggregate_segments(window_probs, np.zeros(len(window_probs), dtype=np.int64), method=self.aggregate)
        return p[0]

    def predict_signal(self, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Predict a signal at ``render_config.audio.sample_rate``.

        Returns
        -------
        file_probs : np.ndarray [shape=(n_classes,)]
        window_probs : np.ndarray [shape=(n_windows, n_classes)]
        """
        images, _ = render_signal(np.asarray(y, dtype=np.float32), config=self.render_config)
        wp = self.predict_images(images)
        return self._pool(wp), wp

    def predict_file(self, path: PathLike) -> np.ndarray:
        """Probabilities of one audio file (any sample rate or length).

        Returns
        -------
        probs : np.ndarray [shape=(n_classes,)]
        """
        images, _, _ = render_file(str(path), config=self.render_config)
        return self._pool(self.predict_images(images))

    # ------------------------------------------------------------------ datasets
    def predict(self, source: Union[PathLike, pd.DataFrame, ImageCache], *, segments: bool = False,
                workers: int = 1, progress: bool = True, strict: bool = False) -> PredictionResult:
        """Predict every file of a CSV, class-folder tree, plain folder or image cache.

        Files are rendered with the run's config (resampled to its rate,
        looped up to one window, covered to their end) without writing an
        image cache, and streamed: memory does not grow with the number of
        files. Unreadable files are reported in ``errors``; the rest are
        predicted.

        Parameters
        ----------
        source : path, DataFrame or ImageCache
        segments : bool
            Also return per-window probabilities.
        workers : int
            Processes rendering audio in parallel.
        progress : bool
        strict : bool
            Stop at the first bad file.

        Returns
        -------
        result : PredictionResult
        """
        from tqdm.auto import tqdm

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
        pending: List[Tuple[int, np.ndarray, np.ndarray]] = []
        n_pending = 0

        def flush() -> None:
            nonlocal pending, n_pending
            if not pending:
                return
            wp = self.predict_images(np.concatenate([im for _, im, _ in pending]))
            pos = 0
            for i, im, bounds in pending:
                p = wp[pos:pos + len(im)]
                pos += len(im)
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

        bar = tqdm(total=len(table), desc="predict", unit="file", disable=not progress, file=sys.stderr)
        try:
            for i, res in _render_stream(table["abspath"].tolist(), self.render_config, workers):
                bar.update(1)
                if isinstance(res, str):
                    errors[table["path"].iat[i]] = res
                    if strict:
                        raise AudioError(table["path"].iat[i], res + " (stopped by --strict)")
                    continue
                pending.append((i, res[0], res[1]))
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
        from tqdm.auto import tqdm

        fids = cache.segments["file_id"].to_numpy()
        wp = np.concatenate([self.predict_images(np.asarray(cache.images[s:s + 4 * self.batch_size]))
                             for s in tqdm(range(0, len(cache.images), 4 * self.batch_size), desc="predict",
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


def _render_one(abspath: str, config_dict: Dict[str, Any]) -> Union[str, Tuple[np.ndarray, np.ndarray]]:
    try:
        images, bounds, _ = render_file(abspath, config=RenderConfig.from_dict(config_dict))
    except AudioError as exc:
        return exc.reason
    except SpecimgError as exc:
        return str(exc)
    except Exception as exc:  # one bad file never costs the batch its work
        return f"unexpected {type(exc).__name__}: {exc}"
    return images, bounds


def _render_stream(paths: List[str], config: RenderConfig, workers: int
                   ) -> Iterator[Tuple[int, Union[str, Tuple[np.ndarray, np.ndarray]]]]:
    """Render files in order, at most ``2 * workers`` in flight (bounded memory)."""
    cfg = config.to_dict()
    if workers == 1:
        for i, p in enumerate(paths):
            yield i, _render_one(p, cfg)
        return
    import librosa  # noqa: F401  imported once, inherited by forked workers

    with ProcessPoolExecutor(max_workers=workers) as pool:
        inflight: List[Tuple[int, Any]] = []
        nxt = 0
        while nxt < len(paths) or inflight:
            while nxt < len(paths) and len(inflight) < 2 * workers:
                inflight.append((nxt, pool.submit(_render_one, paths[nxt], cfg)))
                nxt += 1
            i, fut = inflight.pop(0)
            yield i, fut.result()
