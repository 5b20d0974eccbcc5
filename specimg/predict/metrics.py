"""Classification metrics of file-level predictions: :mod:`specimg.scoring`'s, re-exported here."""

from ..scoring import check_labels, classification_metrics, uar

__all__ = ["uar", "classification_metrics", "check_labels"]
