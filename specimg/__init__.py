"""specimg: audio classification with spectrogram images and ImageNet backbones.

The data flows one way, one sub-package per stage::

    audio ─► segments ─► spectrogram images ─► folds ─► backbone ─► window probs ─► file probs ─► stack
    specimg.audio        specimg.spectrogram   .data    .models/.training          .predict       .stacking

with the run's task at its side (``specimg.tasks``: single- or multi-label), which every stage asks.

The public names are listed once, in ``specimg/__init__.pyi`` (the package's typed interface), and each is
imported on first use (:func:`lazy_loader.attach_stub`, as librosa and scikit-image do), so ``import specimg``
(and the ``specimg render`` command) does not pay for torch, timm or LightGBM until they are needed. Everything
else is in the stage packages (``specimg.audio``, ``specimg.tasks``, ``specimg.stacking``...).
"""

from __future__ import annotations

import lazy_loader as _lazy

__version__ = "0.2.0"

_lazy_getattr, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
__all__ = [*__all__, "__version__"]


def __getattr__(name: str):  # the standard message for a name that is not public
    if name not in __all__:
        raise AttributeError(f"module 'specimg' has no attribute {name!r}")
    return _lazy_getattr(name)
