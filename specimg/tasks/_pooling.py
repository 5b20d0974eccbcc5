"""Pooling window probabilities into file probabilities (the task picks the method:
:attr:`specimg.tasks.Task.pooling`), and flip TTA.
"""

from __future__ import annotations

from typing import Any, Literal, Tuple

import numpy as np

from .._validation import check_choice
from ..exceptions import DataError, ParameterError
from ..scoring import check_probs

__all__ = ["aggregate_segments", "flip_tta_average"]

AggregateMethod = Literal["mean", "max", "gmean"]


def aggregate_segments(
    probs: Any,
    file_index: Any,
    *,
    method: AggregateMethod = "mean",
    eps: float = 1e-7,
    normalize: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Pool segment (window) probabilities into one probability vector per file.

    Parameters
    ----------
    probs : np.ndarray [shape=(n_segments, n_classes)]
        Probabilities of each segment; each row sums to 1.
    file_index : np.ndarray [shape=(n_segments,)]
        The file each segment belongs to (ints such as ``file_id`` or strings
        such as paths).
    method : {"mean", "max", "gmean"}
        ``"mean"``: average of the window probabilities.
        ``"max"``: per-class maximum over windows, renormalised to sum to 1.
        ``"gmean"``: geometric mean ``exp(mean(log(p + eps)))``, renormalised.
    eps : float > 0
        Floor added before the logarithm of ``"gmean"``.
    normalize : bool
        ``True`` (single-label probabilities): the pooled rows are
        renormalised to sum to 1. ``False`` (multi-label scores, one sigmoid
        per class): each class is pooled on its own and nothing is
        renormalised (``"max"`` is then the per-class maximum, ``"mean"``
        the per-class mean).

    Returns
    -------
    file_ids : np.ndarray [shape=(n_files,)]
        The distinct values of ``file_index``, sorted (as :func:`numpy.unique`).
    file_probs : np.ndarray [shape=(n_files, n_classes), dtype=float64]
        Row ``i`` pools the segments of ``file_ids[i]``; rows sum to 1
        (with ``normalize``).

    Raises
    ------
    ParameterError
        ``method`` is unknown or ``eps`` is not > 0.
    DataError
        ``probs`` is not a 2-D array of non-negative finite numbers, or
        ``file_index`` does not have one entry per segment.

    Examples
    --------
    >>> p = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    >>> ids, fp = aggregate_segments(p, [7, 7, 3])
    >>> ids.tolist(), fp.round(2).tolist()
    ([3, 7], [[0.1, 0.9], [0.6, 0.4]])
    """
    check_choice(method, "method", ("mean", "max", "gmean"), owner="aggregate_segments")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ParameterError(f"The 'eps' parameter of aggregate_segments must be a number > 0. Got {eps!r}.")
    p = check_probs(probs, name="probs", owner="aggregate_segments")
    index = np.asarray(file_index)
    if index.ndim != 1 or index.shape[0] != p.shape[0]:
        raise DataError(
            "The 'file_index' argument of aggregate_segments must have one entry per segment: "
            f"shape ({p.shape[0]},). Got shape {index.shape}."
        )
    if p.shape[0] == 0:
        return index[:0], np.zeros((0, p.shape[1]), dtype=np.float64)

    file_ids, inverse = np.unique(index, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_files, n_classes = len(file_ids), p.shape[1]
    counts = np.bincount(inverse, minlength=n_files).astype(np.float64)[:, None]  # (n_files, 1)

    out = np.zeros((n_files, n_classes))  # probabilities are >= 0, so 0 is a safe start of the maximum
    if method == "mean":
        np.add.at(out, inverse, p)
        out /= counts
    elif method == "max":
        np.maximum.at(out, inverse, p)
    else:  # gmean: the sum of the logs
        np.add.at(out, inverse, np.log(p + eps))
        out = np.exp(out / counts)
    if not normalize:
        return file_ids, out
    total = out.sum(axis=1, keepdims=True)
    # A file whose windows are all-zero rows gets a uniform vector instead of 0/0.
    zero = total[:, 0] <= 0
    if np.any(zero):
        out[zero] = 1.0 / n_classes
        total[zero] = 1.0
    return file_ids, out / total


def flip_tta_average(p: Any, p_flipped: Any) -> np.ndarray:
    """Average the probabilities of images and of their flipped copies (test-time augmentation).

    Parameters
    ----------
    p : np.ndarray [shape=(n, n_classes)]
        Probabilities of the original images.
    p_flipped : np.ndarray [shape=(n, n_classes)]
        Probabilities of the same images flipped (e.g. in time), same row order.

    Returns
    -------
    np.ndarray [shape=(n, n_classes), dtype=float64]
        ``(p + p_flipped) / 2``.

    Examples
    --------
    >>> flip_tta_average([[0.25, 0.75]], [[0.75, 0.25]]).tolist()
    [[0.5, 0.5]]
    """
    a = check_probs(p, name="p", owner="flip_tta_average")
    b = check_probs(p_flipped, name="p_flipped", owner="flip_tta_average")
    if a.shape != b.shape:
        raise DataError(
            "The 'p' and 'p_flipped' arguments of flip_tta_average must have the same shape "
            f"(the same images in the same order). Got {a.shape} and {b.shape}."
        )
    return (a + b) / 2.0
