"""The image cache's array store: the layout, the images and the cache object of a *finished* cache (rendering
one is :mod:`specimg.spectrogram._render`).

Layout of a cache folder (every name is defined once, here: :data:`CONFIG_FILE`, :data:`IMAGES_FILE` ...)::

    config.json    resolved RenderConfig, its hash, classes, counts, layout; written last
    images.npy     uint8, opened as a memmap: one plane per image, [shape=(n_images, H, W)], when the
                   three channels are copies (channels='replicate'); [shape=(n_images, H, W, 3)] otherwise,
                   and in caches written before the one-plane layout (both open)
    segments.csv   file_id, segment, start, end  (row i <-> images[i])
    files.csv      file_id, path, abspath, label, group, n_segments, duration, + the input's extra columns
    errors.csv     path, error  (files that could not be rendered)
    png/           optional PNG copies for people to look at
    .partial-<hash>/  a render in progress (:data:`PARTIAL_PREFIX`)

Every write is atomic, ``config.json`` last: a folder without it is not a cache.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .._io import atomic_path as _atomic_path
from .._io import atomic_write_csv as _atomic_csv
from .._io import PathLike, atomic_write_text
from .._io import config_diff as _config_diff
from ..audio import sort_labels
from ..exceptions import DataError, ParameterError
from ._config import CACHE_FORMAT_VERSION, RenderConfig
from ._image import expand_planes

__all__ = ["ImageCache", "ImageArray"]

#: The files of a finished cache folder.
CONFIG_FILE = "config.json"
IMAGES_FILE = "images.npy"
SEGMENTS_FILE = "segments.csv"
FILES_FILE = "files.csv"
ERRORS_FILE = "errors.csv"
PNG_DIR = "png"
#: A render in progress: ``.partial-<config hash>/`` (its contents are :mod:`specimg.spectrogram._render`'s).
PARTIAL_PREFIX = ".partial-"
#: 1: images.npy always (n, H, W, 3); 2: (n, H, W) when the channels are copies. Both open.
LAYOUT = 2
#: Rows copied at a time when a cache is written from another (memory stays flat).
_CHUNK_BYTES = 64 << 20


# --------------------------------------------------------------------------- the images
class ImageArray:
    """A cache's images as a read-only ``(n_images, H, W, 3)`` uint8 array, however they are stored.

    Indexing with an int, a slice, an int array or a boolean mask reads only those rows into a new ndarray
    (``(H, W, 3)`` for an int); a one-plane store (``(n, H, W)``) is expanded to three identical channels when
    read. A memory-mapped store pickles as its file name and is mapped again in each process.

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
        How many of ``files`` the :func:`render_dataset` call that returned this cache reused from the finished
        cache in its folder; 0 for a cache from :meth:`open` or :meth:`select`.
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
        segments = segments.assign(**{c: 0.0 for c in ("start", "end") if c not in segments})
        defaults = {"label": None, "group": files["path"], "abspath": files["path"], "duration": 0.0}
        files = files.assign(**{c: v for c, v in defaults.items() if c not in files})
        files["label"] = files["label"].map(lambda v: None if v is None or v != v else str(v))
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

        The caches must share their render config. The files keep their order and are numbered again
        ``0 .. n_files - 1`` (their rows of ``files.csv``, as in a rendered cache); errors are listed together.

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
    return _write_tables(root, config, shape, segments, files, errors)


def _write_tables(root: Path, config: RenderConfig, shape: Tuple[int, ...], segments: pd.DataFrame,
                  files: pd.DataFrame, errors: Optional[pd.DataFrame]) -> ImageCache:
    """The tables of a cache folder whose ``images.npy`` (of ``shape``) is in place, then ``config.json`` (last:
    from then on the folder is a cache); returns it opened. ``files`` holds ``n_segments`` already."""
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


# --------------------------------------------------------------------------- rows of an .npy
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


def _forget_npy_layouts() -> None:
    """Drop the parsed ``.npy`` headers (a render's partial files are planned again by the next render)."""
    _TARGETS.clear()


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
