"""Export a run's fold models (or their ensemble) to ONNX or TorchScript."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import List, Literal, Sequence, Union

import torch
from torch import nn

from .._io import PathLike, atomic_path, atomic_write_text
from ..data import PixelNormalize
from ..exceptions import ParameterError
from ..models import Ensemble

__all__ = ["ExportedEnsemble", "export_run"]


class ExportedEnsemble(Ensemble):
    """Fold models behind one forward: pixels in, class probabilities out.

    The inference core :class:`~specimg.models.Ensemble` with the models' normalisation inside, so the artifact
    needs nothing but the image. Input: ``float32 [shape=(batch, 3, H, W)]`` raw pixel values in [0, 255] (a
    cached image, channels first) at the models' input size. Output: ``float32 [shape=(batch, n_classes)]``
    probabilities (multi-label: one sigmoid score per class).
    """

    def __init__(self, models: Sequence[nn.Module], mean: Sequence[float], std: Sequence[float],
                 tta: bool = True, activation: str = "softmax") -> None:
        super().__init__(models, normalize=PixelNormalize(mean, std), tta="flip" if tta else "none",
                         activation=activation)  # type: ignore[arg-type]


def export_run(run: PathLike, out: PathLike, *, format: Literal["onnx", "torchscript"] = "onnx",
               folds: Union[str, int, Sequence[int]] = "all", per_fold: bool = False, tta: bool = True,
               opset: int = 17) -> List[Path]:
    """Write a run's models as deployable artifacts.

    Parameters
    ----------
    run : path
        A run folder.
    out : path
        Artifact file (``.onnx`` or ``.pt``); with ``per_fold=True``,
        ``<stem>_fold<k><suffix>`` files beside it.
    format : {'onnx', 'torchscript'}
    folds : 'all', int or sequence of int
    per_fold : bool
        One artifact per fold model instead of the fold ensemble.
    tta : bool
        Include the horizontal-flip TTA in the graph.
    opset : int
        ONNX opset.

    Returns
    -------
    paths : list of Path
        The artifacts; each has a ``.json`` sidecar with the classes, input
        size and render config.
    """
    if format not in ("onnx", "torchscript"):
        raise ParameterError(f"The 'format' option must be 'onnx' or 'torchscript'. Got {format!r}.")
    from ..training import Run

    opened = Run.open(run)
    models, meta = opened.load_models(folds, device="cpu")
    task = opened.task
    activation = task.activation
    out = Path(out)
    groups = [([m], [k]) for m, k in zip(models, meta["folds"])] if per_fold else [(models, meta["folds"])]
    c, h, w = meta["input_size"]
    example = torch.rand(2, 3, h, w) * 255
    written = []
    for ms, ks in groups:
        target = out.with_name(f"{out.stem}_fold{ks[0]}{out.suffix}") if per_fold else out
        module = ExportedEnsemble(ms, meta["mean"], meta["std"], tta=tta, activation=activation).eval()
        with atomic_path(target, target.suffix) as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if format == "onnx":
                torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=["images"], output_names=["probs"],
                                  dynamic_axes={"images": {0: "batch"}, "probs": {0: "batch"}})
            else:
                torch.jit.save(torch.jit.trace(module, example), str(tmp))
        sidecar = {"format": format, "classes": meta["classes"], "folds": ks, "tta": tta, "task": task.kind,
                   "activation": activation, **({"thresholds": opened.thresholds} if opened.thresholds else {}),
                   "input": {"name": "images", "shape": ["batch", 3, h, w], "dtype": "float32",
                             "range": [0, 255], "layout": "NCHW, low frequencies at the bottom row"},
                   "render": meta["render"], "backbone": meta.get("backbone")}
        atomic_write_text(target.with_suffix(target.suffix + ".json"), json.dumps(sidecar, indent=2))
        written.append(target)
    return written
