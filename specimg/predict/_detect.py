"""Detections on long recordings: window scores -> (start, end, class, score) rows, Raven export, matching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .._io import PathLike, atomic_folder, atomic_write_text
from ..audio import parse_events, read_table
from ..exceptions import DataError

__all__ = ["detect", "to_raven", "write_raven", "write_detections", "match_detections", "evaluate_detections",
           "DETECTION_COLUMNS"]

#: The columns of a detection table.
DETECTION_COLUMNS = ["path", "start", "end", "class", "score"]


def _thresholds(thresholds: Any, classes: Sequence[str]) -> np.ndarray:
    if isinstance(thresholds, Mapping):
        missing = [c for c in classes if c not in thresholds]
        if missing:
            raise DataError(f"The thresholds name no value for class(es) {missing[:10]}. Give one per class (a "
                            "run's thresholds.json 'window' entry), or one number for all.")
        return np.array([float(thresholds[c]) for c in classes])
    t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (len(classes),)).copy()
    if not np.isfinite(t).all():
        raise DataError(f"The detection thresholds must be finite numbers. Got {thresholds!r}.")
    return t


def detect(segments: pd.DataFrame, classes: Sequence[str], thresholds: Union[float, Sequence[float],
           Mapping[str, float]] = 0.5, *, merge: bool = True) -> pd.DataFrame:
    """The detection table of window scores.

    Parameters
    ----------
    segments : pd.DataFrame [shape=(n_windows, ...)]
        ``path, start, end, prob_<class>...`` (``specimg predict --segments``
        output, or a run's ``oof_segments.csv``).
    classes : sequence of str
        The classes to detect (their ``prob_`` columns must be there).
    thresholds : float, sequence or mapping class -> float
        A window whose score is ``>=`` its class's threshold is a detection.
    merge : bool
        Merge overlapping or touching detected windows of a class into one
        detection (start of the first, end of the last, the best score);
        ``False``: one row per detected window.

    Returns
    -------
    detections : pd.DataFrame
        ``path, start, end, class, score``, sorted by path, start, class.

    Examples
    --------
    >>> seg = pd.DataFrame({"path": "a.wav", "start": [0.0, 0.5, 1.0, 1.5], "end": [1.0, 1.5, 2.0, 2.5],
    ...                     "prob_x": [0.9, 0.7, 0.1, 0.8]})
    >>> detect(seg, ["x"], 0.5).values.tolist()
    [['a.wav', 0.0, 1.5, 'x', 0.9], ['a.wav', 1.5, 2.5, 'x', 0.8]]
    """
    names = [str(c) for c in classes]
    cols = [f"prob_{c}" for c in names]
    missing = [c for c in ["path", "start", "end", *cols] if c not in segments.columns]
    if missing:
        raise DataError(f"detect needs the window table's columns path, start, end and prob_<class>; {missing[:5]} "
                        "are missing. Predict with --segments (segments=True).")
    t = _thresholds(thresholds, names)
    rows: List[Dict[str, Any]] = []
    for path, g in segments.groupby(segments["path"].astype(str), sort=False):
        g = g.sort_values("start", kind="stable")
        start, end = g["start"].to_numpy(dtype=float), g["end"].to_numpy(dtype=float)
        scores = g[cols].to_numpy(dtype=float)
        for j, c in enumerate(names):
            runs: List[List[float]] = []  # [start, end, best score] of each detection
            for i in np.flatnonzero(scores[:, j] >= t[j]):
                if merge and runs and start[i] <= runs[-1][1] + 1e-9:
                    runs[-1][1], runs[-1][2] = max(runs[-1][1], end[i]), max(runs[-1][2], scores[i, j])
                else:
                    runs.append([start[i], end[i], scores[i, j]])
            rows += [{"path": path, "start": a, "end": b, "class": c, "score": s} for a, b, s in runs]
    out = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    order = {p: i for i, p in enumerate(dict.fromkeys(segments["path"].astype(str)))}
    idx = np.lexsort((out["class"].map({c: i for i, c in enumerate(names)}).to_numpy(), out["start"].to_numpy(),
                      out["path"].map(order).to_numpy()))
    return out.iloc[idx].reset_index(drop=True)


def to_raven(detections: pd.DataFrame, *, high_freq: float = 0.0, low_freq: float = 0.0) -> pd.DataFrame:
    """A detection table as a Raven selection table (one selection per detection, ``Begin Path`` = its file).

    Parameters
    ----------
    detections : pd.DataFrame
        From :func:`detect`.
    high_freq, low_freq : float
        The frequency band of every selection in Hz (Raven needs one; use
        the Nyquist frequency of the run's sample rate for the whole band).

    Returns
    -------
    pd.DataFrame
        ``Selection, View, Channel, Begin Time (s), End Time (s), Low Freq (Hz),
        High Freq (Hz), Begin Path, Annotation, Score``.
    """
    d = detections.reset_index(drop=True)
    return pd.DataFrame({"Selection": np.arange(1, len(d) + 1), "View": "Spectrogram 1", "Channel": 1,
                         "Begin Time (s)": d["start"].astype(float).round(6),
                         "End Time (s)": d["end"].astype(float).round(6), "Low Freq (Hz)": float(low_freq),
                         "High Freq (Hz)": float(high_freq), "Begin Path": d["path"].astype(str),
                         "Annotation": d["class"].astype(str), "Score": d["score"].astype(float).round(6)})


def write_raven(detections: pd.DataFrame, out: PathLike, *, high_freq: float = 0.0) -> Path:
    """Write :func:`to_raven` as a tab-separated selection table (atomically); returns ``out``."""
    out = Path(out)
    atomic_write_text(out, to_raven(detections, high_freq=high_freq).to_csv(sep="\t", index=False))
    return out


def _events(annotations: pd.DataFrame) -> pd.DataFrame:
    """``path, start, end, label`` rows of an annotation table, raw or from :func:`~specimg.audio.read_table`."""
    if "events" in annotations.columns:
        rows = [(str(p), a, b, t) for p, v in zip(annotations["path"], annotations["events"])
                for a, b, t in parse_events(v)]
        return pd.DataFrame(rows, columns=["path", "start", "end", "label"])
    missing = [c for c in ("path", "start", "end", "label") if c not in annotations.columns]
    if missing:
        raise DataError(f"match_detections needs an annotation table (path,start,end,label, or read_table's "
                        f"events); {missing} are missing.")
    ann = annotations[annotations["label"].notna()]
    return pd.DataFrame({"path": ann["path"].astype(str), "start": ann["start"].astype(float),
                         "end": ann["end"].astype(float), "label": ann["label"].astype(str)})


def match_detections(detections: pd.DataFrame, annotations: pd.DataFrame, *,
                     min_overlap: float = 0.0) -> Dict[str, Any]:
    """Precision and recall of detections against annotated events.

    Per file and class, detections are taken best score first; each
    matches the unmatched event of its class it overlaps most (by more than
    ``min_overlap`` seconds). A matched detection is a true positive, an
    unmatched one a false alarm; an event no detection matched is missed.

    Parameters
    ----------
    detections : pd.DataFrame
        ``path, start, end, class, score`` (:func:`detect`).
    annotations : pd.DataFrame
        ``path, start, end, label`` rows, or a file table with ``events``.
    min_overlap : float
        Seconds of overlap a match needs (exclusive).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1``, ``n_detections``, ``n_events``,
        ``true_positives`` and ``per_class`` (the same per class).
    """
    ev = _events(annotations)
    per: Dict[str, Dict[str, int]] = {}
    for c in sorted(set(ev["label"]) | set(detections["class"].astype(str))):
        per[c] = {"tp": 0, "n_det": 0, "n_ev": int((ev["label"] == c).sum())}
    det = detections.assign(path=detections["path"].astype(str), cls=detections["class"].astype(str))
    for (path, c), g in det.groupby(["path", "cls"], sort=False):
        e = ev[(ev["path"] == path) & (ev["label"] == c)]
        used = np.zeros(len(e), dtype=bool)
        es, ee = e["start"].to_numpy(dtype=float), e["end"].to_numpy(dtype=float)
        for _, d in g.sort_values("score", ascending=False, kind="stable").iterrows():
            per[c]["n_det"] += 1
            ov = np.minimum(ee, float(d["end"])) - np.maximum(es, float(d["start"]))
            ov[used] = -np.inf
            if len(ov) and ov.max() > min_overlap:
                used[int(np.argmax(ov))] = True
                per[c]["tp"] += 1

    def prf(tp: int, n_det: int, n_ev: int) -> Dict[str, float]:
        p = tp / n_det if n_det else float("nan")
        r = tp / n_ev if n_ev else float("nan")
        f = 2 * p * r / (p + r) if n_det and n_ev and p + r > 0 else 0.0
        return {"precision": p, "recall": r, "f1": f, "true_positives": tp, "n_detections": n_det, "n_events": n_ev}

    tp, nd, ne = (sum(v[k] for v in per.values()) for k in ("tp", "n_det", "n_ev"))
    return {**prf(tp, nd, ne), "per_class": {c: prf(v["tp"], v["n_det"], v["n_ev"]) for c, v in per.items()}}


def write_detections(segments: pd.DataFrame, classes: Sequence[str], thresholds: Any, out: PathLike, *,
                     high_freq: float = 0.0) -> Dict[str, Path]:
    """Write ``<stem>_detections.csv`` and its Raven twin ``<stem>_detections.selections.txt`` beside ``out``.

    ``thresholds``: a run's ``thresholds.json`` dict (its ``window`` entry is
    used), a mapping class -> threshold, or one number.
    """
    from .._io import atomic_write_csv

    if isinstance(thresholds, Mapping) and "window" in thresholds:
        thresholds = thresholds["window"]
    det = detect(segments, classes, 0.5 if thresholds is None else thresholds)
    out = Path(out)
    table = out.with_name(out.stem + "_detections.csv")
    atomic_write_csv(det, table)
    raven = write_raven(det, out.with_name(out.stem + "_detections.selections.txt"), high_freq=high_freq)
    return {"detections": table, "raven": raven, "n": len(det)}  # type: ignore[dict-item]


def evaluate_detections(preds: Union[PathLike, pd.DataFrame], *, labels: Any = None,
                        report: Optional[PathLike] = None, title: str = "specimg evaluation") -> Dict[str, Any]:
    """Score a detection table (``path, start, end, class, score``) against the events of an annotation table
    (:func:`match_detections`); with ``report``, write ``metrics.json`` and ``report.md`` there (atomically).

    Raises
    ------
    DataError
        No ``labels``, or labels that are not an annotation table.
    """
    det = preds if isinstance(preds, pd.DataFrame) else pd.read_csv(preds, dtype={"path": str, "class": str})
    if labels is None:
        raise DataError("A detection table (path,start,end,class,score) is scored against an annotation table: "
                        "pass --labels ANNOTATIONS (labels=...).")
    truth = read_table(labels) if not isinstance(labels, pd.DataFrame) else labels
    if "events" not in truth.columns:
        raise DataError("The labels of a detection table must be an annotation table (path,start,end,label or a "
                        "Raven selection table).")
    m = {"task": "detection", **match_detections(det, truth)}
    if report is not None:
        lines = [f"# {title}", "", f"{m['n_detections']} detections, {m['n_events']} annotated events.", "",
                 f"precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['f1']:.4f}", "",
                 "| class | precision | recall | F1 | detections | events |", "|---|---|---|---|---|---|"]
        for c, v in m["per_class"].items():
            lines.append(f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['n_detections']} "
                         f"| {v['n_events']} |")
        with atomic_folder(report, last=("report.md", "report.html")) as stage:
            (stage / "metrics.json").write_text(json.dumps(m, indent=2, default=lambda v: None) + "\n")
            (stage / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return m


def detection_line(m: Mapping[str, Any]) -> str:
    """The line ``specimg evaluate`` prints for a detection table's scores."""
    return (f"{m['n_detections']} detections of {m['n_events']} events: precision {m['precision']:.4f}  "
            f"recall {m['recall']:.4f}  F1 {m['f1']:.4f}")
