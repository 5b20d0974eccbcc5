"""The classical anchor of a run: MFCC statistics and LightGBM on the run's own folds, in seconds.

A CNN's cross-validated score means more beside what a plain model reaches on the same files and folds:
on one real 5-class set, MFCC statistics + LightGBM tied the fine-tuned CNN. :func:`train_cv` fits this
anchor after the folds (``anchor=False`` / ``specimg train --no-anchor`` skips it), writes its scores
into ``metrics.json`` (``"anchor"``) and prints them under the run's summary.

Features: the mean and standard deviation over time of 20 MFCCs and of their deltas (80 per file), from
the audio as the run reads it (sample rate, offset, duration) with the run's STFT size and hop. The
model: :class:`lightgbm.LGBMClassifier` with balanced class weights (multi-label: one balanced binary
model per class), fitted on each fold's training files and scored on its held-out files, as the CNN.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .._parallel import failure_reason, pool_map
from ..config import AudioConfig, RenderConfig
from ..exceptions import DataError

__all__ = ["mfcc_statistics", "fit_anchor", "anchor_line", "N_MFCC", "LGBM_PARAMS"]

#: MFCCs per frame.
N_MFCC = 20
#: The LightGBM options of the anchor (small trees: a few thousand files of 80 features).
LGBM_PARAMS: Dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 5,
                               "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "verbose": -1}


def mfcc_statistics(y: np.ndarray, sr: int, *, n_fft: int = 512, hop_length: int = 128,
                    n_mfcc: int = N_MFCC) -> np.ndarray:
    """Mean and std over time of ``n_mfcc`` MFCCs and of their deltas: ``(4 * n_mfcc,)`` float32.

    Examples
    --------
    >>> t = np.arange(8000) / 8000
    >>> mfcc_statistics(np.sin(2 * np.pi * 440 * t).astype(np.float32), 8000, n_fft=256, hop_length=64).shape
    (80,)
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if len(y) < n_fft:
        y = np.pad(y, (0, n_fft - len(y)))
    m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop_length)
    width = min(9, m.shape[1] - (1 - m.shape[1] % 2))  # odd, at most the frames
    d = librosa.feature.delta(m, width=width) if width >= 3 else np.zeros_like(m)
    return np.concatenate([m.mean(1), m.std(1), d.mean(1), d.std(1)]).astype(np.float32)


def _features(path: str, audio: AudioConfig, n_fft: int, hop_length: int) -> Any:
    from ..audio import load_audio

    try:
        y = load_audio(path, sr=audio.sample_rate, offset=audio.offset, duration=audio.duration,
                       allow_truncated=audio.allow_truncated)
        return mfcc_statistics(y, audio.sample_rate, n_fft=n_fft, hop_length=hop_length)
    except Exception as exc:  # one bad file never costs the batch its work: its reason is kept
        return failure_reason(exc)


def _oof_scores(X: np.ndarray, truth: np.ndarray, folds: np.ndarray, multi: bool, n_classes: int,
                seed: int, scored: Sequence[int]) -> np.ndarray:
    """Out-of-fold scores ``(n_files, n_classes)``: one model per held-out fold (fold -1 trains every fold)."""
    from lightgbm import LGBMClassifier

    scores = np.zeros((len(X), n_classes))
    for k in scored:
        train, held = folds != k, folds == k
        targets = truth[train].T if multi else [truth[train]]
        for c, y in enumerate(targets):
            present = np.unique(y)
            if len(present) == 0:  # nothing to train on: no score (0) for the held-out files
                continue
            if len(present) < 2:  # one class (value) in training: that is the prediction
                scores[held, c if multi else present[0]] = float(present[0]) if multi else 1.0
                continue
            model = LGBMClassifier(class_weight="balanced", random_state=seed, n_jobs=1, **LGBM_PARAMS)
            model.fit(X[train], y)
            p = model.predict_proba(X[held])
            if multi:
                scores[held, c] = p[:, 1]
            else:
                scores[np.ix_(held, model.classes_)] = p
    return scores


def fit_anchor(files: pd.DataFrame, folds: np.ndarray, task: Any, classes: Sequence[str],
               render_config: RenderConfig, *, seed: int = 0, workers: int = 1,
               score_folds: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """The anchor's out-of-fold scores on ``files`` and their fold ``folds``.

    Parameters
    ----------
    files : pd.DataFrame
        ``path``, ``abspath`` (the audio) and the task's truth (``label``, or ``labels``: tag lists).
    folds : np.ndarray [shape=(n_files,)]
        Each file's fold; ``-1`` trains every fold and is never scored.
    task : Task
        The run's task: its truth, its metrics and the two headline scores.
    classes : sequence of str
    render_config : RenderConfig
        How the audio is read (sample rate, offset, duration) and the STFT size and hop of the MFCCs.
    score_folds : sequence of int or None
        The folds to score (default: all); the others' files still train.

    Returns
    -------
    anchor : dict
        The ``"anchor"`` entry of ``metrics.json``: the task's headline scores per fold, their mean and
        std, the pooled out-of-fold ones, the seconds it took and the files it could not read.
    """
    import librosa  # noqa: F401  imported once here, inherited by the forked workers

    t0 = time.perf_counter()
    spec = render_config.spectrogram.resolve(render_config.audio.sample_rate)
    jobs = [(p, render_config.audio, int(spec.n_fft), int(spec.hop_length)) for p in files["abspath"].astype(str)]
    rows: List[Optional[np.ndarray]] = [None] * len(jobs)
    failed: Dict[str, str] = {}
    for i, out in pool_map(_features, jobs, workers=max(1, workers)):
        if isinstance(out, str):
            failed[str(files["path"].iloc[i])] = out
        else:
            rows[i] = out
    keep = np.array([r is not None for r in rows], dtype=bool)
    if not keep.any():
        path, reason = next(iter(failed.items())) if failed else ("", "no files")
        raise DataError(f"the anchor could read no file's audio ({len(failed)} failed; e.g. {path}: {reason}).")
    X = np.stack([r for r in rows if r is not None])
    truth = task.truth_of(task.table_truth(files[keep]), classes, paths=files["path"][keep].tolist())
    multi = task.kind == "multi-label"  # truth: labels as str (what the metrics take), or multi-hot rows
    index = {str(c): i for i, c in enumerate(classes)}
    targets = truth if multi else np.array([index[str(t)] for t in truth])
    folds = np.asarray(folds)[keep]
    scored = sorted(set(folds.tolist()) - {-1}) if score_folds is None else sorted(score_folds)
    scores = _oof_scores(X, targets, folds, multi, len(classes), seed, scored)
    keys = [k for k, _ in task.headline_scores]
    labelled = np.isin(folds, scored)
    pooled = task.evaluation_metrics(truth[labelled], scores[labelled], classes)
    per_fold = {}
    for k in scored:
        m = task.evaluation_metrics(truth[folds == k], scores[folds == k], classes)
        per_fold[str(k)] = {key: m.get(key) for key in keys}
    mean = {key: _over_folds([f[key] for f in per_fold.values()], np.mean) for key in keys}
    std = {key: _over_folds([f[key] for f in per_fold.values()], np.std) for key in keys}
    return {"model": f"MFCC statistics ({4 * N_MFCC} per file) + LightGBM, balanced classes",
            "folds": per_fold, "mean": mean, "std": std, "pooled": {key: pooled.get(key) for key in keys},
            "n_files": int(labelled.sum()), "failed": failed, "seconds": round(time.perf_counter() - t0, 2)}


def _over_folds(values: Sequence[Optional[float]], stat: Any) -> Optional[float]:
    vals = [float(v) for v in values if v is not None]
    return float(stat(vals)) if vals else None


def anchor_line(anchor: Optional[Dict[str, Any]], task: Any) -> Optional[str]:
    """``anchor (MFCC + LightGBM): accuracy 0.9000  UAR 0.9000 ...``: the line under a run's summary."""
    if not anchor:
        return None
    scores = "  ".join(f"{name} {anchor['mean'][key]:.4f}" if anchor["mean"].get(key) is not None
                       else f"{name} n/a" for key, name in task.headline_scores)
    failed = f", {len(anchor['failed'])} file(s) unreadable" if anchor.get("failed") else ""
    return f"anchor (MFCC + LightGBM): {scores}   (mean over the same folds; {anchor['n_files']} files{failed})"
