"""LightGBM stacker: gradient-boosted trees over the flattened base-model probabilities, starting from their mean
(``init_score``: zero trees *is* the mean)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import logging

import numpy as np
import pandas as pd

from .._validation import check_float, check_int, check_positive
from ..exceptions import DataError, ParameterError
from ._align import _StackerBase, beats_the_start, early_stopping_split

__all__ = ["LGBMStacker"]

_EPS = 1e-12
_logger = logging.getLogger(__name__)


class LGBMStacker(_StackerBase):
    """Stack base models with a LightGBM multiclass model that starts from their mean.

    Each file's ``(n_models, n_classes)`` probabilities are flattened to
    ``n_models * n_classes`` features, optionally followed by extra per-file
    features (duration, number of segments, ...) given as ``extra=``.

    Parameters
    ----------
    n_estimators : int >= 1
        Most boosting rounds (early stopping usually stops far sooner).
    learning_rate : float > 0
    num_leaves : int >= 2
        Leaves per tree: few, for a few thousand files.
    min_child_samples : int >= 1
        Files per leaf at least.
    reg_lambda : float >= 0
        L2 penalty on leaf values.
    start : {'mean', 'zero'}
        ``'mean'``: boosting starts from the log of the mean of the models, so
        zero trees is the mean; ``'zero'``: LightGBM's own start (class priors).
    early_stopping, validation_fraction, n_iter_no_change, tol_se, refit
        As for :class:`~specimg.stacking.CNNStacker`, in boosting rounds (zero trees, the mean, competes too;
        ``tol_se`` applies with ``start='mean'``).
    extra_features : sequence of str, optional
        Names of the extra features. When ``extra`` is a DataFrame these
        columns are taken from it (in this order); when it is an array it must
        have this many columns. None: use every column of ``extra``, if given.
    random_state : int
        LightGBM seed (and the held-out split's).
    classes : sequence of str, optional
        As for :class:`~specimg.stacking.CNNStacker`.
    **lgbm_params
        Any other :class:`lightgbm.LGBMClassifier` parameter (``subsample``,
        ``colsample_bytree``, ``n_jobs``, ...). ``verbose`` defaults to -1 and
        ``n_jobs`` to 1.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    n_models_ : int
    n_extra_ : int
        Number of extra features seen in ``fit``.
    feature_names_ : list of str
        ``m{model}_{class}`` then the extra feature names.
    booster_ : lightgbm.LGBMClassifier or None
        The fitted model; None when zero trees won (the stacker is its start).
    best_iteration_ : int
        Boosting rounds used (0: the start alone).
    model_weights_ : np.ndarray [shape=(n_models, n_classes)]
        Share of the split gain of each model's probability of each class
        (each column sums to 1; ``1 / n_models`` with zero trees).

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
        n_estimators: int = 500,
        learning_rate: float = 0.05,
        num_leaves: int = 4,
        min_child_samples: int = 20,
        reg_lambda: float = 5.0,
        start: str = "mean",
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        n_iter_no_change: int = 20,
        tol_se: float = 2.0,
        refit: bool = True,
        extra_features: Optional[Sequence[str]] = None,
        random_state: int = 0,
        classes: Optional[Sequence[str]] = None,
        **lgbm_params: Any,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.start = start
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol_se = tol_se
        self.refit = refit
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
        check_int(self.n_estimators, "n_estimators", owner=owner, low=1)
        check_int(self.num_leaves, "num_leaves", owner=owner, low=2)
        check_int(self.min_child_samples, "min_child_samples", owner=owner, low=1)
        check_int(self.n_iter_no_change, "n_iter_no_change", owner=owner, low=1)
        check_positive(self.learning_rate, "learning_rate", owner=owner)
        check_float(self.reg_lambda, "reg_lambda", owner=owner, low=0.0)
        check_float(self.tol_se, "tol_se", owner=owner, low=0.0)
        self._check_open_fraction(self.validation_fraction, "validation_fraction", owner=owner)
        self._check_flag(self.early_stopping, "early_stopping", owner=owner)
        self._check_flag(self.refit, "refit", owner=owner)
        if self.start not in ("mean", "zero"):
            raise ParameterError(f"The 'start' parameter of {owner} must be 'mean' (boost from the mean of the "
                                 f"models) or 'zero' (LightGBM's own start). Got {self.start!r}.")
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

    def _start_margin(self, arr: np.ndarray, present: np.ndarray) -> np.ndarray:
        """LightGBM's ``init_score`` for the present classes: log of the models' mean, or 0.

        Returns ``(n_files, n_present)``, or ``(n_files,)`` log-odds when two classes are present (binary objective).
        """
        if self.start == "mean":
            margin = np.log(arr.mean(axis=1)[:, present] + _EPS)
        else:
            margin = np.zeros((arr.shape[0], len(present)))
        return margin[:, 1] - margin[:, 0] if len(present) == 2 else margin

    def _boost(self, features: np.ndarray, codes: np.ndarray, margin: np.ndarray, n_estimators: int,
               val: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> Any:
        from lightgbm import LGBMClassifier, early_stopping

        params = {"verbose": -1, "n_jobs": 1}  # tiny tables: threads cost more than they save
        params.update(self._other_params)
        model = LGBMClassifier(n_estimators=int(n_estimators), learning_rate=float(self.learning_rate),
                               num_leaves=int(self.num_leaves), min_child_samples=int(self.min_child_samples),
                               reg_lambda=float(self.reg_lambda), random_state=int(self.random_state), **params)
        if val is None:
            return model.fit(features, codes, init_score=margin if self.start == "mean" else None)
        fv, cv, mv = val
        import inspect

        # LightGBM >= 4.6 spells the validation set eval_X / eval_y (eval_set is deprecated there)
        evals = ({"eval_X": (fv,), "eval_y": (cv,)} if "eval_X" in inspect.signature(model.fit).parameters
                 else {"eval_set": [(fv, cv)]})
        return model.fit(features, codes, init_score=margin if self.start == "mean" else None,
                         eval_init_score=[mv] if self.start == "mean" else None,
                         callbacks=[early_stopping(int(self.n_iter_no_change), verbose=False)], **evals)

    def _best_rounds(self, features: np.ndarray, codes: np.ndarray, margin: np.ndarray,
                     groups: Any) -> Tuple[int, Optional[Any]]:
        """Early stopping on a held-out split: ``(rounds, model trained without the held-out rows)``."""
        split = early_stopping_split(codes, None if groups is None else np.asarray(groups),
                                     fraction=float(self.validation_fraction), seed=int(self.random_state))
        if split is None:
            return int(self.n_estimators), None
        tr, va = split
        va = va[np.isin(codes[va], codes[tr])]  # LightGBM cannot score a class it never saw
        if not np.array_equal(np.unique(codes[tr]), np.unique(codes)) or len(va) == 0:
            _logger.info("LGBMStacker: the held-out split leaves a class out of training; boosting %d rounds "
                         "without early stopping", self.n_estimators)
            return int(self.n_estimators), None
        model = self._boost(features[tr], codes[tr], margin[tr], int(self.n_estimators),
                            val=(features[va], codes[va], margin[va]))
        best = int(model.best_iteration_ or model.n_estimators)
        if self.start == "mean":  # do the trees beat the start (the mean of the models) by more than the noise?
            n_present = len(model.classes_)
            idx = np.searchsorted(model.classes_, codes[va])
            start = _file_losses(self._margin_proba(None, features[va], margin[va], n_present), idx)
            trees = _file_losses(self._margin_proba(model, features[va], margin[va], n_present, best), idx)
            if not beats_the_start(start, trees, tol_se=float(self.tol_se)):
                return 0, None
        return best, model

    def fit(self, X: Any, y: Any, *, extra: Any = None, groups: Any = None) -> "LGBMStacker":
        """Train on out-of-fold probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_models, n_classes)]
        y : sequence of str [shape=(n_files,)]
        extra : np.ndarray or pd.DataFrame [shape=(n_files, n_extra)], optional
            Extra per-file features (see ``extra_features``).
        groups : sequence [shape=(n_files,)], optional
            Group of each file (the base runs' fold, a speaker): early stopping
            then holds out whole groups.

        Returns
        -------
        self
        """
        self._validate_params()
        arr, codes, names = self._setup_fit(X, y)
        present = np.unique(codes)
        if len(present) < 2:
            raise DataError(
                f"{type(self).__name__}.fit needs at least two classes in 'y'. Got only {names[codes[0]]!r}."
            )
        ext, extra_names = self._extra_matrix(extra, arr.shape[0], method="fit")
        features = np.concatenate([arr.reshape(arr.shape[0], -1), ext], axis=1)  # (n, M*C + n_extra)
        margin = self._start_margin(arr, present)
        rounds, model = int(self.n_estimators), None
        if self.early_stopping:
            rounds, model = self._best_rounds(features, codes, margin, groups)
        if rounds and (model is None or self.refit):
            model = self._boost(features, codes, margin, rounds)
        self.booster_ = model if rounds else None
        self.best_iteration_ = int(rounds)
        self.present_ = present
        self.n_extra_ = int(ext.shape[1])
        self.feature_names_ = [f"m{m}_{c}" for m in range(arr.shape[1]) for c in names] + extra_names
        self.model_weights_ = self._gain_weights(arr.shape[1], len(names))
        self._finish_fit(names, arr.shape[1])
        return self

    def _gain_weights(self, n_models: int, n_classes: int) -> np.ndarray:
        w = np.zeros((n_models, n_classes))
        if self.booster_ is not None:
            gain = self.booster_.booster_.feature_importance(importance_type="gain")[: n_models * n_classes]
            w = np.asarray(gain, dtype=np.float64).reshape(n_models, n_classes)
        total = w.sum(axis=0, keepdims=True)
        return np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / n_models)

    @staticmethod
    def _margin_proba(booster: Any, features: np.ndarray, margin: np.ndarray, n_present: int,
                      num_iteration: Optional[int] = None) -> np.ndarray:
        """Probabilities over the present classes: softmax (sigmoid for two) of start margin + trees."""
        raw = 0.0 if booster is None else booster.predict(features, raw_score=True, num_iteration=num_iteration or None)
        z = margin + raw  # the start margin is 0 with start='zero' (LightGBM's own start is in raw)
        if n_present == 2:
            p1 = 1.0 / (1.0 + np.exp(-np.asarray(z)))
            return np.stack([1.0 - p1, p1], axis=1)
        z = np.asarray(z) - np.max(z, axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

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
        margin = self._start_margin(arr, self.present_)
        raw = self._margin_proba(self.booster_, features, margin, len(self.present_), self.best_iteration_)
        proba = np.zeros((arr.shape[0], len(self.classes_)))
        proba[:, self.present_] = raw
        return proba / proba.sum(axis=1, keepdims=True)


def _file_losses(proba: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(proba[np.arange(len(codes)), codes], _EPS, None))
