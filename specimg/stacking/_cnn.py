"""CNN stacker: the mean of the models, and a small CNN that moves away from it only as far as the data says.

A file's out-of-fold probabilities form a one-channel image of ``n_models`` rows and ``n_classes`` columns.
Two parts, added in logit space: per-class model weights ``w[m, c]`` (a softmax over the models) with a
temperature and a per-class bias; and a correction from 2x1 convolutions down each column (shared by all
classes; residual with ``skip=True``), a convolution spanning all models and a linear head. At its start
(equal weights, temperature 1, zero bias, zero head) it *is* the plain mean of the models (to 1e-12: it
predicts in float64); training moves away from it only as far as the parameters below allow.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .._validation import check_float, check_int, check_positive
from ._align import _StackerBase, beats_the_start, early_stopping_split

__all__ = ["CNNStacker"]

_logger = logging.getLogger(__name__)
_EPS = 1e-12
_DTYPE = torch.float32


class _Conv2x1(nn.Module):
    """A 2x1 convolution across the models (zero row padded below), shared by all classes: ``nn.Conv2d(c_in, c_out,
    (2, 1))`` as two matrix products on a channels-last tensor, several times faster on a CPU for these tiny images.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.this_row = nn.Linear(c_in, c_out)
        self.next_row = nn.Linear(c_in, c_out, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (B, M, C, c_in)
        below = torch.cat([h[:, 1:], torch.zeros_like(h[:, :1])], dim=1)  # (B, M, C, c_in): row m+1, 0 past the end
        return self.this_row(h) + self.next_row(below)  # (B, M, C, c_out)


class _StackNet(nn.Module):
    """Per-class model weights (softmax over models) + temperature + bias, plus a zero-initialised 2x1-conv branch."""

    def __init__(self, n_models: int, n_classes: int, hidden: int, n_layers: int, skip: bool) -> None:
        super().__init__()
        self.model_logits = nn.Parameter(torch.zeros(n_models, n_classes))  # softmax over models: equal weights
        self.log_temperature = nn.Parameter(torch.zeros(()))  # temperature 1
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.convs = nn.ModuleList([_Conv2x1(1 if i == 0 else hidden, hidden) for i in range(n_layers)])
        self.collapse = nn.Linear(n_models * hidden, hidden)  # a convolution spanning all models
        self.head = nn.Linear(hidden * n_classes, n_classes)
        nn.init.zeros_(self.head.weight)  # the correction starts at exactly 0
        nn.init.zeros_(self.head.bias)
        self.skip = skip

    def model_weights(self) -> torch.Tensor:
        return torch.softmax(self.model_logits, dim=0)  # (M, C): each column sums to 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = (x * self.model_weights()).sum(dim=1)  # (B, C): per-class weighted mean of the models
        logits = torch.log(mixed + _EPS) * torch.exp(-self.log_temperature) + self.bias  # (B, C)
        h = x.unsqueeze(-1)  # (B, M, C, 1)
        for conv in self.convs:
            out = torch.relu(conv(h))  # (B, M, C, hidden)
            h = out + h if self.skip else out  # first layer: (B, M, C, 1) broadcasts over channels
        b, m, c, k = h.shape
        h = torch.relu(self.collapse(h.permute(0, 2, 1, 3).reshape(b, c, m * k)))  # (B, C, hidden)
        return logits + self.head(h.reshape(b, c * k))  # (B, C)


@contextlib.contextmanager
def _threads(n: Optional[int]) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), then restore the previous count."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CNNStacker(_StackerBase):
    """Stack base models with a small CNN over their (models x classes) probabilities, starting from their mean.

    Parameters
    ----------
    hidden : int >= 1
        Channels of the convolutions of the correction branch.
    skip : bool
        Add each convolution's input to its output (residual connections).
    epochs : int >= 0
        Most passes over the training files; 0 leaves the stacker at its start
        (the mean of the models).
    lr : float > 0
        Adam learning rate.
    weight_decay : float >= 0
        Strength of the L2 pull of every parameter back to its initial value
        (the mean of the models), added to the mean cross-entropy.
    batch_size : int >= 1
    n_layers : int >= 1
        Number of 2x1 convolutions before the model-collapsing one.
    early_stopping : bool
        Hold out ``validation_fraction`` of the files (whole groups when
        ``fit`` gets ``groups``) and stop when their log-loss has not improved
        for ``n_iter_no_change`` epochs; epoch 0 (the mean) competes too.
    validation_fraction : float in (0, 1)
    n_iter_no_change : int >= 1
    tol_se : float >= 0
        The best epoch replaces the start (the mean) only when its held-out
        log-loss is lower by more than ``tol_se`` standard errors of the
        per-file paired difference; otherwise the stacker stays the mean.
        0: any improvement.
    refit : bool
        After early stopping, train again on all files for the best number
        of epochs (False: keep the network of the best epoch, trained on the
        other files only).
    seed : int
        Seeds weight initialisation, the held-out split and batch order; the
        same seed and data give the same model (on CPU).
    device : str
        Torch device to train and predict on (``"cpu"``, ``"cuda"``).
    num_threads : int >= 1 or None
        Torch CPU threads while fitting and predicting (restored afterwards).
        The network is tiny: one thread is fastest, and several are much
        slower on a busy machine. None keeps torch's setting.
    classes : sequence of str, optional
        Labels in the order of the last axis of ``X``. None: the numeric-aware
        sorted labels of ``y`` (``"2" < "10"``), as an image cache orders them.

    Attributes
    ----------
    classes_ : np.ndarray [shape=(n_classes,)]
    n_models_ : int
    model_ : torch.nn.Module
        The trained network (in eval mode, on ``device``; trained in float32,
        kept in float64).
    model_weights_ : np.ndarray [shape=(n_models, n_classes)]
        The learned per-class model weights (each column sums to 1; all
        ``1 / n_models`` at the start).
    temperature_ : float
    best_epoch_ : int
        Epochs of the final network (0: the stacker is the mean of the models).
    loss_curve_ : list of float
        Mean training cross-entropy per epoch of the final training.
    validation_curve_ : list of float
        Held-out log-loss at the start and after each epoch (empty without
        early stopping).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 60).astype(str)
    >>> X = rng.dirichlet(np.ones(3), size=(60, 2))
    >>> np.allclose(CNNStacker(epochs=0).fit(X, y).predict_proba(X), X.mean(axis=1))
    True
    """

    def __init__(
        self,
        hidden: int = 16,
        skip: bool = False,
        epochs: int = 200,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        batch_size: int = 128,
        n_layers: int = 2,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        n_iter_no_change: int = 10,
        tol_se: float = 2.0,
        refit: bool = True,
        seed: int = 0,
        device: str = "cpu",
        num_threads: Optional[int] = 1,
        classes: Optional[Sequence[str]] = None,
    ) -> None:
        self.hidden = hidden
        self.skip = skip
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_layers = n_layers
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol_se = tol_se
        self.refit = refit
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.classes = classes

    def _validate_params(self) -> None:
        owner = type(self).__name__
        check_int(self.hidden, "hidden", owner=owner, low=1)
        check_int(self.epochs, "epochs", owner=owner, low=0)
        check_int(self.batch_size, "batch_size", owner=owner, low=1)
        check_int(self.n_layers, "n_layers", owner=owner, low=1)
        check_int(self.n_iter_no_change, "n_iter_no_change", owner=owner, low=1)
        check_int(self.seed, "seed", owner=owner, low=0)
        check_positive(self.lr, "lr", owner=owner)
        check_float(self.weight_decay, "weight_decay", owner=owner, low=0.0)
        check_float(self.tol_se, "tol_se", owner=owner, low=0.0)
        self._check_open_fraction(self.validation_fraction, "validation_fraction", owner=owner)
        if self.num_threads is not None:
            check_int(self.num_threads, "num_threads", owner=owner, low=1)
        for name in ("skip", "early_stopping", "refit"):
            self._check_flag(getattr(self, name), name, owner=owner)

    def _new_net(self, n_models: int, n_classes: int) -> _StackNet:
        with torch.random.fork_rng(devices=[]):  # seed locally, leave the caller's RNG alone
            torch.manual_seed(int(self.seed))
            net = _StackNet(n_models, n_classes, int(self.hidden), int(self.n_layers), bool(self.skip))
        return net.to(device=torch.device(self.device), dtype=_DTYPE)

    def _train(self, net: _StackNet, xs: torch.Tensor, ys: torch.Tensor, epochs: int,
               val: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Tuple[List[float], List[float], int]:
        """Train ``net`` in place; with ``val``, early-stop and return the best epoch (the net is left at it)."""
        start = [p.detach().clone() for p in net.parameters()]
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(int(self.seed))
        n = xs.shape[0]
        bs = min(int(self.batch_size), n)
        decay = float(self.weight_decay)
        curve: List[float] = []
        val_curve: List[float] = []
        best_epoch, best_state, start_state = 0, None, None
        if val is not None:
            start_losses = best_losses = self._val_losses(net, *val)
            val_curve.append(float(start_losses.mean()))
            start_state = best_state = {k: v.clone() for k, v in net.state_dict().items()}
        for epoch in range(1, epochs + 1):
            net.train()
            order = torch.randperm(n, generator=gen).to(xs.device)
            total = 0.0
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                loss = loss_fn(net(xs[idx]), ys[idx])
                if decay:  # pull every parameter back to where it started (the mean of the models)
                    loss = loss + decay * sum(((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            curve.append(total / n)
            if val is not None:
                losses = self._val_losses(net, *val)
                val_curve.append(float(losses.mean()))
                if val_curve[-1] < val_curve[best_epoch] - 1e-9:
                    best_epoch, best_losses = epoch, losses
                    best_state = {k: v.clone() for k, v in net.state_dict().items()}
                elif epoch - best_epoch >= int(self.n_iter_no_change):
                    break
        if val is None:
            best_epoch = epochs
        elif best_epoch and not beats_the_start(start_losses, best_losses, tol_se=float(self.tol_se)):
            best_epoch, best_state = 0, start_state  # no epoch beats the mean by more than the noise: stay there
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return curve, val_curve, best_epoch

    @staticmethod
    def _val_losses(net: _StackNet, xv: torch.Tensor, yv: torch.Tensor) -> np.ndarray:
        """Per-file held-out cross-entropy, shape ``(n_val,)``."""
        net.eval()
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(net(xv), yv, reduction="none").double().cpu().numpy()

    def fit(self, X: Any, y: Any, *, groups: Any = None) -> "CNNStacker":
        """Train on out-of-fold probabilities.

        Parameters
        ----------
        X : np.ndarray [shape=(n_files, n_models, n_classes)]
            Base-model probabilities (see :func:`align_runs`).
        y : sequence of str [shape=(n_files,)]
        groups : sequence [shape=(n_files,)], optional
            Group of each file (the base runs' fold, a speaker): early stopping
            then holds out whole groups.

        Returns
        -------
        self
        """
        self._validate_params()
        arr, codes, names = self._setup_fit(X, y)
        with _threads(self.num_threads):
            self._fit(arr, codes, names, groups)
        return self

    def _fit(self, arr: np.ndarray, codes: np.ndarray, names: List[str], groups: Any) -> None:
        n, n_models, n_classes = arr.shape
        device = torch.device(self.device)
        xs = torch.as_tensor(arr, dtype=_DTYPE, device=device)  # (n, M, C)
        ys = torch.as_tensor(codes, dtype=torch.long, device=device)  # (n,)
        net = self._new_net(n_models, n_classes)
        epochs = int(self.epochs)
        split = None
        if epochs and self.early_stopping:
            split = early_stopping_split(codes, None if groups is None else np.asarray(groups),
                                         fraction=float(self.validation_fraction), seed=int(self.seed))
            if split is None:
                _logger.info("CNNStacker: %d files are too few to hold some out; training %d epochs without "
                             "early stopping", n, epochs)
        val_curve: List[float] = []
        if split is None:
            curve, _, best = self._train(net, xs, ys, epochs)
        else:
            tr, va = (torch.as_tensor(i, device=device) for i in split)
            curve, val_curve, best = self._train(net, xs[tr], ys[tr], epochs, val=(xs[va], ys[va]))
            if self.refit:
                net = self._new_net(n_models, n_classes)
                curve, _, _ = self._train(net, xs, ys, best)
        self.model_ = net.double()  # trained in float32 (faster); predicts in float64, so the start is the exact mean
        self.loss_curve_ = curve
        self.validation_curve_ = val_curve
        self.best_epoch_ = int(best)
        with torch.no_grad():
            self.model_weights_ = net.model_weights().cpu().numpy()
            self.temperature_ = float(torch.exp(net.log_temperature))
        self._finish_fit(names, n_models)

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
        param = next(self.model_.parameters())
        out = []
        with torch.no_grad(), _threads(getattr(self, "num_threads", 1)):
            for start in range(0, arr.shape[0], 4096):
                xb = torch.as_tensor(arr[start:start + 4096], dtype=param.dtype, device=param.device)
                out.append(torch.softmax(self.model_(xb).double(), dim=1).cpu().numpy())
        proba = np.concatenate(out, axis=0)
        return proba / proba.sum(axis=1, keepdims=True)
