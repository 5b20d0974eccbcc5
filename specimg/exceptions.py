"""The one exception tree of specimg.

Every error raised on user input derives from :class:`SpecimgError`, so
``except specimg.SpecimgError`` catches all of them. Messages name the file or
parameter, the rule, the value given and the fix.
"""

from __future__ import annotations

__all__ = [
    "SpecimgError",
    "ParameterError",
    "AudioError",
    "DataError",
    "NotFittedError",
    "WeightsError",
    "TrainingError",
]


class SpecimgError(Exception):
    """Base class of every error specimg raises on purpose."""


class ParameterError(SpecimgError, ValueError):
    """An option or argument has a value that cannot work.

    Raised before any work starts, so nothing is lost.
    """


class AudioError(SpecimgError):
    """An audio file cannot be used (unreadable, empty, silent, NaN/inf, missing).

    Parameters
    ----------
    path : str
        The file concerned.
    reason : str
        What is wrong and how to fix it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DataError(SpecimgError, ValueError):
    """A table, label set, run folder or prediction file is inconsistent."""


class NotFittedError(SpecimgError, AttributeError):
    """An estimator was used before ``fit``.

    Also a subclass of ``AttributeError`` like scikit-learn's own.
    """


class WeightsError(SpecimgError):
    """Pretrained weights cannot be found, downloaded or mapped onto a model."""


class TrainingError(SpecimgError, RuntimeError):
    """Training cannot go on: a non-finite loss (the model diverged) or non-finite predictions.

    The message names the fold, epoch and step and the usual fixes; the fold
    is left unfinished, so nothing non-finite is ever saved as a result.
    """
