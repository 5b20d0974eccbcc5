"""CNN stacker: a small convolutional network over the (models x classes) probability image.

The out-of-fold probabilities of ``n_models`` base models for one file form a
one-channel image of ``n_models`` rows and ``n_classes`` columns. Convolutions
with 2x1 kernels slide across the models (down a column) and are shared by
all classes, so they learn how to combine neighbouring models; a last
convolution spanning all models and a linear head then weigh the models per
class and give ``n_classes`` logits. With ``skip=True`` each convolution adds
its input back (a residual connection), so the stack starts close to the
input and learns corrections.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..exceptions import ParameterError
from ._align import _StackerBase

__all__ = ["CNNStacker"]


class _StackNet(nn.Module):
    """Convolutions with 2x1 kernels across models, a model-collapsing convolution, a linear head."""

    def __init__(self, n_models: int, n_classes: int, hidden: int, n_layers: int, skip: bool) -> None:
        super().__init__()
        # Pad one row below so a 2x1 kernel keeps n_models rows (and works with one model).
        self.pad = nn.ZeroPad2d((0, 0, 0, 1))
        self.convs = nn.ModuleList(
            [nn.Conv2d(1 if i == 0 else hidden, hidden, kernel_size=(2, 1)) for i in range(n_layers)]
        )
        self.collapse = nn.Conv2d(hidden, hidden, kernel_size=(n_models, 1))
        self.head = nn.Linear(hidden * n_classes, n_classes)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)  # (B, 1, M, C)
        for conv in self.convs:
            out = torch.relu(conv(self.pad(h)))  # (B, hidden, M, C)
            h = out + h if self.skip else out  # first layer: (B, 1, M, C) broadcasts over channels
        h = torch.relu(self.collapse(h))  # (B, hidden, 1, C)
        return self.head(h.flatten(1))  # (B, n_classes)


def _check_int(owner: str, name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"The {name!r} parameter of {owner} must be an int >= {low}. Got {value!r}.")


def _check_float(owner: str, name: str, value: Any, *, allow_zero: bool) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.floating))
        and np.isfinite(value)
        and (value >= 0 if allow_zero else value > 0)
    )
    if not ok:
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be a finite number "
            f"{'>= 0' if allow_zero else '> 0'}. Got {value!r}."
        )


class CNNStacker(_StackerBase):
    """Stack base models with a small CNN over their (models x classes) probabilities.

    Parameters
    ----------
    hidden : int >= 1
        Channels of the convolutions.
    skip : bool
        Add each convolution's input to its output (residual connections).
    epochs : int >= 1
        Passes over the training files.
    lr : float > 0
        AdamW learning rate.
    weight_decay : float >= 0
        AdamW weight decay.
    batch_size : int >= 1
    n_layers : int >= 1
        Number of 2x1 convolutions before the model-collapsing one.
    seed : int
        Seeds weight initialisation and batch order; the same seed and data
        give the same model (on CPU).
    device : str
        Torch device to train and predict on (``"cpu"``, ``"cuda"``).
    classes : sequence of str, optional
        Labels in the order of the last axis of ``X``. None: the numeric-aware
        sorted labels of ``y`` (``"2" < "10"``), as an image cache orders them.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    n_models_ : int
    model_ : torch.nn.Module
        The trained network (in eval mode, on ``device``).
    loss_curve_ : list of float
        Mean training cross-entropy per epoch.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 60).astype(str)
    >>> X = rng.dirichlet(np.ones(3), size=(60, 2))
    >>> CNNStacker(epochs=2).fit(X, y).predict_proba(X).shape
    (60, 3)
    """

    def __init__(
        self,
        hidden: int = 16,
        skip: bool = False,
        epochs: int = 60,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        n_layers: int = 2,
        seed: int = 0,
        device: str = "cpu",
        classes: Optional[Sequence[str]] = None,
    ) -> None:
        self.hidden = hidden
        self.skip = skip
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_layers = n_layers
        self.seed = seed
        self.device = device
        self.classes = classes

    def _validate_params(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "hidden", self.hidden, 1)
        _check_int(owner, "epochs", self.epochs, 1)
        _check_int(owner, "batch_size", self.batch_size, 1)
        _check_int(owner, "n_layers", self.n_layers, 1)
        _check_int(owner, "seed", self.seed, 0)
        _check_float(owner, "lr", self.lr, allow_zero=False)
        _check_float(owner, "weight_decay", self.weight_decay, allow_zero=True)
        if not isinstance(self.skip, (bool, np.bool_)):
            raise ParameterError(f"The 'skip' parameter of {owner} must be True or False. Got {self.skip!r}.")

    def fit(self, X: Any, y: Any) -> "CNNStacker":
        """Train on out-of-fold probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_models, n_classes)]
            Base-model probabilities (see :func:`align_runs`).
        y : sequence of str [shape=(n_files,)]

        Returns
        -------
        self
        """
        self._validate_params()
        arr, codes, names = self._setup_fit(X, y)
        n, n_models, n_classes = arr.shape
        device = torch.device(self.device)
        with torch.random.fork_rng(devices=[]):  # seed locally, leave the caller's RNG alone
            torch.manual_seed(int(self.seed))
            net = _StackNet(n_models, n_classes, int(self.hidden), int(self.n_layers), bool(self.skip))
        net = net.to(device)
        xs = torch.as_tensor(arr, dtype=torch.float32, device=device)  # (n, M, C)
        ys = torch.as_tensor(codes, dtype=torch.long, device=device)  # (n,)
        opt = torch.optim.AdamW(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(int(self.seed))
        bs = min(int(self.batch_size), n)
        curve = []
        net.train()
        for _ in range(int(self.epochs)):
            order = torch.randperm(n, generator=gen).to(device)
            total = 0.0
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                loss = loss_fn(net(xs[idx]), ys[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            curve.append(total / n)
        net.eval()
        self.model_ = net
        self.loss_curve_ = curve
        self._finish_fit(names, n_models)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_models, n_classes)]

        Returns
        -------
        np.ndarray [shape=(n_files, n_classes), dtype=float64]
            Columns in ``classes_`` order; rows sum to 1.
        """
        arr = self._check_predict_input(X, method="predict_proba")
        device = next(self.model_.parameters()).device
        out = []
        with torch.no_grad():
            for start in range(0, arr.shape[0], 4096):
                xb = torch.as_tensor(arr[start:start + 4096], dtype=torch.float32, device=device)
                out.append(torch.softmax(self.model_(xb).double(), dim=1).cpu().numpy())
        proba = np.concatenate(out, axis=0)
        return proba / proba.sum(axis=1, keepdims=True)
