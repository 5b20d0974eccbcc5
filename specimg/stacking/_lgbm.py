"""LightGBM stacker: gradient-boosted trees over the flattened base-model probabilities."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..exceptions import DataError, ParameterError
from ._align import _StackerBase
from ._cnn import _check_float, _check_int

__all__ = ["LGBMStacker"]


class LGBMStacker(_StackerBase):
    """Stack base models with a LightGBM multiclass model.

    Each file's ``(n_models, n_classes)`` probabilities are flattened to
    ``n_models * n_classes`` features, optionally followed by extra per-file
    features (duration, number of segments, ...) given as ``extra=``.

    Parameters
    ----------
    n_estimators : int >= 1
        Boosting rounds.
    learning_rate : float > 0
    num_leaves : int >= 2
    extra_features : sequence of str, optional
        Names of the extra features. When ``extra`` is a DataFrame these
        columns are taken from it (in this order); when it is an array it must
        have this many columns. None: use every column of ``extra``, if given.
    random_state : int
        LightGBM seed.
    classes : sequence of str, optional
        Labels in the order of the last axis of ``X``. None: the numeric-aware
        sorted labels of ``y``.
    **lgbm_params
        Any other :class:`lightgbm.LGBMClassifier` parameter (``min_child_samples``,
        ``subsample``, ``n_jobs``, ...). ``verbose`` defaults to -1.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    n_models_ : int
    n_extra_ : int
        Number of extra features seen in ``fit``.
    feature_names_ : list of str
        ``m{model}_{class}`` then the extra feature names.
    booster_ : lightgbm.LGBMClassifier
        The fitted model.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 90).astype(str)
    >>> X = rng.dirichlet(np.ones(3), size=(90, 2))
    >>> LGBMStacker(n_estimators=5).fit(X, y).predict_proba(X).shape
    (90, 3)
    """

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        extra_features: Optional[Sequence[str]] = None,
        random_state: int = 0,
        classes: Optional[Sequence[str]] = None,
        **lgbm_params: Any,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.extra_features = extra_features
        self.random_state = random_state
        self.classes = classes
        self._other_params: Dict[str, Any] = {}
        for key, value in lgbm_params.items():
            setattr(self, key, value)
            self._other_params[key] = value

    # **lgbm_params are parameters too: report and accept them as LightGBM's own estimators do,
    # so that get_params/set_params/clone round-trip.
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        params = super().get_params(deep=deep)
        params.update(self._other_params)
        return params

    def set_params(self, **params: Any) -> "LGBMStacker":
        own = set(super().get_params(deep=False))
        for key, value in params.items():
            setattr(self, key, value)
            if key not in own:
                self._other_params[key] = value
        return self

    def _validate_params(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "n_estimators", self.n_estimators, 1)
        _check_int(owner, "num_leaves", self.num_leaves, 2)
        _check_float(owner, "learning_rate", self.learning_rate, allow_zero=False)
        if self.extra_features is not None and (
            isinstance(self.extra_features, str) or not all(isinstance(f, str) for f in self.extra_features)
        ):
            raise ParameterError(
                f"The 'extra_features' parameter of {owner} must be a list of column names or None. "
                f"Got {self.extra_features!r}."
            )

    def _extra_matrix(self, extra: Any, n_files: int, *, method: str) -> Tuple[np.ndarray, List[str]]:
        """Return the extra features as float64 ``(n_files, n_extra)`` and their names."""
        owner = f"{type(self).__name__}.{method}"
        names = None if self.extra_features is None else list(self.extra_features)
        if extra is None:
            if names:
                raise DataError(
                    f"{owner}: extra_features={names} but no 'extra' was given; pass extra=<table of those columns>."
                )
            return np.zeros((n_files, 0)), []
        if isinstance(extra, pd.DataFrame):
            if names is not None:
                missing = [c for c in names if c not in extra.columns]
                if missing:
                    raise DataError(f"{owner}: 'extra' lacks the columns {missing} named in extra_features.")
                extra = extra[names]
            names = [str(c) for c in extra.columns]
            try:
                mat = extra.to_numpy(dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(
                    f"{owner}: the 'extra' columns must be numeric. Got dtypes {extra.dtypes.to_dict()}."
                ) from None
        else:
            try:
                mat = np.asarray(extra, dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{owner}: 'extra' must be a numeric array or a DataFrame.") from None
            if mat.ndim == 1:
                mat = mat[:, None]
            if mat.ndim == 2 and names is not None and mat.shape[1] != len(names):
                raise DataError(f"{owner}: 'extra' has {mat.shape[1]} columns but extra_features names {len(names)}.")
            if mat.ndim == 2 and names is None:
                names = [f"extra_{j}" for j in range(mat.shape[1])]
        if mat.ndim != 2 or mat.shape[0] != n_files:
            raise DataError(
                f"{owner}: 'extra' must have shape ({n_files}, n_extra), one row per file. Got {mat.shape}."
            )
        return mat, list(names or [])  # NaN allowed: LightGBM handles missing values

    def fit(self, X: Any, y: Any, *, extra: Any = None) -> "LGBMStacker":
        """Train on out-of-fold probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_models, n_classes)]
        y : sequence of str [shape=(n_files,)]
        extra : np.ndarray or pd.DataFrame [shape=(n_files, n_extra)], optional
            Extra per-file features (see ``extra_features``).

        Returns
        -------
        self
        """
        from lightgbm import LGBMClassifier

        self._validate_params()
        arr, codes, names = self._setup_fit(X, y)
        if len(np.unique(codes)) < 2:
            raise DataError(
                f"{type(self).__name__}.fit needs at least two classes in 'y'. Got only {names[codes[0]]!r}."
            )
        ext, extra_names = self._extra_matrix(extra, arr.shape[0], method="fit")
        features = np.concatenate([arr.reshape(arr.shape[0], -1), ext], axis=1)  # (n, M*C + n_extra)
        params = {"verbose": -1, "n_jobs": 1}  # tiny tables: threads cost more than they save
        params.update(self._other_params)
        model = LGBMClassifier(
            n_estimators=int(self.n_estimators),
            learning_rate=float(self.learning_rate),
            num_leaves=int(self.num_leaves),
            random_state=int(self.random_state),
            **params,
        )
        model.fit(features, codes)
        self.booster_ = model
        self.n_extra_ = int(ext.shape[1])
        self.feature_names_ = [f"m{m}_{c}" for m in range(arr.shape[1]) for c in names] + extra_names
        self._finish_fit(names, arr.shape[1])
        return self

    def predict_proba(self, X: Any, *, extra: Any = None) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_models, n_classes)]
        extra : np.ndarray or pd.DataFrame [shape=(n_files, n_extra)], optional
            The same extra features as in ``fit``.

        Returns
        -------
        np.ndarray [shape=(n_files, n_classes), dtype=float64]
            Columns in ``classes_`` order; rows sum to 1. A class absent from
            the training labels gets probability 0.
        """
        arr = self._check_predict_input(X, method="predict_proba")
        ext, _ = self._extra_matrix(extra, arr.shape[0], method="predict_proba")
        if ext.shape[1] != self.n_extra_:
            raise DataError(
                f"{type(self).__name__}.predict_proba: got {ext.shape[1]} extra features but the model was fitted "
                f"with {self.n_extra_}; pass the same 'extra' columns as in fit."
            )
        features = np.concatenate([arr.reshape(arr.shape[0], -1), ext], axis=1)
        raw = self.booster_.predict_proba(features)
        proba = np.zeros((arr.shape[0], len(self.classes_)))
        proba[:, self.booster_.classes_.astype(int)] = raw
        return proba / proba.sum(axis=1, keepdims=True)
