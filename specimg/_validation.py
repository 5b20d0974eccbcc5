"""The parameter checks every config, recipe spec, stacker and command-line flag uses, in the style of
scikit-learn's ``check_scalar`` (a number is finite wherever a bound is given)::

    The 'lr' parameter of TrainConfig must be a finite number > 0. Got nan.

Every check returns the value (an int for a float option becomes a float).
"""

from __future__ import annotations

import argparse
import math
import numbers
from typing import Any, Iterable, NoReturn, Optional

from .exceptions import ParameterError

__all__ = [
    "fail",
    "check_int",
    "check_float",
    "check_positive",
    "check_probability",
    "check_fraction",
    "check_choice",
    "check_bool",
    "check_str",
    "finite_float",
    "ConfigBase",
    "config_section",
    "unknown_options_message",
]


def fail(owner: str, name: str, rule: str, value: Any, fix: str = "") -> NoReturn:
    """Raise the one :class:`ParameterError` wording: parameter, owner, rule, value, fix."""
    msg = f"The {name!r} parameter of {owner} must be {rule}. Got {value!r}."
    if fix:
        msg += f" {fix}"
    raise ParameterError(msg)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _interval(kind: str, low: Optional[float], high: Optional[float], include_low: bool, include_high: bool) -> str:
    if low is None and high is None:
        return kind
    if high is None:
        return f"{kind} {'>=' if include_low else '>'} {_fmt(low)}"  # type: ignore[arg-type]
    if low is None:
        return f"{kind} {'<=' if include_high else '<'} {_fmt(high)}"
    return f"{kind} in {'[' if include_low else '('}{_fmt(low)}, {_fmt(high)}{']' if include_high else ')'}"


def _outside(v: float, low: Optional[float], high: Optional[float], include_low: bool, include_high: bool) -> bool:
    if low is not None and (v < low or (v == low and not include_low)):
        return True
    return high is not None and (v > high or (v == high and not include_high))


def check_int(value: Any, name: str, *, owner: str, low: Optional[int] = None, high: Optional[int] = None,
              allow_none: bool = False, fix: str = "") -> Optional[int]:
    """An int (not a bool) in ``[low, high]``; numpy integers are accepted and returned as int."""
    if value is None and allow_none:
        return None
    rule = _interval("an int", low, high, True, True) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(owner, name, rule, value, fix)
    if _outside(int(value), low, high, True, True):
        fail(owner, name, rule, value, fix)
    return int(value)


def check_float(value: Any, name: str, *, owner: str, low: Optional[float] = None, high: Optional[float] = None,
                include_low: bool = True, include_high: bool = True, allow_none: bool = False,
                allow_inf: bool = False, fix: str = "") -> Optional[float]:
    """A real number (not a bool) in the interval; NaN is always refused, inf unless ``allow_inf``."""
    if value is None and allow_none:
        return None
    kind = "a number" if allow_inf else "a finite number"
    rule = _interval(kind, low, high, include_low, include_high) + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(owner, name, rule, value, fix)
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or _outside(v, low, high, include_low, include_high):
        fail(owner, name, rule, value, fix)
    return v


def check_positive(value: Any, name: str, *, owner: str, allow_none: bool = False, fix: str = "") -> Optional[float]:
    """A finite number > 0."""
    return check_float(value, name, owner=owner, low=0.0, include_low=False, allow_none=allow_none, fix=fix)


def check_probability(value: Any, name: str, *, owner: str, fix: str = "") -> float:
    """A number in [0, 1]."""
    return check_float(value, name, owner=owner, low=0.0, high=1.0, fix=fix)  # type: ignore[return-value]


def check_fraction(value: Any, name: str, *, owner: str, high: float = 1.0, fix: str = "") -> float:
    """A number in [0, high): the fraction of a size, a stretch factor, label smoothing."""
    return check_float(value, name, owner=owner, low=0.0, high=high, include_high=False,  # type: ignore[return-value]
                       fix=fix)


def check_choice(value: Any, name: str, choices: Iterable[Any], *, owner: str, fix: str = "",
                 allow_none: bool = False) -> Any:
    """One of ``choices`` (or None, with ``allow_none``)."""
    if value is None and allow_none:
        return None
    choices = tuple(choices)
    if isinstance(value, bool) or value not in choices:
        fail(owner, name, f"one of {', '.join(map(repr, choices))}", value, fix)
    return value


def check_bool(value: Any, name: str, *, owner: str) -> bool:
    """A bool (numpy bools included)."""
    if not isinstance(value, (bool,)) and type(value).__name__ != "bool_":
        fail(owner, name, "a bool", value)
    return bool(value)


def check_str(value: Any, name: str, *, owner: str, allow_none: bool = False, fix: str = "") -> Optional[str]:
    """A non-empty string."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        fail(owner, name, "a non-empty string" + (" or None" if allow_none else ""), value, fix)
    return value


def finite_float(text: str) -> float:
    """``argparse`` type of every float flag: a finite number (``nan``, ``inf`` and words are refused).

    Examples
    --------
    >>> finite_float("0.5")
    0.5
    >>> finite_float("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'nan' is not a finite number
    """
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


class ConfigBase:
    """What every frozen config dataclass shares: :meth:`to_dict` / :meth:`from_dict` (JSON-ready, round-trip),
    :meth:`replace` (a validated copy), and the one "unknown option" message.

    A field whose value is itself a config (a section of :class:`~specimg.config.TrainConfig`, the parts of
    :class:`~specimg.config.RenderConfig`) is given as that config or as a dict of its options.
    """

    #: A class attribute set by the subclass: how messages name it (default: the class name).
    _owner: str = ""

    def to_dict(self) -> dict:
        import dataclasses
        import json

        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Any) -> Any:
        import dataclasses

        if not isinstance(data, dict):
            fail(cls.__name__, "data", "a dict of options", data)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ParameterError(unknown_options_message(cls.__name__, unknown, names))
        return cls(**dict(data))

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (validated again)."""
        import dataclasses

        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def unknown_options_message(owner: str, unknown: Iterable[str], valid: Iterable[str], *,
                            elsewhere: Optional[dict] = None) -> str:
    """``"<owner> got unknown option(s) ['epocs'] (did you mean 'epochs'?); valid options are [...]."``

    ``elsewhere`` maps an option to where it belongs instead (``{'epochs': 'schedule'}``), for a key given in
    the wrong section.
    """
    import difflib

    valid = sorted(valid)
    hints = []
    for key in unknown:
        if elsewhere and key in elsewhere:
            hints.append(f"{key!r} belongs in {elsewhere[key]!r}")
            continue
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
        if close:
            hints.append(f"did you mean {close[0]!r} for {key!r}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return f"{owner} got unknown option(s) {sorted(map(str, unknown))}{hint}; valid options are {valid}."


def config_section(value: Any, cls: type, *, owner: str, name: str) -> Any:
    """A section of a config given as an instance of ``cls`` or as a dict of its options (checked)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls.from_dict(value)  # type: ignore[attr-defined]
    fail(owner, name, f"a {cls.__name__} or a dict of its options", value)
