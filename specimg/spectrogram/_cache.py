"""The image cache: rendering a dataset once, loading it fast for training.

Layout of a cache folder (every name is defined once, here: :data:`CONFIG_FILE`, :data:`IMAGES_FILE` ...)::

    config.json    resolved RenderConfig, its hash, classes, counts, layout; written last
    images.npy     uint8, opened as a memmap: one plane per image, [shape=(n_images, H, W)], when the
                   three channels are copies (channels='replicate'); [shape=(n_images, H, W, 3)] otherwise,
                   and in caches written before the one-plane layout (both open)
    segments.csv   file_id, segment, start, end  (row i <-> images[i])
    files.csv      file_id, path, abspath, label, group, n_segments, duration, + the input's extra columns
    errors.csv     path, error  (files that could not be rendered)
    png/           optional PNG copies for people to look at
    .partial-<hash>/  a render in progress: plan.csv (each file's rows), images.npy (preallocated from the
                   files' lengths, filled in place by the workers), done.jsonl (one line per finished file,
                   appended when it is finished) and <key>.npy for a file whose window count was not known
                   in advance

Whatever is stored, :attr:`ImageCache.images` reads as ``(n_images, H, W, 3)``
uint8 (:class:`ImageArray`). Every write is atomic (temporary file +
``os.replace``). A killed render resumes from the partial folder; the
finished cache equals an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .._io import atomic_save_npy as _atomic_npy
from .._io import atomic_write_csv as _atomic_csv
from .._io import atomic_write_text
from .._io import config_diff as _config_diff
from .._io import atomic_path as _atomic_path
from .._io import move_into_place as _move_into_place
from .._parallel import failure_reason, pool_map
from .._progress import progress_bar
from ..audio import read_table, segment_bounds, sort_labels
from ._config import CACHE_FORMAT_VERSION, RenderConfig
from ..exceptions import AudioError, DataError, ParameterError
from ._image import _load, expand_planes, render_planes, warm_up

__all__ = ["ImageCache", "ImageArray", "render_dataset", "atomic_write_text"]

PathLike = Union[str, "os.PathLike[str]"]

_logger = logging.getLogger(__name__)

#: The files of a finished cache folder.
CONFIG_FILE = "config.json"
IMAGES_FILE = "images.npy"
SEGMENTS_FILE = "segments.csv"
FILES_FILE = "files.csv"
ERRORS_FILE = "errors.csv"
PNG_DIR = "png"
#: A render in progress: ``.partial-<config hash>/`` with :data:`PLAN_FILE`, its own :data:`IMAGES_FILE`,
#: :data:`DONE_FILE` (a line per finished file) and a ``<key>.npy`` shard per file rendered off the plan.
PARTIAL_PREFIX = ".partial-"
PLAN_FILE = "plan.csv"
DONE_FILE = "done.jsonl"
#: 1: images.npy always (n, H, W, 3); 2: (n, H, W) when the channels are copies. Both open.
LAYOUT = 2
#: Rows copied at a time when a cache is written from another (memory stays flat).
_CHUNK_BYTES = 64 << 20


# --------------------------------------------------------------------------- the images
class ImageArray:
    """A cache's images as a read-only ``(n_images, H, W, 3)`` uint8 array, however they are stored.

    Indexing with an int, a slice, an int array or a boolean mask reads only
    those rows and returns a new ndarray (``(H, W, 3)`` for an int,
    ``(k, H, W, 3)`` otherwise); ``np.asarray(images)`` reads them all. A
    one-plane store (``(n, H, W)``: the three channels are copies) is
    expanded to three identical channels when read, so callers never see the
    difference. A memory-mapped store pickles as its file name and is mapped
    again in each process (DataLoader workers map the file themselves).

    Parameters
    ----------
    stored : np.ndarray [shape=(n, H, W) or (n, H, W, 3), dtype=uint8]
        Usually the cache's ``images.npy`` opened as a memmap.
    rows : np.ndarray [shape=(k,), dtype=int] or None
        The stored rows this array shows (a :meth:`ImageCache.select`).

    Examples
    --------
    >>> planes = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    >>> images = ImageArray(planes)
    >>> images.shape, images[1].shape, bool((images[0][..., 0] == images[0][..., 2]).all())
    ((2, 4, 5, 3), (4, 5, 3), True)
    """

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, stored: np.ndarray, rows: Optional[np.ndarray] = None) -> None:
        if stored.dtype != np.uint8 or not (stored.ndim == 3 or (stored.ndim == 4 and stored.shape[-1] == 3)):
            raise DataError(f"Cache images must be uint8 of shape (n, H, W) or (n, H, W, 3); got {stored.dtype} "
                            f"{stored.shape}.")
        self._stored: Optional[np.ndarray] = stored
        self._source = _memmap_source(stored)
        self._pid = os.getpid()
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self._n_stored = int(stored.shape[0])
        self._hw = (int(stored.shape[1]), int(stored.shape[2]))
        #: 1 when each image is stored as one plane (its channels are copies), 3 otherwise.
        self.planes = 1 if stored.ndim == 3 else 3

    @classmethod
    def open(cls, path: PathLike) -> "ImageArray":
        """Memory-map an ``images.npy`` file (read-only)."""
        return cls(np.load(path, mmap_mode="r"))

    @property
    def stored(self) -> np.ndarray:
        """The stored array (all rows, as written: ``(n, H, W)`` or ``(n, H, W, 3)``), mapped in this process."""
        if self._stored is None or (self._source is not None and self._pid != os.getpid()):
            filename, dtype, shape, offset = self._source  # type: ignore[misc]
            self._stored = np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape)
            self._pid = os.getpid()
        return self._stored

    @property
    def shape(self) -> Tuple[int, int, int, int]:
        return (len(self), self._hw[0], self._hw[1], 3)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self._n_stored if self.rows is None else int(self.rows.size)

    def __repr__(self) -> str:
        kind = "one plane per image" if self.planes == 1 else "three channels"
        return f"ImageArray(shape={self.shape}, dtype=uint8, stored as {kind})"

    def _stored_index(self, key: Any) -> Any:
        """``key`` over this array's rows -> an index of the stored rows (an int, a slice or an int array)."""
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of bounds for {n} images")
            return i if self.rows is None else int(self.rows[i])
        if isinstance(key, slice):
            return key if self.rows is None else self.rows[key]
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean mask over {n} images must have shape ({n},); got {idx.shape}")
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu":
            raise IndexError(f"images are indexed by ints, slices, int arrays or boolean masks; got {idx.dtype}")
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"an index is out of bounds for {n} images")
        return idx if self.rows is None else self.rows[idx]

    def planes_of(self, key: Any) -> np.ndarray:
        """The stored planes of some rows, not expanded: ``(.., H, W)`` or ``(.., H, W, 3)``."""
        return np.asarray(self.stored[self._stored_index(key)])

    def read(self, rows: Any) -> np.ndarray:
        """:meth:`planes_of` some rows of this array, read from the file with plain reads when it is one (the
        pages stay in the OS's cache, not in this process: a copy of a whole cache keeps its memory flat)."""
        idx = self._stored_index(rows)
        if self._source is None or isinstance(idx, (int, np.integer)):
            return self.planes_of(rows)
        idx = np.arange(self._n_stored)[idx] if isinstance(idx, slice) else idx
        filename, _, shape, offset = self._source
        return _read_rows(filename, idx, offset, tuple(shape[1:]))

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: Tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        block = self.planes_of(key)
        if isinstance(key, (int, np.integer)):
            image = expand_planes(block[None])[0]  # (H, W, 3)
            return image[rest] if rest else image
        images = expand_planes(block)  # (k, H, W, 3)
        return images[(slice(None),) + rest] if rest else images

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def select(self, rows: np.ndarray) -> "ImageArray":
        """The images at ``rows`` (of this array), without reading them."""
        rows = np.asarray(self._stored_index(np.asarray(rows, dtype=np.int64)))
        view = ImageArray.__new__(ImageArray)
        view.__dict__.update(self.__dict__)
        view.rows = rows
        return view

    def blocks(self, rows_per_block: Optional[int] = None) -> Iterator[np.ndarray]:
        """The stored planes in order, a block of rows at a time (memory stays flat)."""
        h, w = self._hw
        step = rows_per_block or max(1, _CHUNK_BYTES // (h * w * self.planes))
        for s in range(0, len(self), step):
            yield self.read(slice(s, min(s + step, len(self))))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._source is not None:
            state["_stored"] = None  # mapped again in the receiving process
        return state


def _memmap_source(arr: np.ndarray) -> Optional[tuple]:
    """How to map ``arr`` again in another process, when it maps a whole file region."""
    if isinstance(arr, np.memmap) and getattr(arr, "filename", None) and arr.flags.c_contiguous:
        return (str(arr.filename), arr.dtype.str, tuple(arr.shape), int(arr.offset))
    return None


# --------------------------------------------------------------------------- the cache
class ImageCache:
    """A rendered dataset: window images, their segment table and the config.

    Use :meth:`open` on a folder written by :func:`render_dataset`.

    Attributes
    ----------
    root : Path or None
        The cache folder; ``None`` for a cache made in memory by
        :meth:`select` (write it with :meth:`save`).
    config : RenderConfig
    images : ImageArray [shape=(n_images, H, W, 3), dtype=uint8]
        Read-only, memory-mapped; HWC, low frequencies at the bottom row.
        ``images.planes == 1`` when one plane per image is stored.
    segments : pd.DataFrame
        ``file_id, segment, start, end``; row ``i`` describes ``images[i]``.
    files : pd.DataFrame
        One row per rendered file: ``file_id, path, abspath, label, group,
        n_segments, duration`` and the input's extra columns.
    classes : list of str
        Sorted labels (numeric-aware).
    errors : pd.DataFrame
        ``path, error`` of the files that could not be rendered.
    reused_files : int
        How many of ``files`` the :func:`render_dataset` call that returned
        this cache took from the finished cache already in its folder
        instead of rendering them (all of them when nothing changed); 0 for
        a cache opened with :meth:`open` or made by :meth:`select`.
    """

    #: The names of the layout (``cache.root / ImageCache.ERRORS_FILE`` ...): other modules use these.
    CONFIG_FILE, IMAGES_FILE, SEGMENTS_FILE, FILES_FILE, ERRORS_FILE, PNG_DIR = (
        CONFIG_FILE, IMAGES_FILE, SEGMENTS_FILE, FILES_FILE, ERRORS_FILE, PNG_DIR)
    #: The files of a finished cache (what :meth:`clear` removes, with ``png/``).
    LAYOUT_FILES = (CONFIG_FILE, IMAGES_FILE, SEGMENTS_FILE, FILES_FILE, ERRORS_FILE)

    def __init__(self, root: Optional[PathLike], config: RenderConfig, images: Union[ImageArray, np.ndarray],
                 segments: pd.DataFrame, files: pd.DataFrame, classes: List[str],
                 errors: Optional[pd.DataFrame] = None) -> None:
        self.root = None if root is None else Path(root)
        self.config = config
        self.images = images if isinstance(images, ImageArray) else ImageArray(np.asarray(images))
        self.segments = segments
        self.files = files
        self.classes = list(classes)
        self.errors = errors if errors is not None else pd.DataFrame(columns=["path", "error"])
        self.reused_files = 0

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        where = repr(str(self.root)) if self.root is not None else "in memory"
        return (f"ImageCache({where}, files={len(self.files)}, images={len(self.images)}, "
                f"shape={tuple(self.images.shape[1:])}, classes={len(self.classes)}, errors={len(self.errors)})")

    @staticmethod
    def is_complete(root: PathLike) -> bool:
        """True when ``root`` holds a finished cache (its ``config.json`` says so and its images exist)."""
        root = Path(root)
        meta = root / CONFIG_FILE
        if not meta.is_file() or not (root / IMAGES_FILE).is_file():
            return False
        try:
            return bool(json.loads(meta.read_text()).get("complete"))
        except ValueError:
            return False

    @staticmethod
    def clear(root: PathLike) -> None:
        """Remove a cache's files from ``root`` (its layout files, ``png/`` and any render in progress)."""
        root = Path(root)
        for name in ImageCache.LAYOUT_FILES:
            (root / name).unlink(missing_ok=True)
        shutil.rmtree(root / PNG_DIR, ignore_errors=True)
        for partial in root.glob(PARTIAL_PREFIX + "*"):
            shutil.rmtree(partial, ignore_errors=True)

    @classmethod
    def open(cls, root: PathLike) -> "ImageCache":
        """Open a finished cache folder (images are memory-mapped, not read).

        Caches of both layouts open: one plane per image, and the three
        channels stored by earlier versions.

        Raises
        ------
        DataError
            If ``root`` is not a finished specimg cache.
        """
        root = Path(root)
        meta_path = root / CONFIG_FILE
        if not meta_path.exists():
            raise DataError(f"{str(root)!r} is not a specimg image cache (no {CONFIG_FILE}). "
                            f"Create it with `specimg render INPUT --out {root}`.")
        meta = json.loads(meta_path.read_text())
        if not meta.get("complete"):
            raise DataError(f"The image cache {str(root)!r} is incomplete (a render was interrupted). "
                            "Run the same `specimg render` command again to finish it.")
        if meta.get("version") != CACHE_FORMAT_VERSION or meta.get("layout", 1) not in (1, LAYOUT):
            raise DataError(f"The image cache {str(root)!r} was written by another specimg version (format "
                            f"{meta.get('version')}, layout {meta.get('layout', 1)}; this one reads format "
                            f"{CACHE_FORMAT_VERSION}, layouts 1-{LAYOUT}). Render it again (`specimg render ... "
                            "--overwrite`).")
        images = ImageArray.open(root / IMAGES_FILE)
        str_cols = {"path": str, "abspath": str, "label": str, "group": str}
        files = pd.read_csv(root / FILES_FILE, dtype=str_cols, keep_default_na=False, na_values=[""])
        files["label"] = files["label"].astype(object).where(files["label"].notna(), None)
        segments = pd.read_csv(root / SEGMENTS_FILE)
        errors_path = root / ERRORS_FILE
        errors = pd.read_csv(errors_path, dtype=str) if errors_path.exists() else None
        if len(segments) != len(images):
            raise DataError(f"The image cache {str(root)!r} is corrupt: {len(images)} images but {len(segments)} "
                            "segment rows. Delete the folder and render again.")
        return cls(root, RenderConfig.from_dict(meta["render"]), images, segments, files, meta["classes"], errors)

    @classmethod
    def from_arrays(cls, root: PathLike, images: Union[np.ndarray, ImageArray], segments: pd.DataFrame,
                    files: pd.DataFrame, config: Optional[RenderConfig] = None) -> "ImageCache":
        """Write a cache from arrays you already have (tests, custom front ends).

        Images whose three channels are equal everywhere are stored as one
        plane each.

        Parameters
        ----------
        root : path
            Folder to write.
        images : np.ndarray or ImageArray [shape=(n_images, H, W, 3), dtype=uint8]
        segments : pd.DataFrame
            ``file_id, segment`` (``start``, ``end`` default to 0).
        files : pd.DataFrame
            ``file_id, path`` and optionally ``label``, ``group`` and others.
        config : RenderConfig, optional
            Recorded in ``config.json``.
        """
        arr = images if isinstance(images, ImageArray) else None
        if arr is None:
            raw = np.asarray(images)
            if raw.ndim != 4 or raw.shape[-1] != 3 or raw.dtype != np.uint8:
                raise DataError(f"images must be uint8 of shape (n, H, W, 3). Got {raw.dtype} {raw.shape}.")
            arr = ImageArray(raw)
        if len(segments) != len(arr):
            raise DataError(f"{len(arr)} images but {len(segments)} segment rows.")
        segments = segments.copy()
        for col in ("start", "end"):
            if col not in segments:
                segments[col] = 0.0
        files = files.copy()
        if "label" not in files:
            files["label"] = None
        files["label"] = files["label"].map(lambda v: None if v is None or v != v else str(v))
        if "group" not in files:
            files["group"] = files["path"]
        if "abspath" not in files:
            files["abspath"] = files["path"]
        if "duration" not in files:
            files["duration"] = 0.0
        return _write_cache(Path(root), config or RenderConfig(), [arr], segments, files, None)

    # ------------------------------------------------------------------ new caches from this one
    def select(self, files: Union[Sequence[int], np.ndarray, pd.Series]) -> "ImageCache":
        """The cache restricted to some of its files, in memory (nothing is read or written).

        Parameters
        ----------
        files : sequence of int, or boolean mask
            ``file_id`` values, or a boolean mask over the rows of
            :attr:`files`.

        Returns
        -------
        cache : ImageCache
            ``root=None``; its images are a view of this cache's file. The
            file ids and :attr:`classes` are kept; write it with
            :meth:`save`, or combine it with :meth:`concat`.

        Raises
        ------
        DataError
            A file id the cache does not hold, or a mask of the wrong length.
        """
        ids = self.files["file_id"].to_numpy()
        sel = np.asarray(files)
        if sel.dtype == bool:
            if sel.shape != (len(self.files),):
                raise DataError(f"ImageCache.select: a boolean mask must have one entry per file "
                                f"({len(self.files)}); got shape {sel.shape}.")
            keep = sel
        else:
            wanted = sel.astype(np.int64).ravel()
            unknown = sorted(set(wanted.tolist()) - set(ids.tolist()))
            if unknown:
                raise DataError(f"ImageCache.select: file id(s) {unknown[:10]} are not in the cache (its file ids "
                                f"are {int(ids.min()) if len(ids) else '-'}..{int(ids.max()) if len(ids) else '-'}). "
                                "Pass values of cache.files['file_id'] or a boolean mask over cache.files.")
            keep = np.isin(ids, wanted)
        rows = np.flatnonzero(np.isin(self.segments["file_id"].to_numpy(), ids[keep]))
        return ImageCache(None, self.config, self.images.select(rows),
                          self.segments.iloc[rows].reset_index(drop=True),
                          self.files[keep].reset_index(drop=True), self.classes)

    def concat(self, *others: "ImageCache", out: PathLike) -> "ImageCache":
        """This cache followed by others, written as a new cache folder.

        The caches must share their render config. The files keep their
        order (this cache's, then each other's) and are numbered again
        ``0 .. n_files - 1`` (``file_id`` is a file's row in ``files.csv``, as
        in a rendered cache; a rendered cache's own ids do not change). The
        classes are the sorted labels of all the files; errors are listed
        together.

        Parameters
        ----------
        *others : ImageCache
        out : path
            The new folder (written atomically: ``config.json`` last).

        Returns
        -------
        cache : ImageCache
            The new cache, opened.

        Examples
        --------
        >>> merged = train.concat(test.select(picked_ids), out="round2/cache")  # doctest: +SKIP
        """
        parts = (self,) + others
        for o in others:
            if not isinstance(o, ImageCache):
                raise ParameterError(f"ImageCache.concat takes image caches; got {type(o).__name__}.")
            if o.config.hash() != self.config.hash():
                diff = _config_diff(self.config.to_dict(), o.config.to_dict())
                raise DataError(f"ImageCache.concat: the caches were rendered with different configs "
                                f"({'; '.join(diff[:6])}), so their images are not comparable. Render them with one "
                                "config.")
        seg_parts, file_parts, offset = [], [], 0
        for c in parts:  # file ids become rows of files.csv, in order
            new_id = dict(zip(c.files["file_id"].to_numpy(dtype=np.int64).tolist(), range(offset, offset + len(c.files))))
            seg_parts.append(c.segments.assign(file_id=c.segments["file_id"].map(new_id).to_numpy()))
            file_parts.append(c.files.assign(file_id=np.arange(offset, offset + len(c.files))))
            offset += len(c.files)
        errors = pd.concat([c.errors for c in parts], ignore_index=True).drop_duplicates("path")
        files = pd.concat(file_parts, ignore_index=True)
        files["label"] = files["label"].astype(object).where(files["label"].notna(), None)
        return _write_cache(Path(out), self.config, [c.images for c in parts],
                            pd.concat(seg_parts, ignore_index=True), files, errors)

    def save(self, out: PathLike) -> "ImageCache":
        """Write this cache (e.g. a :meth:`select`) as a cache folder of its own; returns it opened."""
        return _write_cache(Path(out), self.config, [self.images], self.segments, self.files, self.errors)


def _write_cache(root: Path, config: RenderConfig, images: Sequence[ImageArray], segments: pd.DataFrame,
                 files: pd.DataFrame, errors: Optional[pd.DataFrame]) -> ImageCache:
    """Write a cache folder from image arrays (streamed, a block at a time) and its tables; ``config.json`` last."""
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).unlink(missing_ok=True)  # incomplete from here on
    hw = {a.shape[1:3] for a in images if len(a)}
    if len(hw) > 1:
        raise DataError(f"Cannot write one cache from images of different sizes {sorted(hw)}.")
    one_plane = all(a.planes == 1 or _channels_equal(a) for a in images)
    n = sum(len(a) for a in images)
    h, w = hw.pop() if hw else tuple(config.spectrogram.image_size)
    shape = (n, h, w) if one_plane else (n, h, w, 3)

    def blocks() -> Iterator[np.ndarray]:
        for a in images:
            for b in a.blocks():
                yield (b if b.ndim == 3 else b[..., 0]) if one_plane else expand_planes(b)

    _write_npy(root / IMAGES_FILE, shape, blocks())
    counts = segments.groupby("file_id").size()
    files = files.copy()
    files["n_segments"] = files["file_id"].map(counts).fillna(0).astype(int)
    front = [c for c in ("file_id", "path", "abspath", "label", "group", "n_segments", "duration") if c in files]
    files = files[front + [c for c in files.columns if c not in front]]
    _atomic_csv(segments[["file_id", "segment", "start", "end"]].reset_index(drop=True), root / SEGMENTS_FILE)
    _atomic_csv(files, root / FILES_FILE)
    errors = errors if errors is not None else pd.DataFrame(columns=["path", "error"])
    _atomic_csv(errors[["path", "error"]], root / ERRORS_FILE)
    classes = sort_labels(l for l in files["label"] if l is not None)
    _write_meta(root, config, classes, shape, len(files), len(errors))
    return ImageCache.open(root)


def _channels_equal(images: ImageArray) -> bool:
    """True when every stored image's three channels are the same plane (read a block at a time)."""
    for b in images.blocks():
        if not (np.array_equal(b[..., 0], b[..., 1]) and np.array_equal(b[..., 0], b[..., 2])):
            return False
    return True


def _write_npy(path: Path, shape: Tuple[int, ...], blocks: Iterable[np.ndarray]) -> None:
    """An ``.npy`` of ``shape`` from blocks of rows, written to a temporary file then moved into place."""
    with _atomic_path(path, ".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": tuple(shape)})
            written = 0
            for block in blocks:
                fh.write(np.ascontiguousarray(block, dtype=np.uint8).tobytes())
                written += len(block)
        if written != shape[0]:
            raise DataError(f"internal: {written} image rows written for a file of {shape[0]}")


def _write_meta(root: Path, config: RenderConfig, classes: List[str], shape: Sequence[int], n_files: int,
                n_errors: int) -> None:
    meta = {
        "version": CACHE_FORMAT_VERSION,
        "layout": LAYOUT,
        "hash": config.hash(),
        "render": config.to_dict(),
        "classes": classes,
        "n_images": int(shape[0]),
        "image_shape": [int(shape[1]), int(shape[2]), 3],
        "stored_planes": 1 if len(shape) == 3 else 3,
        "n_files": int(n_files),
        "n_errors": int(n_errors),
        "complete": True,
    }
    atomic_write_text(root / CONFIG_FILE, json.dumps(meta, indent=2))


# --------------------------------------------------------------------------- rendering a dataset
def _key(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def _png_name(path: str, i: int) -> str:
    stem = os.path.splitext(path)[0].replace("/", "__").replace("\\", "__")
    return f"{stem}_{i:03d}.png"


def _write_pngs(planes: np.ndarray, folder: Path, path: str) -> None:
    """PNG copies of one file's images: grayscale when one plane is stored (the channels are copies)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(planes):
        with _atomic_path(folder / _png_name(path, i), ".png") as tmp:
            Image.fromarray(np.ascontiguousarray(img)).save(tmp, format="PNG", compress_level=1)


def expected_windows(path: PathLike, config: RenderConfig, label: Optional[str]) -> int:
    """How many windows a file will give, from its header (-1 when the header cannot say).

    Decoding keeps ``round(duration * sr)`` frames after ``round(offset * sr)``,
    resampling gives ``ceil(n * rate / sr)`` samples (librosa), and padding
    extends them to ``config.min_samples``: :func:`~specimg.audio.segment_bounds`
    of that length. A file that decodes to another length is still rendered
    (into a shard of its own).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            frames, sr = int(f.frames), int(f.samplerate)
    except Exception:  # unreadable here: the render says why
        return -1
    a, seg = config.audio, config.segment
    n = frames - int(round(a.offset * sr))
    if a.duration is not None:
        n = min(n, int(round(a.duration * sr)))
    if frames <= 0 or n <= 0:
        return -1
    if sr != a.sample_rate:
        n = int(np.ceil(n * (float(a.sample_rate) / sr)))
    if a.pad_mode != "none":
        n = max(n, config.min_samples)
    if n < int(round(seg.seconds * a.sample_rate)):
        return -1
    return len(segment_bounds(n, sr=a.sample_rate, seconds=seg.seconds, hop=seg.hop_for(label), last=seg.last))


#: Where the rows of an .npy start and what one row is, per file (a worker parses the header once).
_TARGETS: Dict[str, Tuple[int, Tuple[int, ...]]] = {}


def _npy_layout(path: Union[str, Path]) -> Tuple[int, Tuple[int, ...]]:
    """(byte offset of row 0, shape of one row) of a C-ordered uint8 ``.npy`` file."""
    key = str(path)
    if key not in _TARGETS:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(fh)
            _TARGETS[key] = (fh.tell(), tuple(int(s) for s in shape[1:]))
    return _TARGETS[key]


def _map_rows(path: Union[str, Path], first: int, n: int) -> np.ndarray:
    """Rows ``[first, first + n)`` of an ``.npy`` mapped writable on their own: a process holds one file's
    pages at a time, so its memory does not grow with the cache."""
    offset, row = _npy_layout(path)
    return np.memmap(path, dtype=np.uint8, mode="r+", offset=offset + first * int(np.prod(row)), shape=(n, *row))


def _read_rows(path: Union[str, Path], rows: np.ndarray, data_offset: Optional[int] = None,
               row: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    """Rows of a uint8 ``.npy`` read with plain reads, one per run of consecutive rows (nothing stays mapped)."""
    if data_offset is None or row is None:
        data_offset, row = _npy_layout(path)
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), *row), dtype=np.uint8)
    row_bytes = int(np.prod(row))
    with open(path, "rb") as fh:
        starts = np.concatenate([[0], np.flatnonzero(np.diff(rows) != 1) + 1, [len(rows)]])
        for a, b in zip(starts[:-1], starts[1:]):
            if b > a:
                fh.seek(data_offset + int(rows[a]) * row_bytes)
                fh.readinto(memoryview(out[a:b]).cast("B"))
    return out


def _target_rows(target: Optional[Tuple[str, int, int]]) -> Optional[np.ndarray]:
    return None if target is None else _map_rows(*target)


def _render_job(abspath: str, path: str, label: Optional[str], config: RenderConfig, shard_dir: str,
                png_dir: Optional[str], target: Optional[Tuple[str, int, int]] = None) -> Dict[str, Any]:
    """Render one file (runs in a worker process): straight into its planned rows of the partial images.npy
    (``target``: file, first row, rows) when it has as many windows as planned, else into a shard of its own.
    Returns the file's record (its windows' bounds, its row), which the parent appends to ``done.jsonl``."""
    key = _key(path)
    try:
        y = _load(abspath, config)
        rows = _target_rows(target)
        planes, bounds = render_planes(y, config=config, label=label, path=abspath, out=rows)
    except Exception as exc:  # an unexpected decoder failure must not cost the batch its work
        return {"ok": False, "path": path, "error": failure_reason(exc)}
    shard = Path(shard_dir)
    in_place = rows is not None and planes is rows
    if not in_place:
        _atomic_npy(planes, shard / f"{key}.npy")
    if png_dir is not None:
        _write_pngs(planes, Path(png_dir) / (label if label is not None else "unlabelled"), path)
    record = {"path": path, "label": label, "duration": len(y) / float(config.audio.sample_rate),
              "bounds": bounds.tolist(), "row": target[1] if in_place else None}  # type: ignore[index]
    return {"ok": True, "path": path, "record": record}  # the parent records it: the file is done


@dataclass
class _Plan:
    """Where each input file's images go: rows ``[offset, offset + n)`` of the partial images.npy."""

    shard_dir: Path
    table: pd.DataFrame  # path, abspath, label, kind ('reuse' / 'render'), n (-1: unknown), offset (-1: none)
    stored: Tuple[int, ...]  # one image as stored: (H, W) or (H, W, 3)

    @property
    def images(self) -> Path:
        return self.shard_dir / IMAGES_FILE

    @property
    def n_rows(self) -> int:
        return int(self.table["n"].clip(lower=0).sum())

    @property
    def journal(self) -> Path:
        return self.shard_dir / DONE_FILE

    def records(self) -> Dict[str, Dict[str, Any]]:
        """path -> record of each finished file, from ``done.jsonl`` (a line cut by a kill is not a record; a
        file rendered off the plan counts only with its shard)."""
        out: Dict[str, Dict[str, Any]] = {}
        if self.journal.exists():
            for line in self.journal.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("row") is not None or (self.shard_dir / f"{_key(rec['path'])}.npy").exists():
                    out[rec["path"]] = rec
        return out


def _make_plan(shard_dir: Path, table: pd.DataFrame, config: RenderConfig, previous: Optional[ImageCache],
               reuse: Dict[str, int]) -> _Plan:
    """Plan every file's rows from the headers and preallocate images.npy; a resumed run keeps an equal plan."""
    counts = previous.files.set_index("file_id")["n_segments"] if previous is not None else None
    kinds, ns = [], []
    for a, p, l in zip(table["abspath"], table["path"], table["label"]):
        if p in reuse:
            kinds.append("reuse")
            ns.append(int(counts[reuse[p]]))  # type: ignore[index]
        else:
            kinds.append("render")
            ns.append(expected_windows(a, config, l))
    n = np.asarray(ns, dtype=np.int64)
    offsets = np.where(n >= 0, np.concatenate([[0], np.cumsum(n.clip(min=0))[:-1]]), -1)
    frame = pd.DataFrame({"path": table["path"].to_numpy(), "label": table["label"].to_numpy(), "kind": kinds,
                          "n": n, "offset": offsets})
    h, w = config.spectrogram.image_size
    plan = _Plan(shard_dir, frame.assign(abspath=table["abspath"].to_numpy()),
                 (h, w) if config.spectrogram.channels == "replicate" else (h, w, 3))
    plan_csv = shard_dir / PLAN_FILE
    if plan_csv.exists() and plan.images.exists():
        old = pd.read_csv(plan_csv, dtype={"path": str, "label": str}, keep_default_na=False, na_values=[""])
        old["label"] = old["label"].astype(object).where(old["label"].notna(), None)
        if old[["path", "kind", "n", "offset"]].equals(frame[["path", "kind", "n", "offset"]]) and \
                list(old["label"]) == list(frame["label"]):
            return plan  # the same run again: its finished rows stand
    shards = [r for r in plan.records().values() if r.get("row") is None]  # still valid: in their own files
    for stale in (plan_csv, plan.images):
        stale.unlink(missing_ok=True)
    atomic_write_text(plan.journal, "".join(json.dumps(r) + "\n" for r in shards))  # rows of another plan: gone
    if plan.n_rows:
        _preallocate(plan.images, (plan.n_rows, *plan.stored))
    else:  # no file's length is known in advance: every file gets a shard
        _atomic_npy(np.zeros((0, *plan.stored), np.uint8), plan.images)
    _atomic_csv(frame, plan_csv)  # after images.npy: a plan.csv vouches for its file
    return plan


def _preallocate(path: Path, shape: Tuple[int, ...]) -> None:
    """An ``.npy`` of zeros the workers fill in place, its disk space reserved now: a full disk is a clear error
    before any work, not a worker killed by SIGBUS when it writes."""
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    size = int(mm.offset) + int(mm.nbytes)
    del mm
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                path.unlink(missing_ok=True)
                raise DataError(f"Not enough disk space for the image cache in {str(path.parent.parent)!r}: its "
                                f"images need {size / 2**20:.1f} MiB ({shape[0]} images of {shape[1:]} bytes). Free "
                                "some space or render into another --out folder.") from None
            # another error (a file system without fallocate): the file stays sparse, filled as written


def _copy_reused(plan: _Plan, previous: Optional[ImageCache], reuse: Dict[str, int]) -> None:
    """Reused files' planes from the previous cache into their planned rows."""
    if previous is None or not reuse:
        return
    rows_of = previous.segments.groupby("file_id").indices
    for p, off, n in plan.table.loc[plan.table["kind"] == "reuse", ["path", "offset", "n"]].itertuples(index=False):
        block = previous.images.read(rows_of[reuse[p]])
        target = _map_rows(plan.images, int(off), int(n))
        target[:] = block if block.ndim == len(plan.stored) + 1 else block[..., 0]
        del target


def _validate_against_data(table: pd.DataFrame, config: RenderConfig) -> None:
    from ..audio import audio_duration

    labels = set(l for l in table["label"] if l is not None)
    unknown = sorted(set(config.segment.class_hop) - labels)
    if unknown:
        known = ", ".join(sort_labels(labels)) if labels else "none (the input is unlabelled)"
        raise ParameterError(f"--class-hop names label(s) {unknown} that no file has. Known labels: {known}. "
                             "Fix the label spelling in --class-hop LABEL=SECONDS.")
    if config.audio.pad_mode == "none":
        longest = 0.0
        for p in table["abspath"]:
            try:
                longest = max(longest, audio_duration(p) - config.audio.offset)
            except AudioError:
                continue
        if longest and longest < config.segment.seconds:
            raise ParameterError(
                f"The window (seconds={config.segment.seconds}) is longer than every file (the longest lasts "
                f"{longest:.3f} s) and padding is off (pad_mode='none'). Use a window <= {longest:.3f} s or "
                "pad_mode='tile'.")


def _previous_cache(root: Path, config: RenderConfig, overwrite: bool) -> Optional[ImageCache]:
    """The finished cache already in ``root`` with this config (to reuse), after refusing or clearing another."""
    meta_path = root / CONFIG_FILE
    if not meta_path.exists():
        return None
    old = json.loads(meta_path.read_text())
    if old.get("hash") != config.hash() or old.get("version") != CACHE_FORMAT_VERSION:
        if not overwrite:
            diff = _config_diff(old.get("render", {}), config.to_dict()) or ["cache format version"]
            raise ParameterError(
                f"The cache {str(root)!r} was rendered with another config ({'; '.join(diff[:6])}). Its images "
                "would be stale: choose another --out folder, or pass --overwrite (overwrite=True) to replace it.")
        ImageCache.clear(root)
        return None
    return ImageCache.open(root) if old.get("complete") else None


def render_dataset(
    source: Union[PathLike, pd.DataFrame],
    out_dir: PathLike,
    config: Optional[RenderConfig] = None,
    *,
    workers: int = 1,
    png: bool = False,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> ImageCache:
    """Render every file of a dataset into an image cache.

    Each file's spectrogram is computed once and its windows sliced from
    it. The images file is preallocated from the files' headers and each
    worker writes its file's images straight into their rows (one plane
    per image when the channels are copies), so nothing is copied twice.
    Finished files are recorded as they finish, so re-running the same call
    after a crash resumes where it stopped; files already in a finished
    cache with the same config are reused, so adding files renders only
    the new ones. Two calls on one folder at once (two folds' commands
    started side by side) take turns on a lock held on the folder: the
    second waits, then reuses the first one's cache (on Linux and macOS;
    Windows has no such lock, so there they must not overlap).

    Parameters
    ----------
    source : str, path or DataFrame
        A CSV (``path,label[,group]``), a class-folder tree or a folder of
        audio; see :func:`specimg.audio.read_table`.
    out_dir : path
        The cache folder.
    config : RenderConfig, optional
        Defaults to ``RenderConfig()`` (22.05 kHz, 20 s windows, hop 10 s,
        128-band mel, 512x512x3).
    workers : int >= 1
        Processes rendering in parallel.
    png : bool
        Also write PNG images under ``out_dir/png/<label>/`` (grayscale when
        the channels are copies).
    strict : bool
        Stop at the first bad file instead of listing it in ``errors.csv``.
    overwrite : bool
        Replace a cache rendered with another config instead of refusing.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    cache : ImageCache

    Raises
    ------
    ParameterError
        Bad options, found before any work starts.
    AudioError
        With ``strict=True``, the first bad file.
    DataError
        When no file at all could be rendered.

    Examples
    --------
    >>> cfg = RenderConfig(audio=AudioConfig(sample_rate=8000),
    ...                    segment=SegmentConfig(seconds=1.0, hop=0.5),
    ...                    spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128)))
    >>> cache = render_dataset("fsdd/labels.csv", "cache/fsdd", cfg, workers=2)  # doctest: +SKIP
    """
    config = config or RenderConfig()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"The 'workers' parameter of render_dataset must be an int >= 1. Got {workers!r}.")
    table = read_table(source)
    _validate_against_data(table, config)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _folder_lock(root):  # a second render of this folder (another fold's command) waits, then reuses it
        return _render_locked(table, root, config, workers=workers, png=png, strict=strict, overwrite=overwrite,
                              progress=progress)


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on the folder ``root`` itself (no lock file is left in it).

    Where the platform has no ``fcntl`` (Windows) nothing is locked: two renders of one folder at once are
    then not supported.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _render_locked(table: pd.DataFrame, root: Path, config: RenderConfig, *, workers: int, png: bool, strict: bool,
                   overwrite: bool, progress: bool) -> ImageCache:
    """:func:`render_dataset` once its options are checked and it holds the folder's lock."""
    previous = _previous_cache(root, config, overwrite)
    h = config.hash()
    for stale in root.glob(PARTIAL_PREFIX + "*"):
        if stale.name != PARTIAL_PREFIX + h:
            shutil.rmtree(stale, ignore_errors=True)

    reuse = _reusable(previous, table)
    if previous is not None and len(reuse) == len(table) == len(previous.files) and previous.errors.empty:
        previous.reused_files = len(previous.files)
        return previous  # nothing to do: the same files, the same config

    shard_dir = root / (PARTIAL_PREFIX + h)
    shard_dir.mkdir(exist_ok=True)
    errors: Dict[str, str] = {}
    _TARGETS.clear()
    try:
        plan = _make_plan(shard_dir, table, config, previous, reuse)
        _copy_reused(plan, previous, reuse)
        _run_jobs(plan, config, workers=workers, png_dir=str(root / PNG_DIR) if png else None, strict=strict,
                  progress=progress, errors=errors)
        cache = _finish(root, plan, table, config, previous, reuse, errors)
    finally:
        _TARGETS.clear()  # the .npy headers this process parsed: the next render may plan other files
    if png and previous is not None:
        _write_reused_pngs(cache, reuse)
    shutil.rmtree(shard_dir, ignore_errors=True)
    cache.reused_files = len(reuse)
    if errors:
        _logger.warning("specimg render: %d file(s) could not be rendered (listed in %s):\n%s%s", len(errors),
                        root / ERRORS_FILE, "\n".join(f"  {p}: {e}" for p, e in list(errors.items())[:20]),
                        f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else "")
    return cache


def _reusable(previous: Optional[ImageCache], table: pd.DataFrame) -> Dict[str, int]:
    """path -> file id in the previous cache, for the input's files it holds with the same label."""
    if previous is None:
        return {}
    prev_label = dict(zip(previous.files["path"], previous.files["label"]))
    prev_id = dict(zip(previous.files["path"], previous.files["file_id"]))
    return {p: int(prev_id[p]) for p, l in zip(table["path"], table["label"]) if p in prev_id and prev_label[p] == l}


def _run_jobs(plan: _Plan, config: RenderConfig, *, workers: int, png_dir: Optional[str], strict: bool,
              progress: bool, errors: Dict[str, str]) -> None:
    """Render the planned files not finished yet, in this process or a pool of ``workers``."""
    images, finished = str(plan.images), plan.records()
    todo = []
    for p, a, l, kind, n, off in plan.table[["path", "abspath", "label", "kind", "n", "offset"]].itertuples(
            index=False):
        if kind == "render" and p not in finished:
            todo.append((a, p, l, (images, int(off), int(n)) if n >= 0 else None))
    shard = str(plan.shard_dir)
    bar = progress_bar(total=len(todo), desc="render", unit="file", disable=not progress or not todo, file=sys.stderr)
    journal = open(plan.journal, "a", encoding="utf-8")
    if journal.tell() and not plan.journal.read_bytes().endswith(b"\n"):
        journal.write("\n")  # a line cut by a kill stays a line of its own (not a record)
    try:
        if workers == 1 or len(todo) <= 1:
            for a, p, l, target in todo:
                _collect(_render_job(a, p, l, config, shard, png_dir, target), errors, strict, journal)
                bar.update(1)
            return
        warm_up(config)  # librosa's lazy imports, the window and filterbank: once here, inherited by forked workers
        # a worker that dies (out of memory, a decoder crash) costs only its file, named in errors.csv
        jobs = [(a, p, l, config, shard, png_dir, t) for a, p, l, t in todo]
        for i, res in pool_map(_render_job, jobs, workers=workers, window=4):
            if isinstance(res, str):  # WORKER_DIED
                res = {"ok": False, "path": todo[i][1], "error": res}
            _collect(res, errors, strict, journal)
            bar.update(1)
    finally:
        bar.close()
        journal.close()


def _collect(res: Dict[str, Any], errors: Dict[str, str], strict: bool, journal: Any) -> None:
    """Record a finished file (one line, flushed: a killed run keeps it) or its error."""
    if res["ok"]:
        journal.write(json.dumps(res["record"]) + "\n")
        journal.flush()
    else:
        errors[res["path"]] = res["error"]
        if strict:
            raise AudioError(res["path"], res["error"] + " (stopped by --strict; drop --strict to skip bad files)")


def _write_reused_pngs(cache: ImageCache, reuse: Dict[str, int]) -> None:
    rows_of = cache.segments.groupby("file_id").indices  # file_id -> image rows, one pass
    for _, row in cache.files.iterrows():
        folder = cache.root / PNG_DIR / (row["label"] if row["label"] is not None else "unlabelled")  # type: ignore[operator]
        rows = rows_of.get(row["file_id"], [])
        missing = [i for i in range(len(rows)) if not (folder / _png_name(row["path"], i)).exists()]
        if missing:
            planes = cache.images.planes_of(np.asarray(rows))
            _write_pngs(planes, folder, row["path"])


def _finish(root: Path, plan: _Plan, table: pd.DataFrame, config: RenderConfig, previous: Optional[ImageCache],
            reuse: Dict[str, int], errors: Dict[str, str]) -> ImageCache:
    """The cache from the plan: the partial images.npy moved into place when every planned row is there in
    order, else rewritten without the failed files' rows; then the tables and ``config.json``, last."""
    prev_rows = previous.segments.groupby("file_id").indices if previous is not None else {}
    prev_files = previous.files.set_index("path") if previous is not None else None
    finished = plan.records()
    parts = []  # (table row, ('rows', offset, n) or ('shard', path), meta)
    for i, (p, kind, n, off) in enumerate(plan.table[["path", "kind", "n", "offset"]].itertuples(index=False)):
        if p in errors:
            continue
        if kind == "reuse":
            pseg = previous.segments.iloc[prev_rows[reuse[p]]]  # type: ignore[union-attr]
            meta = {"duration": float(prev_files.loc[p, "duration"]),  # type: ignore[union-attr]
                    "bounds": pseg[["start", "end"]].to_numpy().tolist()}
            parts.append((i, ("rows", int(off), int(n)), meta))
            continue
        meta = finished.get(p)
        if meta is None:
            errors.setdefault(p, "was not rendered (the run was interrupted); run the same command again")
        elif meta.get("row") is None:
            parts.append((i, ("shard", plan.shard_dir / f"{_key(p)}.npy"), meta))
        else:
            parts.append((i, ("rows", int(meta["row"]), len(meta["bounds"])), meta))
    if not parts:
        _atomic_csv(pd.DataFrame({"path": list(errors), "error": list(errors.values())}), root / ERRORS_FILE)
        raise DataError(f"No file could be rendered (see {root / ERRORS_FILE}); first error: "
                        f"{next(iter(errors.items())) if errors else 'the input is empty'}.")
    n_total = sum(len(m["bounds"]) for _, _, m in parts)
    shape = (n_total, *plan.stored)
    (root / CONFIG_FILE).unlink(missing_ok=True)
    in_order = n_total == plan.n_rows and all(src[0] == "rows" for _, src, _ in parts) and \
        [src[1] for _, src, _ in parts] == list(np.cumsum([0] + [src[2] for _, src, _ in parts])[:-1])
    if in_order:
        _move_into_place(plan.images, root / IMAGES_FILE)  # the workers' rows are the cache: no second copy
    else:
        _write_npy(root / IMAGES_FILE, shape, _part_blocks(plan, parts))
    seg_rows, file_rows = [], []
    for file_id, (i, _, meta) in enumerate(parts):
        for s, (a, b) in enumerate(meta["bounds"]):
            seg_rows.append((file_id, s, round(float(a), 6), round(float(b), 6)))
        row = table.iloc[i].to_dict()
        row.update(file_id=file_id, n_segments=len(meta["bounds"]), duration=round(float(meta["duration"]), 6))
        file_rows.append(row)
    segments = pd.DataFrame(seg_rows, columns=["file_id", "segment", "start", "end"])
    files = pd.DataFrame(file_rows)
    front = ["file_id", "path", "abspath", "label", "group", "n_segments", "duration"]
    files = files[front + [c for c in files.columns if c not in front]]
    _atomic_csv(segments, root / SEGMENTS_FILE)
    _atomic_csv(files, root / FILES_FILE)
    _atomic_csv(pd.DataFrame({"path": list(errors), "error": list(errors.values())}), root / ERRORS_FILE)
    classes = sort_labels(l for l in files["label"] if l is not None)
    _write_meta(root, config, classes, shape, len(files), len(errors))
    return ImageCache.open(root)


def _part_blocks(plan: _Plan, parts: List[Tuple[int, tuple, Dict[str, Any]]]) -> Iterator[np.ndarray]:
    """Each finished file's planes in table order, from the partial images.npy or its own shard."""
    for _, src, _ in parts:
        if src[0] == "rows":
            yield _read_rows(plan.images, np.arange(src[1], src[1] + src[2]))
        else:
            yield np.load(src[1])
