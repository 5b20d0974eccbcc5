"""The report of a multi-label evaluation: AP / ROC-AUC / F1 per class, precision-recall curves, tables.

:func:`write_multilabel_report` writes, into one folder::

    metrics.json      multilabel_metrics(...) plus the title and the files not scored
    per_class.csv     ap, roc_auc, precision, recall, f1 (at the threshold), threshold, support per class
    pr_curves.png     one precision-recall curve per class (AP in each title, the threshold marked)
    predictions.csv   path, labels, prediction, prob_<class>... (when ``paths`` is given)
    report.md | report.html

Like the single-label report it is made in a temporary folder beside the
target and moved in only when complete (``report.md`` last), and the plot
uses matplotlib's Agg canvas directly (no global backend is changed).
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from .._io import atomic_folder, atomic_write
from ..audio import tags_text

__all__ = ["write_multilabel_report", "plot_pr_curves"]

PathLike = Union[str, "os.PathLike[str]"]


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(classes)
    cols = min(6, max(1, n))
    rows = int(math.ceil(n / cols))
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
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
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"), ".png")
    return out


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _per_class(metrics: Dict[str, Any]) -> pd.DataFrame:
    rows = [{"class": c, **v} for c, v in metrics["per_class"].items()]
    return pd.DataFrame(rows, columns=["class", "ap", "roc_auc", "precision", "recall", "f1", "threshold",
                                       "support"])


def _markdown(title: str, metrics: Dict[str, Any], per_class: pd.DataFrame, missing: Dict[str, str]) -> str:
    m = metrics
    lines = [f"# {title}", "", f"{m['n_files']} files, {len(m['classes'])} classes (multi-label).", "",
             "| metric | value |", "|---|---|"]
    for key, name in (("macro_ap", "macro average precision"), ("micro_ap", "micro average precision"),
                      ("macro_roc_auc", "macro ROC-AUC"), ("macro_f1", "macro F1 at the thresholds"),
                      ("micro_f1", "micro F1 at the thresholds")):
        lines.append(f"| {name} | {_fmt(m[key])} |")
    lines += ["", "## Per class", "", "| class | AP | ROC-AUC | precision | recall | F1 | threshold | support |",
              "|---|---|---|---|---|---|---|---|"]
    for _, r in per_class.iterrows():
        lines.append(f"| {r['class']} | {_fmt(r['ap'])} | {_fmt(r['roc_auc'])} | {_fmt(r['precision'])} | "
                     f"{_fmt(r['recall'])} | {_fmt(r['f1'])} | {_fmt(r['threshold'])} | {int(r['support'])} |")
    lines += ["", "## Precision-recall curves", "", "![precision-recall curves](pr_curves.png)", ""]
    if missing:
        lines += ["## Not scored", ""] + [f"- `{p}`: {why}" for p, why in missing.items()] + [""]
    return "\n".join(lines)


def _html(title: str, markdown: str) -> str:
    body = []
    for line in markdown.splitlines():
        if line.startswith("![") and "](" in line:
            src = line[line.index("](") + 2:-1]
            body.append(f'<p><img src="{html.escape(src)}" alt="precision-recall curves"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("|") and not line.startswith("|---"):
            cells = "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|"))
            body.append(f"<tr>{cells}</tr>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    text, out, in_table = "\n".join(body), [], False
    for line in text.splitlines():
        if line.startswith("<tr>") and not in_table:
            out.append("<table>")
            in_table = True
        elif not line.startswith("<tr>") and in_table:
            out.append("</table>")
            in_table = False
        out.append(line)
    if in_table:
        out.append("</table>")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>" + \
        "\n".join(out) + "</body></html>"


def write_multilabel_report(out_dir: PathLike, y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str],
                            metrics: Dict[str, Any], *, paths: Optional[Sequence[str]] = None,
                            format: Literal["markdown", "html"] = "markdown", title: str = "specimg evaluation",
                            missing: Optional[Dict[str, str]] = None) -> Path:
    """Write the multi-label report folder (see the module docstring); returns it.

    Parameters
    ----------
    out_dir : path
    y_true : np.ndarray [shape=(n, n_classes)]
    scores : np.ndarray [shape=(n, n_classes)]
    classes : sequence of str
    metrics : dict
        From :func:`~specimg.scoring.multilabel_metrics`.
    paths : sequence of str or None
        The scored files (or windows), for ``predictions.csv``.
    format : {'markdown', 'html'}
    title : str
    missing : dict or None
        ``path -> reason`` of the labelled files without a prediction.
    """
    out = Path(out_dir)
    missing = dict(missing or {})
    with atomic_folder(out, last=("report.md", "report.html")) as stage:
        names = [str(c) for c in classes]
        per_class = _per_class(metrics)
        (stage / "metrics.json").write_text(json.dumps({"title": title, **metrics, "missing": missing}, indent=2,
                                                       default=lambda v: None) + "\n")
        per_class.to_csv(stage / "per_class.csv", index=False)
        plot_pr_curves(y_true, scores, names, stage / "pr_curves.png", thresholds=metrics["thresholds"],
                       ap=[metrics["per_class"][c]["ap"] for c in names])
        if paths is not None:
            t = np.asarray(metrics["thresholds"])
            frame = pd.DataFrame({"path": list(paths),
                                  "labels": [tags_text([c for c, v in zip(names, row) if v]) for row in y_true],
                                  "prediction": [tags_text([c for c, s, th in zip(names, row, t) if s >= th])
                                                 for row in scores]})
            for j, c in enumerate(names):
                frame[f"prob_{c}"] = np.asarray(scores)[:, j]
            frame.to_csv(stage / "predictions.csv", index=False)
        md = _markdown(title, metrics, per_class, missing)
        name = "report.md" if format == "markdown" else "report.html"
        (stage / name).write_text(md if format == "markdown" else _html(title, md), encoding="utf-8")
    return out
