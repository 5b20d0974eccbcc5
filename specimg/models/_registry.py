"""A registry of user backbones, looked up by name beside timm's models.

Users add their own networks with :func:`register_backbone`; :func:`create_backbone`
looks a name up here first, then in timm.
"""

from __future__ import annotations

import fnmatch
import inspect
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar, Union, overload

from torch import nn

from ..exceptions import ParameterError

__all__ = ["register_backbone", "list_backbones"]

#: A factory ``fn(*, num_classes, pretrained, **kwargs) -> nn.Module``.
BackboneFactory = Callable[..., nn.Module]
Registrable = Union[type, BackboneFactory]
R = TypeVar("R", bound=Registrable)


@dataclass(frozen=True)
class _Entry:
    """One registered backbone: an ``nn.Module`` subclass (``is_class``), built as ``cls(num_classes=..., **kwargs)``,
    or a factory, ``fn(num_classes=..., pretrained=..., **kwargs)``.
    """

    name: str
    builder: Registrable
    is_class: bool


_BACKBONES: dict[str, _Entry] = {}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ParameterError(
            "The 'name' parameter of register_backbone must be a non-empty string without leading or "
            f"trailing spaces. Got {name!r}."
        )
    return name


def _add(name: str, obj: object, stacklevel: int) -> None:
    is_class = inspect.isclass(obj)
    if is_class and not issubclass(obj, nn.Module):  # type: ignore[arg-type]
        raise ParameterError(
            f"register_backbone({name!r}) needs a torch.nn.Module subclass or a factory function "
            f"fn(*, num_classes, pretrained, **kwargs) -> nn.Module. Got the class {obj!r}, "
            "which is not an nn.Module."
        )
    if not is_class and (not callable(obj) or isinstance(obj, nn.Module)):
        raise ParameterError(
            f"register_backbone({name!r}) needs a torch.nn.Module subclass or a factory function "
            f"fn(*, num_classes, pretrained, **kwargs) -> nn.Module. Got {type(obj).__name__} {obj!r}. "
            "An already-built module can be passed to create_backbone directly."
        )
    old = _BACKBONES.get(name)
    if old is not None:
        warnings.warn(
            f"Backbone {name!r} was already registered ({old.builder!r}); it now refers to {obj!r}.",
            UserWarning,
            stacklevel=stacklevel,
        )
    else:
        import timm

        if timm.is_model(name):
            warnings.warn(
                f"Registering backbone {name!r} hides timm's model of the same name; "
                f"create_backbone({name!r}) now builds {obj!r}.",
                UserWarning,
                stacklevel=stacklevel,
            )
    _BACKBONES[name] = _Entry(name=name, builder=obj, is_class=is_class)  # type: ignore[arg-type]


@overload
def register_backbone(name: str) -> Callable[[R], R]: ...


@overload
def register_backbone(name: str, fn: R) -> R: ...


def register_backbone(name: str, fn: Optional[R] = None):
    """Register a backbone under ``name`` so :func:`create_backbone` can build it.

    Use as a decorator, ``@register_backbone("my_net")``, or call it,
    ``register_backbone("my_net", fn)``. Registering a name twice replaces the
    first entry with a ``UserWarning``; so does hiding a timm model name.

    Parameters
    ----------
    name : str
        The name to build it by.
    fn : type or callable, optional
        Either an ``nn.Module`` subclass, built as ``cls(num_classes=..., **kwargs)``,
        or a factory ``fn(*, num_classes, pretrained, **kwargs) -> nn.Module``, where
        ``pretrained`` asks the factory for its own pretrained weights
        (``weights="hub"`` or ``"auto"`` in :func:`create_backbone`).
        Omit it to get a decorator.

    Returns
    -------
    fn or decorator
        ``fn`` itself (unchanged) in the call form; a decorator that registers and
        returns its argument in the decorator form.

    Raises
    ------
    ParameterError
        If ``name`` is not a non-empty string, or ``fn`` is neither an
        ``nn.Module`` subclass nor a callable.

    Examples
    --------
    >>> from torch import nn
    >>> @register_backbone("tiny_cnn")
    ... class TinyCNN(nn.Module):
    ...     def __init__(self, num_classes: int, width: int = 8):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(3, width, 3, padding=1)
    ...         self.fc = nn.Linear(width, num_classes)
    ...     def forward(self, x):  # x: (B, 3, H, W)
    ...         return self.fc(self.conv(x).mean((2, 3)))  # (B, num_classes)
    >>> "tiny_cnn" in list_backbones("tiny*")
    True
    """
    _check_name(name)
    if fn is not None:
        _add(name, fn, stacklevel=3)
        return fn

    def decorator(obj: R) -> R:
        _add(name, obj, stacklevel=3)
        return obj

    return decorator


def _unregister(name: str) -> None:
    """Remove ``name`` from the registry (for tests); a missing name is ignored."""
    _BACKBONES.pop(name, None)


def _get_entry(name: str) -> Optional[_Entry]:
    return _BACKBONES.get(name)


def list_backbones(pattern: Optional[str] = None) -> list[str]:
    """Names :func:`create_backbone` accepts: registered backbones, then timm's.

    Parameters
    ----------
    pattern : str, optional
        A shell-style wildcard (``"efficientnet*"``) the names must match.

    Returns
    -------
    list of str
        Registered names (sorted) followed by timm's architecture names
        (sorted, ``timm.list_models``), without duplicates. timm names also
        accept a pretrained tag (``"resnet50.a1_in1k"``, see ``timm.list_pretrained``).

    Examples
    --------
    >>> "tf_efficientnet_lite0" in list_backbones("tf_efficientnet_lite*")
    True
    """
    import timm

    if pattern is not None and not isinstance(pattern, str):
        raise ParameterError(
            f"The 'pattern' parameter of list_backbones must be a wildcard string such as 'resnet*' or None. "
            f"Got {pattern!r}."
        )
    own = sorted(n for n in _BACKBONES if pattern is None or fnmatch.fnmatchcase(n, pattern))
    seen = set(own)
    return own + [n for n in timm.list_models(pattern or "") if n not in seen]
