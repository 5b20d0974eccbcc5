"""Weighted blending of probability matrices (models or stackers)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..exceptions import DataError, ParameterError
from ._align import _StackerBase

__all__ = ["WeightedBlend"]

_EPS = 1e-12


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


class WeightedBlend(_StackerBase):
    """Weighted average of the probabilities of several members.

    ``sum_m w_m X[:, m, :]`` with ``w >= 0`` and ``sum(w) = 1``, for ``X`` of shape ``(n_files, n_members,
    n_classes)`` (or a list of ``(n_files, n_classes)`` matrices), the members base models or stackers.

    Parameters
    ----------
    weights : sequence of float >= 0, optional
        One weight per member, renormalised to sum to 1 (e.g. ``(0.45, 0.45,
        0.1)``). None: equal weights. With ``fit_weights=True`` this is the
        starting point of the search.
    fit_weights : bool
        If True, ``fit`` chooses the weights that minimise the log-loss of the
        blend on ``(X, y)`` over the simplex (softmax-parameterised, L-BFGS-B).
        Fit on out-of-fold predictions only.
    classes : sequence of str, optional
        Labels in the order of the last axis of ``X``. None: the numeric-aware
        sorted labels of ``y``.

    Attributes
    ----------
    weights_ : np.ndarray [shape=(n_members,)]
        The weights used (non-negative, sum 1).
    classes_ : np.ndarray [shape=(n_classes,)]
    n_models_ : int
        Number of members.

    Examples
    --------
    >>> X = np.array([[[0.9, 0.1], [0.4, 0.6]]])  # one file, two members, two classes
    >>> WeightedBlend(weights=[0.75, 0.25], classes=["a", "b"]).fit(X, ["a"]).predict_proba(X).round(3).tolist()
    [[0.775, 0.225]]
    """

    def __init__(
        self,
        weights: Optional[Sequence[float]] = None,
        fit_weights: bool = False,
        classes: Optional[Sequence[str]] = None,
    ) -> None:
        self.weights = weights
        self.fit_weights = fit_weights
        self.classes = classes

    def _initial_weights(self, n_members: int) -> np.ndarray:
        owner = type(self).__name__
        if self.weights is None:
            return np.full(n_members, 1.0 / n_members)
        try:
            w = np.asarray(self.weights, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError(
                f"The 'weights' parameter of {owner} must be a sequence of numbers. Got {self.weights!r}."
            ) from None
        if w.ndim != 1 or len(w) != n_members:
            raise DataError(
                f"The 'weights' parameter of {owner} has {w.size} values but X has {n_members} members (axis 1). "
                "Give one weight per member."
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ParameterError(
                f"The 'weights' parameter of {owner} must be finite, >= 0 and not all 0. Got {w.tolist()}."
            )
        return w / w.sum()

    def fit(self, X: Any, y: Any) -> "WeightedBlend":
        """Set (or fit) the member weights.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_members, n_classes)] or list of (n_files, n_classes)
        y : sequence of str [shape=(n_files,)]

        Returns
        -------
        self
        """
        self._check_flag(self.fit_weights, "fit_weights", owner=type(self).__name__)
        arr, codes, names = self._setup_fit(X, y)
        w0 = self._initial_weights(arr.shape[1])
        if self.fit_weights and arr.shape[1] > 1:
            w = self._search(arr, codes, w0)
        else:
            w = w0
        self.weights_ = w
        self._finish_fit(names, arr.shape[1])
        return self

    @staticmethod
    def _search(arr: np.ndarray, codes: np.ndarray, w0: np.ndarray) -> np.ndarray:
        from scipy.optimize import minimize

        p_true = arr[np.arange(arr.shape[0]), :, codes]  # (n_files, n_members): each member's p(true class)

        def loss_grad(z: np.ndarray) -> tuple:
            w = _softmax(z)
            q = p_true @ w + _EPS  # (n_files,)
            loss = -np.mean(np.log(q))
            g_w = -np.mean(p_true / q[:, None], axis=0)  # dL/dw
            return loss, w * (g_w - np.dot(w, g_w))  # chain rule through the softmax

        z0 = np.log(np.clip(w0, 1e-6, None))
        res = minimize(loss_grad, z0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        w = _softmax(res.x)
        w[w < 1e-6] = 0.0  # weights the search drove to ~0 are exactly 0
        return w / w.sum()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Blended probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_members, n_classes)] or list of (n_files, n_classes)

        Returns
        -------
        np.ndarray [shape=(n_files, n_classes), dtype=float64]
            Columns in ``classes_`` order; rows sum to 1.
        """
        arr = self._check_predict_input(X, method="predict_proba")
        out = np.einsum("nmc,m->nc", arr, self.weights_)
        total = out.sum(axis=1, keepdims=True)
        if np.any(total <= 0):
            raise DataError(f"{type(self).__name__}.predict_proba: a file has all-zero blended probabilities.")
        return out / total
