"""The picture of a stacker: its per-class model weights as a (models x classes) heat map."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .._io import PathLike, atomic_write
from ..exceptions import DataError

__all__ = ["plot_model_weights"]


def plot_model_weights(
    weights: Any,
    models: Sequence[str],
    classes: Sequence[str],
    *,
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
) -> Any:
    """Draw per-class model weights as a heat map (rows: models, columns: classes).

    Parameters
    ----------
    weights : np.ndarray [shape=(n_models, n_classes)]
        E.g. :attr:`CNNStacker.model_weights_` (each column sums to 1), or
        :attr:`StackComparison.model_weights` of a candidate.
    models, classes : sequence of str
        Row and column labels.
    path : path, optional
        Write a PNG there (atomically).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(models), len(classes)):
        raise DataError(f"plot_model_weights: weights of shape {w.shape} do not match {len(models)} models x "
                        f"{len(classes)} classes.")
    fig = Figure(figsize=(max(4.0, 0.55 * len(classes) + 2.5), max(2.0, 0.45 * len(models) + 1.2)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(1e-9, float(w.max())), aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels([str(c) for c in classes], rotation=45 if len(classes) > 8 else 0)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels([str(m) for m in models])
    ax.set_xlabel("class")
    if len(classes) * len(models) <= 200:
        for i in range(len(models)):
            for j in range(len(classes)):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w[i, j] < 0.6 * w.max() else "black")
    if title:
        ax.set_title(title, fontsize=9)
    if path is not None:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"), ".png")
    return fig
