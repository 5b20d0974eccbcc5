"""Decoded audio cut into windows: the training data of the on-device front end (``frontend='gpu'``)."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..audio import load_audio, read_table, sort_labels
from ..config import RenderConfig
from ..exceptions import AudioError, DataError, ParameterError
from .._parallel import failure_reason, single_threaded_worker
from .._progress import progress_bar

__all__ = ["WaveformSet", "WaveformDataset"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class WaveformSet:
    """The decoded, padded audio of a dataset and the windows it is cut into.

    The image cache's counterpart when images are made on the device: the
    same ``files`` / ``segments`` tables (so folds, targets and out-of-fold
    predictions work the same way) and, instead of images, every file's
    padded signal and its dB reference (the maximum of its mel power
    spectrogram, which the cached path measures dB from). Window ``k`` of a
    file starts at sample ``segments['sample']``, the STFT frame the cached
    path slices (:func:`~specimg.spectrogram.signal_windows`).

    The audio is held in memory (float32): about ``4 * sample_rate`` bytes
    per second of padded audio (FSDD at 8 kHz: 40 MB).

    Attributes
    ----------
    config : RenderConfig
    signal : np.ndarray [shape=(n_samples_total,), dtype=float32]
        All padded signals, end to end.
    offsets : np.ndarray [shape=(n_files + 1,), dtype=int64]
        File ``i`` is ``signal[offsets[i]:offsets[i + 1]]``.
    references : np.ndarray [shape=(n_files,), dtype=float32]
    files : pd.DataFrame
        ``file_id, path, abspath, label, group, n_segments, duration`` and
        the input's extra columns (as :attr:`ImageCache.files`).
    segments : pd.DataFrame
        ``file_id, segment, start, end, sample``.
    classes : list of str
    errors : pd.DataFrame
        ``path, error`` of the files that could not be loaded.
    root : Path or None
        The source (CSV or folder), for the run's records.
    """

    config: RenderConfig
    signal: np.ndarray
    offsets: np.ndarray
    references: np.ndarray
    files: pd.DataFrame
    segments: pd.DataFrame
    classes: List[str]
    errors: pd.DataFrame
    root: Optional[Path] = None

    @classmethod
    def load(cls, source: Union[PathLike, pd.DataFrame], config: RenderConfig, *, workers: int = 1,
             progress: bool = True, strict: bool = False) -> "WaveformSet":
        """Decode every file of a dataset, plan its windows and measure its dB reference.

        Parameters
        ----------
        source : path or DataFrame
            A CSV (``path,label[,group]``), a class-folder tree or a folder of
            audio (see :func:`specimg.audio.read_table`).
        config : RenderConfig
        workers : int
            Processes decoding in parallel.
        progress : bool
        strict : bool
            Stop at the first bad file instead of listing it in ``errors``.

        Returns
        -------
        data : WaveformSet

        Raises
        ------
        DataError
            When no file could be loaded.
        AudioError
            With ``strict=True``, the first bad file.
        """

        if not isinstance(config, RenderConfig):
            raise ParameterError(f"The 'config' parameter of WaveformSet.load must be a RenderConfig. Got "
                                 f"{type(config).__name__}.")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError(f"The 'workers' parameter of WaveformSet.load must be an int >= 1. Got {workers!r}.")
        table = read_table(source)
        cfg = config.to_dict()
        jobs = [(a, lab if isinstance(lab, str) else None) for a, lab in zip(table["abspath"], table["label"])]
        results: List[Any] = [None] * len(jobs)
        errors: Dict[str, str] = {}
        bar = progress_bar(total=len(jobs), desc="load audio", unit="file", disable=not progress, file=sys.stderr)
        try:
            if workers == 1 or len(jobs) < 2:
                it = ((i, _load_job(a, lab, cfg)) for i, (a, lab) in enumerate(jobs))
                for i, res in it:
                    results[i] = res
                    _note(res, table["path"].iat[i], errors, strict)
                    bar.update(1)
            else:
                import librosa  # noqa: F401  imported once, inherited by forked workers

                with ProcessPoolExecutor(max_workers=workers, initializer=single_threaded_worker) as pool:
                    chunk = max(1, min(64, len(jobs) // (8 * workers)))
                    it = pool.map(_load_job, [a for a, _ in jobs], [lab for _, lab in jobs], [cfg] * len(jobs),
                                  chunksize=chunk)
                    for i, res in enumerate(it):
                        results[i] = res
                        _note(res, table["path"].iat[i], errors, strict)
                        bar.update(1)
        finally:
            bar.close()
        keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
        if not keep:
            first = next(iter(errors.items())) if errors else "the input is empty"
            raise DataError(f"No audio file could be loaded; first error: {first}.")
        signals, refs, seg_rows, file_rows, offsets = [], [], [], [], [0]
        for file_id, i in enumerate(keep):
            y, bounds, starts, ref, duration = results[i]
            signals.append(y)
            offsets.append(offsets[-1] + len(y))
            refs.append(ref)
            for s, ((a, b), st) in enumerate(zip(bounds, starts)):
                seg_rows.append((file_id, s, round(float(a), 6), round(float(b), 6), int(st)))
            row = table.iloc[i].to_dict()
            row.update(file_id=file_id, n_segments=len(bounds), duration=round(float(duration), 6))
            file_rows.append(row)
        files = pd.DataFrame(file_rows)
        files["label"] = files["label"].map(lambda v: None if v is None or v != v else str(v))
        if "group" not in files:
            files["group"] = files["path"]
        front = ["file_id", "path", "abspath", "label", "group", "n_segments", "duration"]
        files = files[front + [c for c in files.columns if c not in front]]
        segments = pd.DataFrame(seg_rows, columns=["file_id", "segment", "start", "end", "sample"])
        if errors and _is_rank_zero():  # under torchrun every process loads the audio; one of them reports
            print(f"specimg: {len(errors)} file(s) could not be loaded and are left out:", file=sys.stderr)
            for p, e in list(errors.items())[:20]:
                print(f"  {p}: {e}", file=sys.stderr)
        root = Path(source) if isinstance(source, (str, os.PathLike)) else None
        return cls(config=config, signal=np.concatenate(signals).astype(np.float32, copy=False),
                   offsets=np.asarray(offsets, dtype=np.int64), references=np.asarray(refs, dtype=np.float32),
                   files=files, segments=segments, classes=sort_labels(l for l in files["label"] if l is not None),
                   errors=pd.DataFrame({"path": list(errors), "error": list(errors.values())}), root=root)

    @property
    def window_samples(self) -> int:
        """Samples per window."""
        return int(round(self.config.segment.seconds * self.config.audio.sample_rate))

    def windows(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Waveforms and dB references of some segment rows.

        Returns
        -------
        waveforms : np.ndarray [shape=(len(rows), window_samples), dtype=float32]
        references : np.ndarray [shape=(len(rows),), dtype=float32]
        """
        rows = np.asarray(rows, dtype=np.int64)
        fid = self.segments["file_id"].to_numpy()[rows]
        start = self.offsets[fid] + self.segments["sample"].to_numpy()[rows]  # (n,)
        idx = start[:, None] + np.arange(self.window_samples)[None, :]  # (n, win)
        return self.signal[idx], self.references[fid]


def _is_rank_zero() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _note(res: Any, path: str, errors: Dict[str, str], strict: bool) -> None:
    if isinstance(res, str):
        errors[path] = res
        if strict:
            raise AudioError(path, res + " (stopped by --strict; drop --strict to skip bad files)")


_FRONTENDS: Dict[str, Any] = {}


def _load_job(abspath: str, label: Optional[str], config_dict: Dict[str, Any]
              ) -> Union[str, Tuple[np.ndarray, np.ndarray, np.ndarray, float, float]]:
    """Decode, pad and plan one file; its error message instead when it cannot be used."""
    from ..spectrogram import SpectrogramFrontend
    from ..spectrogram._image import _window_plan

    try:
        config = RenderConfig.from_dict(config_dict)
        a = config.audio
        y = load_audio(abspath, sr=a.sample_rate, offset=a.offset, duration=a.duration)
        duration = len(y) / float(a.sample_rate)
        y, bounds, frames = _window_plan(y, config=config, label=label, path=abspath)
        starts = frames[:, 0] * config.spectrogram.hop_length  # (n_windows,) samples
        win = int(round(config.segment.seconds * a.sample_rate))
        key = config.hash()
        frontend = _FRONTENDS.get(key)
        if frontend is None:
            frontend = _FRONTENDS[key] = SpectrogramFrontend(config)
        ref = float(frontend.reference(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None])[0])
        need = int(starts.max()) + win
        if need > len(y):  # the last window may pass the end by a fraction of a hop: zeros, as the STFT pads
            y = np.concatenate([y, np.zeros(need - len(y), dtype=np.float32)])
        return np.asarray(y, dtype=np.float32), bounds / float(a.sample_rate), starts, ref, duration
    except Exception as exc:  # one bad file never costs the batch its work
        return failure_reason(exc)


class WaveformDataset(Dataset):
    """Windows of a :class:`WaveformSet` as ``((waveform, reference), target)`` items.

    The batch a DataLoader makes of them, ``((B, n_samples), (B,))``, is the
    input of :class:`FrontendPipeline` on the device.

    Parameters
    ----------
    data : WaveformSet
    targets : np.ndarray [shape=(n_windows,), dtype=int] or None
        Class of every segment row (``-1``: unlabelled); default from
        ``data.classes``.
    rows : np.ndarray or None
        The segment rows this dataset serves (a fold); ``None``: all.
    file_ids : np.ndarray or None
        Source file of every segment row (default ``data.segments['file_id']``).
    num_classes : int or None

    Examples
    --------
    >>> ds = WaveformDataset(data, rows=np.arange(10))  # doctest: +SKIP
    >>> (wave, ref), y = ds[0]  # doctest: +SKIP
    """

    def __init__(self, data: WaveformSet, targets: Optional[np.ndarray] = None, *, rows: Optional[np.ndarray] = None,
                 file_ids: Optional[np.ndarray] = None, num_classes: Optional[int] = None) -> None:
        if not isinstance(data, WaveformSet):
            raise ParameterError(f"WaveformDataset needs a WaveformSet. Got {type(data).__name__}.")
        n = len(data.segments)
        if targets is None:
            from ._dataset import cache_targets

            _, targets = cache_targets(data)  # type: ignore[arg-type]
        self.data = data
        self._all_targets = np.asarray(targets, dtype=np.int64)
        if self._all_targets.shape != (n,):
            raise DataError(f"WaveformDataset targets must have one entry per window ({n}); got shape "
                            f"{self._all_targets.shape}.")
        self._all_file_ids = (data.segments["file_id"].to_numpy(dtype=np.int64) if file_ids is None
                              else np.asarray(file_ids, dtype=np.int64))
        self.rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= n):
            raise DataError(f"WaveformDataset rows must lie in [0, {n}); got {self.rows.min()}..{self.rows.max()}.")
        self.num_classes = num_classes if num_classes is not None else len(data.classes)
        self.epoch = 0

    @property
    def targets(self) -> np.ndarray:
        """Class index of each item (``-1`` when unlabelled), shape (n,)."""
        return self._all_targets[self.rows]

    @property
    def file_ids(self) -> np.ndarray:
        """Source file of each item, shape (n,)."""
        return self._all_file_ids[self.rows]

    def set_epoch(self, epoch: int) -> None:
        """Kept for the trainer; the augmentation happens on the device."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> Tuple[Tuple[torch.Tensor, torch.Tensor], int]:
        row = int(self.rows[index])
        wave, ref = self.data.windows(np.array([row]))
        return (torch.from_numpy(wave[0]), torch.tensor(float(ref[0]))), int(self._all_targets[row])

    def __getitems__(self, indices: List[int]) -> List[Tuple[Tuple[torch.Tensor, torch.Tensor], int]]:
        """Batched fetch (one gather for the whole batch), used by the DataLoader."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        waves, refs = self.data.windows(rows)
        w, r = torch.from_numpy(waves), torch.from_numpy(refs)
        return [((w[i], r[i]), int(self._all_targets[row])) for i, row in enumerate(rows)]
