"""Decoded audio cut into windows: the training data of the on-device front end (``images='on-the-fly'``)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from .._validation import check_int
from ..audio import read_table, sort_labels
from ..config import RenderConfig
from ..exceptions import AudioError, DataError, ParameterError
from .._io import AtomicFile, PathLike, atomic_write_csv, atomic_write_text
from .._parallel import failure_reason, pool_map
from .._progress import progress_bar

_logger = logging.getLogger(__name__)

__all__ = ["WaveformSet", "WaveformDataset"]


@dataclass
class WaveformSet:
    """The decoded, padded audio of a dataset and the windows it is cut into.

    The image cache's counterpart when images are made on the device: the same ``files`` / ``segments`` tables
    and, instead of images, every file's padded signal and its dB reference (the maximum of its mel power).
    A window starts at sample ``segments['sample']`` (:func:`~specimg.spectrogram.signal_windows`).

    The audio is float32, ``4 * sample_rate`` bytes per second of padded
    audio (FSDD's 3,000 clips, most padded to one 1 s window at 8 kHz:
    about 3,000 x 32 kB = 96 MB; 1,000 two-minute songs at 22.05 kHz:
    1,000 x 120 x 22,050 x 4 bytes = 10.6 GB): in memory, or with
    ``cache_dir`` a file mapped from disk (see :meth:`load`).

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
        The waveform cache folder (``cache_dir`` of :meth:`load`), ``None``
        when the audio is in memory only.
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
             progress: bool = True, strict: bool = False, cache_dir: Optional[PathLike] = None) -> "WaveformSet":
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
        cache_dir : path or None
            Keep the decoded audio on disk there (``waveforms.f32``, raw float32, and its tables, ``config.json``
            last) and map it (processes under ``torchrun`` share one copy): a later call with the same input table
            and config opens it without decoding. A load killed midway starts over. ``None``: in memory only.

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
        check_int(workers, "workers", owner="WaveformSet.load", low=1)
        table = read_table(source)
        digest = _table_digest(table)
        root = Path(cache_dir) if cache_dir is not None else None
        if root is not None and cls.is_complete(root, config, digest):
            return cls.open(root)
        cfg = config.to_dict()
        jobs = [(a, lab if isinstance(lab, str) else None) for a, lab in zip(table["abspath"], table["label"])]
        errors: Dict[str, str] = {}
        kept: List[Tuple[int, Any]] = []  # (table row, (bounds, starts, ref, duration)) of the good files
        sink = _Sink(root)
        bar = progress_bar(total=len(jobs), desc="load audio", unit="file", disable=not progress, file=sys.stderr)
        try:
            def take(i: int, res: Any) -> None:
                _note(res, table["path"].iat[i], errors, strict)
                if not isinstance(res, str):
                    sink.add(res[0])  # the signal goes to the sink (memory or disk); its plan stays here
                    kept.append((i, res[1:]))
                bar.update(1)

            # in this process for one file; a worker that dies (out of memory, a decoder crash) costs only its file
            for i, res in pool_map(_load_job, [(a, lab, cfg) for a, lab in jobs],
                                   workers=workers if len(jobs) > 1 else 1, window=4):
                take(i, res)
        except BaseException:
            sink.abort()
            raise
        finally:
            bar.close()
        if not kept:
            sink.abort()
            first = next(iter(errors.items())) if errors else "the input is empty"
            raise DataError(f"No audio file could be loaded; first error: {first}.")
        refs, seg_rows, file_rows = [], [], []
        for file_id, (i, (bounds, starts, ref, duration)) in enumerate(kept):
            refs.append(ref)
            for s_, ((a, b), st) in enumerate(zip(bounds, starts)):
                seg_rows.append((file_id, s_, round(float(a), 6), round(float(b), 6), int(st)))
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
            _logger.warning("%d file(s) could not be loaded and are left out:\n%s", len(errors),
                            "\n".join(f"  {p}: {e}" for p, e in list(errors.items())[:20]))
        data = cls(config=config, signal=sink.finish(), offsets=np.asarray(sink.offsets, dtype=np.int64),
                   references=np.asarray(refs, dtype=np.float32), files=files, segments=segments,
                   classes=sort_labels(l for l in files["label"] if l is not None),
                   errors=pd.DataFrame({"path": list(errors), "error": list(errors.values())}, dtype=object),
                   root=root)
        if root is not None:
            data._write_tables(root, digest)
            return cls.open(root)
        return data

    # ------------------------------------------------------------------ on disk
    def _write_tables(self, root: Path, digest: str) -> None:
        files = self.files.assign(offset=self.offsets[:-1], n_samples=np.diff(self.offsets),
                                  reference=self.references)
        atomic_write_csv(files, root / "files.csv")
        atomic_write_csv(self.segments, root / "segments.csv")
        atomic_write_csv(self.errors, root / "errors.csv")
        meta = {"format": _FORMAT, "version": _VERSION, "hash": self.config.hash(), "table": digest,
                "render": self.config.to_dict(), "n_samples": int(self.offsets[-1]), "classes": self.classes,
                "complete": True}
        atomic_write_text(root / "config.json", json.dumps(meta, indent=2))  # last: marks the folder complete

    @staticmethod
    def is_complete(root: PathLike, config: Optional[RenderConfig] = None, digest: Optional[str] = None) -> bool:
        """Whether ``root`` holds a finished waveform cache (of this config and input table, when given)."""
        path = Path(root) / "config.json"
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return (meta.get("format") == _FORMAT and meta.get("version") == _VERSION and bool(meta.get("complete"))
                and (Path(root) / _SIGNAL).is_file()
                and (config is None or meta.get("hash") == config.hash())
                and (digest is None or meta.get("table") == digest))

    @classmethod
    def open(cls, root: PathLike) -> "WaveformSet":
        """Map a waveform cache written by :meth:`load` (``cache_dir=``).

        Raises
        ------
        DataError
            When ``root`` holds no finished waveform cache.
        """
        root = Path(root)
        if not cls.is_complete(root):
            raise DataError(f"{str(root)!r} holds no finished waveform cache (no complete config.json). Run the "
                            "command that writes it again (it starts over), or delete the folder.")
        meta = json.loads((root / "config.json").read_text())
        str_cols = {"path": str, "abspath": str, "label": str, "group": str}
        files = pd.read_csv(root / "files.csv", dtype=str_cols, keep_default_na=False, na_values=[""])
        files["label"] = files["label"].astype(object).where(files["label"].notna(), None)
        offsets = np.concatenate([[0], np.cumsum(files.pop("n_samples").to_numpy(dtype=np.int64))])
        files = files.drop(columns="offset")
        references = files.pop("reference").to_numpy(dtype=np.float32)
        segments = pd.read_csv(root / "segments.csv")
        errors = pd.read_csv(root / "errors.csv", dtype=str)
        signal = np.memmap(root / _SIGNAL, dtype=np.float32, mode="r", shape=(int(meta["n_samples"]),))
        return cls(config=RenderConfig.from_dict(meta["render"]), signal=signal, offsets=offsets,
                   references=references, files=files, segments=segments, classes=list(meta["classes"]),
                   errors=errors, root=root)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if isinstance(self.signal, np.memmap) and self.root is not None:
            state["signal"] = None  # re-mapped by the receiving process (a DataLoader worker), not copied
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.signal is None:
            n = int(self.offsets[-1])
            self.signal = np.memmap(Path(self.root) / _SIGNAL, dtype=np.float32, mode="r", shape=(n,))

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


_FORMAT = "specimg.waveforms"
_VERSION = 1
_SIGNAL = "waveforms.f32"


def _table_digest(table: pd.DataFrame) -> str:
    """Identity of an input table (every column, every row): a cache of another table is not reused."""
    return hashlib.sha1(table.to_csv(index=False).encode()).hexdigest()[:16]


class _Sink:
    """Where decoded signals go: a list in memory, or appended to ``root/waveforms.f32`` (tmp until finished)."""

    def __init__(self, root: Optional[Path]) -> None:
        self.offsets = [0]
        self.parts: List[np.ndarray] = []
        self.root = root
        self.file: Optional[AtomicFile] = None
        self.fh: Any = None
        if root is not None:
            (root / "config.json").unlink(missing_ok=True)  # incomplete from here on
            self.file = AtomicFile(root / _SIGNAL, ".f32")
            self.fh = open(self.file.tmp, "wb")

    def add(self, y: np.ndarray) -> None:
        y = np.ascontiguousarray(y, dtype=np.float32)
        if self.fh is not None:
            self.fh.write(y.tobytes())
        else:
            self.parts.append(y)
        self.offsets.append(self.offsets[-1] + len(y))

    def finish(self) -> np.ndarray:
        if self.fh is None:
            return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)
        self.fh.close()
        self.file.commit()  # type: ignore[union-attr]
        return np.memmap(self.root / _SIGNAL, dtype=np.float32, mode="r", shape=(self.offsets[-1],))  # type: ignore

    def abort(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
            self.file.abort()  # type: ignore[union-attr]


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
    from ..spectrogram import load_for_render as _load
    from ..spectrogram import window_plan as _window_starts

    try:
        config = RenderConfig.from_dict(config_dict)
        y = _load(abspath, config)
        duration = len(y) / float(config.audio.sample_rate)
        padded, extended, bounds, starts = _window_starts(y, config=config, label=label, path=abspath)
        key = config.hash()
        frontend = _FRONTENDS.get(key)
        if frontend is None:
            frontend = _FRONTENDS[key] = SpectrogramFrontend(config)
        ref = float(frontend.reference(torch.from_numpy(padded)[None])[0])  # the padded file's, as the cache's
        return extended, bounds, starts, ref, duration
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
        ``data.classes``. Multi-label: multi-hot [shape=(n_windows, n_classes)].
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
        from ._dataset import _as_targets

        self.data = data
        self._all_targets = _as_targets(targets)
        if self._all_targets.shape[:1] != (n,):
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

    def __getitem__(self, index: int) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Any]:
        from ._dataset import item_target

        row = int(self.rows[index])
        wave, ref = self.data.windows(np.array([row]))
        return (torch.from_numpy(wave[0]), torch.tensor(float(ref[0]))), item_target(self._all_targets, row)

    def __getitems__(self, indices: List[int]) -> List[Tuple[Tuple[torch.Tensor, torch.Tensor], int]]:
        """Batched fetch (one gather for the whole batch), used by the DataLoader."""
        from ._dataset import item_target

        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        waves, refs = self.data.windows(rows)
        w, r = torch.from_numpy(waves), torch.from_numpy(refs)
        return [((w[i], r[i]), item_target(self._all_targets, row)) for i, row in enumerate(rows)]
