"""A self-contained evaluation report folder: what the task lays out (:mod:`specimg.tasks`)::

    metrics.json        the task's scores plus the title and any `extra`
    per_class.csv       per class: precision, recall, f1, support (single-label; multi-label also AP,
                        ROC-AUC and the threshold)
    confusion.csv/.png  single-label: the confusion matrix (rows = true class), as a table and a heat map
    recall.png          single-label: per-class recall bar plot (the mean is the UAR)
    pr_curves.png       multi-label: one precision-recall curve per class (AP in its title, threshold marked)
    predictions.csv     file-level predictions (when `paths` is given)
    examples/*.png      single-label: spectrogram images of correct and wrong files (when `images` is given)
    report.md | report.html

The folder is staged and moved into place whole, ``report.md`` (or ``.html``) last: a failure part-way leaves
the previous report (or nothing). Plots use matplotlib's Agg canvas directly: no global backend is changed.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .._io import PathLike, atomic_folder, atomic_write, atomic_write_text
from .._validation import check_int
from ..exceptions import DataError, ParameterError, SpecimgError
from ..tasks import ReportSection, SingleLabel, Task

__all__ = ["write_report", "plot_confusion", "plot_recall", "plot_pr_curves"]

ImageSource = Union[Mapping[str, np.ndarray], Callable[[str], np.ndarray]]

_logger = logging.getLogger(__name__)


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Any, path: PathLike) -> Path:
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"), ".png")
    return Path(path)


def plot_confusion(
    confusion: Any,
    classes: Sequence[str],
    path: Union[str, "os.PathLike[str]"],
    *,
    normalize: bool = False,
    title: Optional[str] = None,
) -> Path:
    """Save a confusion matrix as an annotated heat map (PNG).

    Parameters
    ----------
    confusion : np.ndarray [shape=(n_classes, n_classes)]
        Counts; rows are true classes, columns predicted classes.
    classes : sequence of str [shape=(n_classes,)]
    path : str or path-like
        Output PNG.
    normalize : bool
        If True, colour and annotate each cell by its share of the row (the
        recall of that true class), with the count underneath; otherwise
        colour and annotate by counts.
    title : str, optional

    Returns
    -------
    Path
        ``path``.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise DataError(f"The 'confusion' argument of plot_confusion must have shape ({k}, {k}). Got {cm.shape}.")
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) if normalize else cm
    size = max(4.0, 0.55 * k + 2.0)
    fig = _new_figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1.0 if normalize else max(1.0, float(cm.max())))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(classes, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticklabels(classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    if k <= 30:
        threshold = (1.0 if normalize else max(1.0, float(cm.max()))) / 2.0
        fontsize = 9 if k <= 12 else 6
        for i in range(k):
            for j in range(k):
                text = f"{shown[i, j]:.2f}\n({int(cm[i, j])})" if normalize else str(int(cm[i, j]))
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if shown[i, j] > threshold else "black",
                )
    return _save_figure(fig, path)


def plot_recall(
    recall: Sequence[float],
    classes: Sequence[str],
    path: Union[str, "os.PathLike[str]"],
    *,
    title: Optional[str] = None,
) -> Path:
    """Save a bar plot of the per-class recall, with the UAR (their mean) as a dashed line.

    Parameters
    ----------
    recall : sequence of float [shape=(n_classes,)]
    classes : sequence of str [shape=(n_classes,)]
    path : str or path-like
        Output PNG.
    title : str, optional

    Returns
    -------
    Path
        ``path``.
    """
    r = np.asarray(recall, dtype=np.float64)
    if r.shape != (len(classes),):
        raise DataError(f"The 'recall' argument of plot_recall must have shape ({len(classes)},). Got {r.shape}.")
    fig = _new_figure(max(4.0, 0.45 * len(classes) + 2.0), 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(range(len(classes)), r, color="tab:blue")
    if len(r):
        ax.axhline(float(r.mean()), color="tab:red", linestyle="--", label=f"UAR {r.mean():.3f}")
        ax.legend(loc="lower right")
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    if title:
        ax.set_title(title)
    return _save_figure(fig, path)


def plot_pr_curves(y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], out: PathLike, *,
                   thresholds: Optional[Sequence[float]] = None, ap: Optional[Sequence[Optional[float]]] = None
                   ) -> Path:
    """One precision-recall curve per class in a grid (up to 6 columns), saved as a PNG.

    Parameters
    ----------
    y_true : np.ndarray [shape=(n, n_classes)]
        Multi-hot truth.
    scores : np.ndarray [shape=(n, n_classes)]
    classes : sequence of str
    out : path
    thresholds : sequence of float or None
        Marked on each curve (the operating point).
    ap : sequence of float or None
        Shown in the panel titles.
    """
    from sklearn.metrics import precision_recall_curve

    n = len(classes)
    cols = min(6, max(1, n))
    rows = int(math.ceil(n / cols))
    fig = _new_figure(2.6 * cols, 2.4 * rows)
    for j, c in enumerate(classes):
        ax = fig.add_subplot(rows, cols, j + 1)
        y = np.asarray(y_true)[:, j] > 0.5
        title = str(c)
        if y.any():
            p, r, t = precision_recall_curve(y, np.asarray(scores)[:, j])
            ax.step(r, p, where="post", color="tab:blue")
            if thresholds is not None and len(t):
                k = int(np.argmin(np.abs(t - thresholds[j])))
                ax.plot([r[k]], [p[k]], "o", color="tab:red", markersize=4)
            if ap is not None and ap[j] is not None:
                title += f"  AP {ap[j]:.3f}"
        else:
            ax.text(0.5, 0.5, "no positive", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.tick_params(labelsize=7)
        if j % cols == 0:
            ax.set_ylabel("precision", fontsize=8)
        if j >= (rows - 1) * cols:
            ax.set_xlabel("recall", fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, out)


def _lookup_image(images: ImageSource, path: str) -> Any:
    if callable(images):
        return images(path)
    return images.get(path) if hasattr(images, "get") else (images[path] if path in images else None)


def _check_image(img: Any, path: str) -> Optional[np.ndarray]:
    if img is None:
        return None
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise DataError(
            f"The image given for {path!r} in 'images' of write_report must be a uint8 array of shape (H, W, 3) "
            f"or (H, W). Got dtype {arr.dtype} and shape {arr.shape}."
        )
    return arr


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return name[-80:] or "file"


def _write_examples(
    out_dir: Path,
    images: ImageSource,
    paths: List[str],
    labels: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    n_examples: int,
    not_drawn: List[Dict[str, str]],
) -> List[Dict[str, Any]]:
    """Save the example images; a file whose image cannot be made goes to ``not_drawn`` (path, reason)."""
    from PIL import Image

    examples: List[Dict[str, Any]] = []
    correct = labels == pred
    for kind, mask in (("correct", correct), ("wrong", ~correct)):
        idx = np.flatnonzero(mask)
        # Most confident first: confident mistakes are the most instructive; ties keep file order.
        idx = idx[np.argsort(-confidence[idx], kind="stable")]
        taken = 0
        for i in idx:
            if taken >= n_examples:
                break
            try:
                found = _lookup_image(images, paths[i])
            except (SpecimgError, OSError, ValueError) as exc:  # e.g. its audio is gone: draw the next one
                reason = getattr(exc, "reason", None) or str(exc)
                not_drawn.append({"path": paths[i], "reason": reason})
                _logger.warning("report: no example image for %s: %s", paths[i], reason)
                continue
            img = _check_image(found, paths[i])  # a wrong type is the caller's bug: an error
            if img is None:
                continue
            rel = Path("examples") / f"{kind}_{taken}_{_safe_name(paths[i])}.png"
            pil = Image.fromarray(np.ascontiguousarray(img))
            atomic_write(out_dir / rel, lambda tmp, pil=pil: pil.save(tmp, format="PNG"), ".png")
            examples.append(
                {
                    "kind": kind,
                    "path": paths[i],
                    "label": str(labels[i]),
                    "prediction": str(pred[i]),
                    "confidence": float(confidence[i]),
                    "image": rel.as_posix(),
                }
            )
            taken += 1
    return examples


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.4f}"
    return str(x)


def _md(text: Any) -> str:
    """Escape a value for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pd.DataFrame) -> List[str]:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md(_fmt(v)) for v in row) + " |")
    return lines


def _markdown(title: str, headline: List[Tuple[str, Any]], sections: List[ReportSection],
              examples: List[Dict[str, Any]], extra: Optional[Mapping[str, Any]], not_drawn: List[Dict[str, str]],
              missing: Mapping[str, str]) -> str:
    lines = [f"# {title}", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {_md(k)} | {_md(_fmt(v))} |" for k, v in headline]
    if extra:
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in extra.items()]
    for sec in sections:
        lines += ["", f"## {sec.title}", ""]
        if sec.table is not None:
            lines += _md_table(sec.table) + [""]
        lines += list(sec.lines)
        lines += [f"![{alt}]({name})" for name, alt in sec.figures]
    lines.append("")
    if examples:
        lines += ["## Examples", ""]
        for ex in examples:
            lines.append(f"**{ex['kind']}** `{ex['path']}`: true {ex['label']}, predicted {ex['prediction']} "
                         f"({ex['confidence']:.2f})  ")
            lines += [f"![{ex['kind']} {ex['path']}]({ex['image']})", ""]
    if not_drawn:
        lines += ["## Not drawn", "", f"{len(not_drawn)} example image(s) could not be made:", ""]
        lines += [f"- `{_md(d['path'])}`: {_md(d['reason'])}" for d in not_drawn] + [""]
    if missing:
        lines += ["## Not scored", "", f"{len(missing)} labelled file(s) have no prediction:", ""]
        lines += [f"- `{_md(p)}`: {_md(r)}" for p, r in missing.items()] + [""]
    return "\n".join(lines) + "\n"


def _html_table(frame: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{rows}</table>"


def _html(title: str, headline: List[Tuple[str, Any]], sections: List[ReportSection],
          examples: List[Dict[str, Any]], extra: Optional[Mapping[str, Any]], not_drawn: List[Dict[str, str]],
          missing: Mapping[str, str]) -> str:
    e = html.escape
    rows = [f"<tr><td>{e(str(k))}</td><td>{e(_fmt(v))}</td></tr>" for k, v in headline]
    if extra:
        rows += [f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in extra.items()]
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}figure{display:inline-block;margin:4px}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        "<table><tr><th>metric</th><th>value</th></tr>" + "".join(rows) + "</table>",
    ]
    for sec in sections:
        parts.append(f"<h2>{e(sec.title)}</h2>")
        if sec.table is not None:
            parts.append(_html_table(sec.table))
        parts += [f"<p>{e(line)}</p>" for line in sec.lines]
        parts += [f'<p><img src="{e(name)}" alt="{e(alt)}"></p>' for name, alt in sec.figures]
    if examples:
        parts.append("<h2>Examples</h2>")
        for ex in examples:
            caption = (f"{e(ex['kind'])}: {e(ex['path'])}<br>true {e(ex['label'])}, predicted "
                       f"{e(ex['prediction'])} ({ex['confidence']:.2f})")
            img = f'<img src="{e(ex["image"])}" alt="{e(ex["path"])}">'
            parts.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
    for heading, items in (("Not drawn", [(d["path"], d["reason"]) for d in not_drawn]),
                           ("Not scored", list(missing.items()))):
        if items:
            parts.append(f"<h2>{heading}</h2><ul>"
                         + "".join(f"<li><code>{e(str(p))}</code>: {e(str(r))}</li>" for p, r in items) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_report(
    out_dir: Union[str, "os.PathLike[str]"],
    y_true: Sequence[Any],
    probs: Any,
    classes: Sequence[Any],
    *,
    task: Optional[Task] = None,
    decision: Optional[Mapping[str, Any]] = None,
    level: str = "file",
    paths: Optional[Sequence[Any]] = None,
    title: str = "specimg evaluation report",
    images: Optional[ImageSource] = None,
    format: Literal["markdown", "html"] = "markdown",
    extra: Optional[Mapping[str, Any]] = None,
    normalize: bool = False,
    n_examples: int = 4,
    missing: Optional[Mapping[str, str]] = None,
) -> Path:
    """Write an evaluation report folder for file-level (or window-level) predictions.

    Parameters
    ----------
    out_dir : str or path-like
        Folder to write into (created if needed; existing report files are replaced).
    y_true : sequence [shape=(n_files,)] or np.ndarray [shape=(n_files, n_classes)]
        True labels, each one of ``classes`` (single-label), or multi-hot tag rows / tag lists (multi-label).
    probs : np.ndarray [shape=(n_files, n_classes)]
        Probabilities (or, multi-label, independent scores) in ``classes`` column order.
    classes : sequence of str [shape=(n_classes,)]
    task : Task or None
        Whose scores, tables and figures the report shows (:mod:`specimg.tasks`); ``None``: single-label, or
        multi-label when ``y_true`` is 2-D.
    decision : mapping or None
        The task's decision rule (a multi-label run's ``thresholds.json``; 0.5 per class without).
    level : {'file', 'window'}
        What the rows are (multi-label: which thresholds apply).
    paths : sequence of str [shape=(n_files,)], optional
        The files; needed for ``predictions.csv`` and for example images.
    title : str
        Heading of the report.
    images : mapping or callable, optional
        ``path -> np.ndarray [shape=(H, W, 3), dtype=uint8]``, a file's spectrogram image: the most confident
        correct and wrong files are saved under ``examples/`` and shown (single-label; needs ``paths``).
    format : {"markdown", "html"}
        Writes ``report.md`` or ``report.html``; plots are linked by relative path.
    extra : mapping, optional
        More facts to record (backbone, run folder, ...): stored under
        ``"extra"`` in ``metrics.json`` and listed in the report's table.
    normalize : bool
        Colour ``confusion.png`` by row-normalised share (recall) instead of counts.
    n_examples : int >= 0
        Example images per kind (correct, wrong). A file whose image cannot
        be made (``images`` raises a specimg error or an ``OSError``) is
        skipped for the next one and listed under "Not drawn".
    missing : mapping, optional
        ``path -> reason`` of labelled files that have no prediction (not
        scored); listed under "Not scored" and in ``metrics.json``.

    Returns
    -------
    Path
        The report file (``out_dir/report.md`` or ``out_dir/report.html``).

    Raises
    ------
    ParameterError
        ``format`` or ``n_examples`` is invalid, or ``out_dir`` is a file.
    DataError
        A label is not in ``classes``, shapes disagree, ``images`` is given
        without ``paths``, or an image is not a uint8 array.

    Examples
    --------
    >>> import tempfile
    >>> out = write_report(tempfile.mkdtemp(), ["a", "b"], [[0.9, 0.1], [0.6, 0.4]], ["a", "b"])
    >>> out.name
    'report.md'
    """
    if format not in ("markdown", "html"):
        raise ParameterError(f"The 'format' parameter of write_report must be 'markdown' or 'html'. Got {format!r}.")
    check_int(n_examples, "n_examples", owner="write_report", low=0)
    if images is not None and paths is None:
        raise DataError(
            "write_report was given 'images' but no 'paths'; pass paths=... so images can be looked up by file."
        )
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ParameterError(
            f"The report folder {str(out_dir)!r} (out_dir, --report) is an existing file, not a folder. Give the path "
            "of a folder to write the report into, e.g. --report report/."
        )
    names = [str(c) for c in classes]
    if task is None:
        task = SingleLabel() if np.asarray(y_true, dtype=object).ndim == 1 else Task.for_kind("multi-label")
    truth = np.asarray(y_true, dtype=np.float64) if np.asarray(y_true, dtype=object).ndim == 2 else \
        task.truth_of(list(y_true), names)
    p = np.asarray(probs, dtype=np.float64)
    metrics = task.evaluation_metrics(truth, p, names, decision, level)
    pred = np.asarray(task.decide(p, names, decision, level), dtype=object)
    path_list: Optional[List[str]] = None
    if paths is not None:
        path_list = [str(x) for x in paths]
        if len(path_list) != len(p):
            raise DataError(f"The 'paths' argument of write_report must have {len(p)} entries. Got {len(path_list)}.")
    parts = _Parts(task, names, truth, p, pred, metrics, path_list)
    out = Path(out_dir)
    report_name = "report.md" if format == "markdown" else "report.html"
    # the report file comes last (its presence means the folder is complete); the old examples go, other files stay
    with atomic_folder(out, last=(report_name,), stale=("examples",)) as stage:
        parts.write(stage, title=title, images=images, format=format, extra=extra, normalize=normalize,
                    n_examples=n_examples, missing=dict(missing or {}))
    return out / report_name


class _Parts:
    """Every part of one report: the task's tables, figures and sections, the predictions, the examples."""

    def __init__(self, task: Task, names: List[str], truth: np.ndarray, p: np.ndarray, pred: np.ndarray,
                 metrics: Dict[str, Any], paths: Optional[List[str]]) -> None:
        self.task, self.names, self.truth, self.p, self.pred = task, names, truth, p, pred
        self.metrics, self.paths = metrics, paths

    def _figure(self, name: str, out: Path, normalize: bool) -> None:
        m = self.metrics
        if name == "confusion.png":
            plot_confusion(m["confusion"], self.names, out / name, normalize=normalize, title="confusion matrix")
        elif name == "recall.png":
            plot_recall([m["per_class"][c]["recall"] for c in self.names], self.names, out / name,
                        title="per-class recall")
        elif name == "pr_curves.png":
            plot_pr_curves(self.truth, self.p, self.names, out / name, thresholds=m["thresholds"],
                           ap=[m["per_class"][c]["ap"] for c in self.names])
        else:  # pragma: no cover - a task naming a figure this module cannot draw
            raise ParameterError(f"write_report cannot draw {name!r} (a task's report section names it).")

    def _predictions(self) -> pd.DataFrame:
        out = pd.DataFrame({"path": self.paths})
        if self.task.truth_column == "labels":
            out["labels"] = [";".join(c for c, v in zip(self.names, row) if v > 0.5) for row in self.truth]
        else:
            out["label"] = [str(v) for v in self.truth]
        out["prediction"] = list(self.pred)
        out[[f"prob_{c}" for c in self.names]] = self.p
        return out

    def write(self, out: Path, *, title: str, images: Optional[ImageSource], format: str,
              extra: Optional[Mapping[str, Any]], normalize: bool, n_examples: int, missing: Dict[str, str]) -> None:
        task, metrics = self.task, self.metrics
        atomic_write_text(out / "per_class.csv", task.per_class_table(metrics).to_csv(index=False))
        for name, table in task.report_tables(metrics).items():
            atomic_write_text(out / name, table.to_csv())
        if self.paths is not None:
            atomic_write_text(out / "predictions.csv", self._predictions().to_csv(index=False))
        sections = task.report_sections(metrics)
        for sec in sections:
            for name, _ in sec.figures:
                self._figure(name, out, normalize)
        examples: List[Dict[str, Any]] = []
        not_drawn: List[Dict[str, str]] = []
        if task.example_images and images is not None and self.paths is not None and n_examples > 0:
            examples = _write_examples(out, images, self.paths, self.truth, self.pred, self.p.max(axis=1),
                                       n_examples, not_drawn)
        record = dict(metrics)
        record.update(title=title, examples=examples, not_drawn=not_drawn,
                      missing=[{"path": k, "reason": v} for k, v in missing.items()])
        if extra:
            record["extra"] = _jsonable(dict(extra))
        atomic_write_text(out / "metrics.json", json.dumps(_jsonable(record), indent=2) + "\n")
        render = _markdown if format == "markdown" else _html
        text = render(title, task.headline(metrics), sections, examples, extra, not_drawn, missing)
        atomic_write_text(out / ("report.md" if format == "markdown" else "report.html"), text)
