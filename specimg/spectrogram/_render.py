"""Rendering a dataset into an image cache, resumably (:func:`render_dataset`); the finished cache is written
through :mod:`specimg.spectrogram._store`, which owns the folder's layout.

While it runs, the cache folder holds ``.partial-<hash>/`` (:data:`~specimg.spectrogram._store.PARTIAL_PREFIX`)::

    plan.csv       each file's rows (:data:`PLAN_FILE`)
    images.npy     preallocated from the files' lengths, filled in place by the workers
    done.jsonl     one line per finished file, appended when it is finished (:data:`DONE_FILE`)
    <key>.npy      a shard for a file whose window count was not known in advance
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
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from .._io import atomic_path as _atomic_path
from .._io import atomic_save_npy as _atomic_npy
from .._io import atomic_write_csv as _atomic_csv
from .._io import PathLike, atomic_write_text
from .._io import config_diff as _config_diff
from .._io import move_into_place as _move_into_place
from .._parallel import failure_reason, pool_map
from .._progress import progress_bar
from .._validation import check_int
from ..audio import read_table, segment_bounds, sort_labels
from ..exceptions import AudioError, DataError, ParameterError
from ._config import CACHE_FORMAT_VERSION, RenderConfig
from ._image import _load, render_planes, warm_up
from ._store import CONFIG_FILE, ERRORS_FILE, IMAGES_FILE, PARTIAL_PREFIX, PNG_DIR, ImageCache
from ._store import _forget_npy_layouts, _map_rows, _read_rows, _write_npy, _write_tables

__all__ = ["render_dataset", "expected_windows"]

_logger = logging.getLogger(__name__)

#: Inside ``.partial-<hash>/``: each file's planned rows, and a line per finished file.
PLAN_FILE = "plan.csv"
DONE_FILE = "done.jsonl"


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


def _render_job(abspath: str, path: str, label: Optional[str], config: RenderConfig, shard_dir: str,
                png_dir: Optional[str], target: Optional[Tuple[str, int, int]] = None) -> Dict[str, Any]:
    """Render one file (runs in a worker process): straight into its planned rows of the partial images.npy
    (``target``: file, first row, rows) when it has as many windows as planned, else into a shard of its own.
    Returns the file's record (its windows' bounds, its row), which the parent appends to ``done.jsonl``."""
    key = _key(path)
    try:
        y = _load(abspath, config)
        rows = None if target is None else _map_rows(*target)
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

    Each worker writes its file's images straight into their rows of the preallocated images file (the
    layout: :mod:`specimg.spectrogram._store`). Finished files are recorded as they finish, so the same call
    after a crash resumes where it stopped; files already in a finished cache with the same config are
    reused. Two calls on one folder take turns on ``<out_dir>.lock`` in its parent (a
    :class:`filelock.FileLock`, which stays: removing a lock others wait on would let two renders in at once).

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
    check_int(workers, "workers", owner="render_dataset", low=1)
    table = read_table(source)
    _validate_against_data(table, config)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    with _folder_lock(root):  # a second render of this folder (another fold's command) waits, then reuses it
        return _render_locked(table, root, config, workers=workers, png=png, strict=strict, overwrite=overwrite,
                              progress=progress)


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    """Hold ``<root>.lock``, beside the cache folder (outside its layout) and of its resolved path (two spellings
    of one folder share one lock), waiting while another render holds it; the lock file stays when released."""
    from filelock import FileLock  # imported when a render starts, not with the package

    root = root.resolve()
    with FileLock(str(root.with_name(root.name + ".lock"))):
        yield


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
    _forget_npy_layouts()
    try:
        plan = _make_plan(shard_dir, table, config, previous, reuse)
        _copy_reused(plan, previous, reuse)
        _run_jobs(plan, config, workers=workers, png_dir=str(root / PNG_DIR) if png else None, strict=strict,
                  progress=progress, errors=errors)
        cache = _finish(root, plan, table, config, previous, reuse, errors)
    finally:
        _forget_npy_layouts()  # the .npy headers this process parsed: the next render may plan other files
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
        if workers > 1 and len(todo) > 1:
            warm_up(config)  # librosa's lazy imports, the window and filterbank: once here, inherited by the workers
        # a worker that dies (out of memory, a decoder crash) costs only its file, named in errors.csv
        jobs = [(a, p, l, config, shard, png_dir, t) for a, p, l, t in todo]
        for i, res in pool_map(_render_job, jobs, workers=workers if len(todo) > 1 else 1, window=4):
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
    return _write_tables(root, config, shape, segments, pd.DataFrame(file_rows),
                         pd.DataFrame({"path": list(errors), "error": list(errors.values())}))


def _part_blocks(plan: _Plan, parts: List[Tuple[int, tuple, Dict[str, Any]]]) -> Iterator[np.ndarray]:
    """Each finished file's planes in table order, from the partial images.npy or its own shard."""
    for _, src, _ in parts:
        if src[0] == "rows":
            yield _read_rows(plan.images, np.arange(src[1], src[1] + src[2]))
        else:
            yield np.load(src[1])
