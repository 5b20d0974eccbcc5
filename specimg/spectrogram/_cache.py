"""The image cache: rendering a dataset once, loading it fast for training.

Layout of a cache folder::

    config.json    resolved RenderConfig, its hash, classes, counts; written last
    images.npy     uint8 [shape=(n_images, H, W, 3)], opened as a memmap
    segments.csv   file_id, segment, start, end  (row i <-> images[i])
    files.csv      file_id, path, abspath, label, group, n_segments, duration, + the input's extra columns
    errors.csv     path, error  (files that could not be rendered)
    png/           optional PNG copies for people to look at
    .partial-<hash>/  per-file shards of a run in progress (removed when complete)

Every write is atomic (temporary file + ``os.replace``). A killed render
resumes from its shards; the finished cache equals an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .._io import atomic_save_npy as _atomic_npy
from .._io import atomic_write_csv as _atomic_csv
from .._io import atomic_write_text
from .._io import config_diff as _config_diff
from .._io import tmp_beside as _tmp_beside
from ..audio import audio_duration, read_table, sort_labels
from ..config import CACHE_FORMAT_VERSION, RenderConfig
from ..exceptions import AudioError, DataError, ParameterError
from .._parallel import failure_reason, single_threaded_worker
from .._progress import progress_bar
from ._image import render_file

__all__ = ["ImageCache", "render_dataset", "atomic_write_text"]

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- the cache
class ImageCache:
    """A rendered dataset: window images, their segment table and the config.

    Use :meth:`open` on a folder written by :func:`render_dataset`.

    Attributes
    ----------
    root : Path
    config : RenderConfig
    images : np.ndarray [shape=(n_images, H, W, 3), dtype=uint8]
        Read-only memmap; HWC, low frequencies at the bottom row.
    segments : pd.DataFrame
        ``file_id, segment, start, end``; row ``i`` describes ``images[i]``.
    files : pd.DataFrame
        One row per rendered file: ``file_id, path, abspath, label, group,
        n_segments, duration`` and the input's extra columns.
    classes : list of str
        Sorted labels (numeric-aware).
    errors : pd.DataFrame
        ``path, error`` of the files that could not be rendered.
    """

    def __init__(self, root: PathLike, config: RenderConfig, images: np.ndarray, segments: pd.DataFrame,
                 files: pd.DataFrame, classes: List[str], errors: Optional[pd.DataFrame] = None) -> None:
        self.root = Path(root)
        self.config = config
        self.images = images
        self.segments = segments
        self.files = files
        self.classes = list(classes)
        self.errors = errors if errors is not None else pd.DataFrame(columns=["path", "error"])

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (f"ImageCache({str(self.root)!r}, files={len(self.files)}, images={len(self.images)}, "
                f"shape={tuple(self.images.shape[1:])}, classes={len(self.classes)}, errors={len(self.errors)})")

    @staticmethod
    def is_complete(root: PathLike) -> bool:
        """True when ``root`` holds a finished cache."""
        meta = Path(root) / "config.json"
        if not meta.exists():
            return False
        try:
            return bool(json.loads(meta.read_text()).get("complete"))
        except ValueError:
            return False

    @classmethod
    def open(cls, root: PathLike) -> "ImageCache":
        """Open a finished cache folder (images are memory-mapped, not read).

        Raises
        ------
        DataError
            If ``root`` is not a finished specimg cache.
        """
        root = Path(root)
        meta_path = root / "config.json"
        if not meta_path.exists():
            raise DataError(f"{str(root)!r} is not a specimg image cache (no config.json). "
                            f"Create it with `specimg render INPUT --out {root}`.")
        meta = json.loads(meta_path.read_text())
        if not meta.get("complete"):
            raise DataError(f"The image cache {str(root)!r} is incomplete (a render was interrupted). "
                            "Run the same `specimg render` command again to finish it.")
        if meta.get("version") != CACHE_FORMAT_VERSION:
            raise DataError(f"The image cache {str(root)!r} was written by another specimg version (format "
                            f"{meta.get('version')}, this one reads {CACHE_FORMAT_VERSION}). Render it again.")
        images = np.load(root / "images.npy", mmap_mode="r")
        str_cols = {"path": str, "abspath": str, "label": str, "group": str}
        files = pd.read_csv(root / "files.csv", dtype=str_cols, keep_default_na=False, na_values=[""])
        files["label"] = files["label"].astype(object).where(files["label"].notna(), None)
        segments = pd.read_csv(root / "segments.csv")
        errors_path = root / "errors.csv"
        errors = pd.read_csv(errors_path, dtype=str) if errors_path.exists() else None
        if len(segments) != len(images):
            raise DataError(f"The image cache {str(root)!r} is corrupt: {len(images)} images but {len(segments)} "
                            "segment rows. Delete the folder and render again.")
        return cls(root, RenderConfig.from_dict(meta["render"]), images, segments, files, meta["classes"], errors)

    @classmethod
    def from_arrays(cls, root: PathLike, images: np.ndarray, segments: pd.DataFrame, files: pd.DataFrame,
                    config: Optional[RenderConfig] = None) -> "ImageCache":
        """Write a cache from arrays you already have (tests, custom front ends).

        Parameters
        ----------
        root : path
            Folder to write.
        images : np.ndarray [shape=(n_images, H, W, 3), dtype=uint8]
        segments : pd.DataFrame
            ``file_id, segment`` (``start``, ``end`` default to 0).
        files : pd.DataFrame
            ``file_id, path`` and optionally ``label``, ``group`` and others.
        config : RenderConfig, optional
            Recorded in ``config.json``.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise DataError(f"images must be uint8 of shape (n, H, W, 3). Got {images.dtype} {images.shape}.")
        if len(segments) != len(images):
            raise DataError(f"{len(images)} images but {len(segments)} segment rows.")
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
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
        counts = segments.groupby("file_id").size()
        files["n_segments"] = files["file_id"].map(counts).fillna(0).astype(int)
        if "duration" not in files:
            files["duration"] = 0.0
        config = config or RenderConfig()
        _atomic_npy(images, root / "images.npy")
        _atomic_csv(segments[["file_id", "segment", "start", "end"]], root / "segments.csv")
        _atomic_csv(files, root / "files.csv")
        classes = sort_labels(l for l in files["label"] if l is not None)
        _write_meta(root, config, classes, images.shape, len(files), 0)
        return cls.open(root)


def _write_meta(root: Path, config: RenderConfig, classes: List[str], shape: Sequence[int], n_files: int,
                n_errors: int) -> None:
    meta = {
        "version": CACHE_FORMAT_VERSION,
        "hash": config.hash(),
        "render": config.to_dict(),
        "classes": classes,
        "n_images": int(shape[0]),
        "image_shape": [int(s) for s in shape[1:]],
        "n_files": int(n_files),
        "n_errors": int(n_errors),
        "complete": True,
    }
    atomic_write_text(root / "config.json", json.dumps(meta, indent=2))


# --------------------------------------------------------------------------- rendering a dataset
def _key(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:20]


def _png_name(path: str, i: int) -> str:
    stem = os.path.splitext(path)[0].replace("/", "__").replace("\\", "__")
    return f"{stem}_{i:03d}.png"


def _render_job(abspath: str, path: str, label: Optional[str], config_dict: Dict[str, Any], shard_dir: str,
                png_dir: Optional[str]) -> Dict[str, Any]:
    """Render one file into its shard (runs in a worker process)."""
    config = RenderConfig.from_dict(config_dict)
    key = _key(path)
    try:
        images, bounds, duration = render_file(abspath, config=config, label=label)
    except Exception as exc:  # an unexpected decoder failure must not cost the batch its work
        return {"ok": False, "path": path, "error": failure_reason(exc)}
    shard = Path(shard_dir)
    if png_dir is not None:
        from PIL import Image

        folder = Path(png_dir) / (label if label is not None else "unlabelled")
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            target = folder / _png_name(path, i)
            tmp = _tmp_beside(target, ".png")
            Image.fromarray(img).save(tmp, format="PNG")
            os.replace(tmp, target)
    _atomic_npy(images, shard / f"{key}.npy")
    meta = {"path": path, "label": label, "duration": duration, "bounds": bounds.tolist()}
    atomic_write_text(shard / f"{key}.json", json.dumps(meta))  # written last: marks the shard complete
    return {"ok": True, "path": path}


def _validate_against_data(table: pd.DataFrame, config: RenderConfig) -> None:
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
    it. Finished files are kept as shards, so re-running the same call
    after a crash resumes where it stopped; files already in a finished
    cache with the same config are reused, so adding files renders only
    the new ones.

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
        Also write PNG images under ``out_dir/png/<label>/``.
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
    h = config.hash()
    meta_path = root / "config.json"
    previous: Optional[ImageCache] = None
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("hash") != h or old.get("version") != CACHE_FORMAT_VERSION:
            if not overwrite:
                diff = _config_diff(old.get("render", {}), config.to_dict()) or ["cache format version"]
                raise ParameterError(
                    f"The cache {str(root)!r} was rendered with another config ({'; '.join(diff[:6])}). Its images "
                    "would be stale: choose another --out folder, or pass --overwrite (overwrite=True) to replace it.")
            for name in ("config.json", "images.npy", "segments.csv", "files.csv", "errors.csv"):
                (root / name).unlink(missing_ok=True)
            shutil.rmtree(root / "png", ignore_errors=True)
        elif old.get("complete"):
            previous = ImageCache.open(root)
    for stale in root.glob(".partial-*"):
        if stale.name != f".partial-{h}":
            shutil.rmtree(stale, ignore_errors=True)
    shard_dir = root / f".partial-{h}"
    shard_dir.mkdir(exist_ok=True)

    reuse: Dict[str, int] = {}
    if previous is not None:
        prev_label = dict(zip(previous.files["path"], previous.files["label"]))
        prev_id = dict(zip(previous.files["path"], previous.files["file_id"]))
        for path, label in zip(table["path"], table["label"]):
            if path in prev_id and prev_label[path] == label:
                reuse[path] = int(prev_id[path])
        if len(reuse) == len(table) == len(previous.files) and (previous.errors is None or previous.errors.empty):
            return previous  # nothing to do: the same files, the same config

    todo = [(a, p, l) for a, p, l in zip(table["abspath"], table["path"], table["label"])
            if p not in reuse and not (shard_dir / f"{_key(p)}.json").exists()]
    png_dir = str(root / "png") if png else None
    cfg_dict = config.to_dict()
    errors: Dict[str, str] = {}
    bar = progress_bar(total=len(todo), desc="render", unit="file", disable=not progress or not todo, file=sys.stderr)
    try:
        if workers == 1 or len(todo) <= 1:
            for a, p, l in todo:
                res = _render_job(a, p, l, cfg_dict, str(shard_dir), png_dir)
                _collect(res, errors, strict)
                bar.update(1)
        else:
            import librosa  # noqa: F401  imported once here, inherited by forked workers instead of once each

            with ProcessPoolExecutor(max_workers=workers, initializer=single_threaded_worker) as pool:
                futures = [pool.submit(_render_job, a, p, l, cfg_dict, str(shard_dir), png_dir) for a, p, l in todo]
                try:
                    for fut in as_completed(futures):
                        _collect(fut.result(), errors, strict)
                        bar.update(1)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()

    cache = _consolidate(root, table, config, shard_dir, previous, reuse, errors)
    if png and previous is not None:
        _write_reused_pngs(cache, reuse)
    shutil.rmtree(shard_dir, ignore_errors=True)
    if errors:
        print(f"specimg render: {len(errors)} file(s) could not be rendered (listed in {root / 'errors.csv'}):",
              file=sys.stderr)
        for p, e in list(errors.items())[:20]:
            print(f"  {p}: {e}", file=sys.stderr)
        if len(errors) > 20:
            print(f"  ... and {len(errors) - 20} more", file=sys.stderr)
    return cache


def _collect(res: Dict[str, Any], errors: Dict[str, str], strict: bool) -> None:
    if not res["ok"]:
        errors[res["path"]] = res["error"]
        if strict:
            raise AudioError(res["path"], res["error"] + " (stopped by --strict; drop --strict to skip bad files)")


def _write_reused_pngs(cache: ImageCache, reuse: Dict[str, int]) -> None:
    from PIL import Image

    rows_of = cache.segments.groupby("file_id").indices  # file_id -> image rows, one pass
    for _, row in cache.files.iterrows():
        folder = cache.root / "png" / (row["label"] if row["label"] is not None else "unlabelled")
        rows = rows_of.get(row["file_id"], [])
        for i, r in enumerate(rows):
            target = folder / _png_name(row["path"], i)
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.asarray(cache.images[r])).save(target)


def _consolidate(root: Path, table: pd.DataFrame, config: RenderConfig, shard_dir: Path,
                 previous: Optional[ImageCache], reuse: Dict[str, int], errors: Dict[str, str]) -> ImageCache:
    """Merge shards (and reused images) into one memmap, in the input's order."""
    h, w = config.spectrogram.image_size
    plan = []  # (table row, source, meta)
    if previous is not None:
        prev_rows = previous.segments.groupby("file_id").indices  # file_id -> image rows, one pass
        prev_files = previous.files.set_index("path")
    for i, path in enumerate(table["path"]):
        if path in errors:
            continue
        if path in reuse:
            rows = prev_rows[reuse[path]]
            pseg = previous.segments.iloc[rows]
            meta = {"duration": float(prev_files.loc[path, "duration"]),
                    "bounds": pseg[["start", "end"]].to_numpy().tolist()}
            plan.append((i, ("prev", rows), meta))
            continue
        mj = shard_dir / f"{_key(path)}.json"
        if not mj.exists():
            errors.setdefault(path, "was not rendered (the run was interrupted); run the same command again")
            continue
        plan.append((i, ("shard", shard_dir / f"{_key(path)}.npy"), json.loads(mj.read_text())))
    if not plan:
        _atomic_csv(pd.DataFrame({"path": list(errors), "error": list(errors.values())}), root / "errors.csv")
        raise DataError(f"No file could be rendered (see {root / 'errors.csv'}); first error: "
                        f"{next(iter(errors.items())) if errors else 'the input is empty'}.")
    n_total = sum(len(m["bounds"]) for _, _, m in plan)
    tmp = _tmp_beside(root / "images.npy", ".npy")
    seg_rows, file_rows = [], []
    try:
        # Plain appends rather than a memmap: the process never holds more than one file's images, so its
        # memory does not grow with the dataset.
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": (n_total, h, w, 3)})
            for file_id, (i, (kind, src), meta) in enumerate(plan):
                block = np.asarray(previous.images[src]) if kind == "prev" else np.load(src)
                fh.write(np.ascontiguousarray(block, dtype=np.uint8).tobytes())
                for s, (a, b) in enumerate(meta["bounds"]):
                    seg_rows.append((file_id, s, round(float(a), 6), round(float(b), 6)))
                row = table.iloc[i].to_dict()
                row.update(file_id=file_id, n_segments=len(block), duration=round(float(meta["duration"]), 6))
                file_rows.append(row)
        os.replace(tmp, root / "images.npy")
    finally:
        tmp.unlink(missing_ok=True)
    segments = pd.DataFrame(seg_rows, columns=["file_id", "segment", "start", "end"])
    files = pd.DataFrame(file_rows)
    front = ["file_id", "path", "abspath", "label", "group", "n_segments", "duration"]
    files = files[front + [c for c in files.columns if c not in front]]
    _atomic_csv(segments, root / "segments.csv")
    _atomic_csv(files, root / "files.csv")
    _atomic_csv(pd.DataFrame({"path": list(errors), "error": list(errors.values())}), root / "errors.csv")
    classes = sort_labels(l for l in files["label"] if l is not None)
    _write_meta(root, config, classes, (n_total, h, w, 3), len(files), len(errors))
    return ImageCache.open(root)
