"""Recipes: one YAML file that describes a whole experiment, validated (:func:`load_recipe`) into frozen dataclasses.

Example (the FSDD quick recipe, abridged)::

    name: fsdd-quick
    data:
      train: ../../../shared/datasets/fsdd/labels.csv   # relative to this file
      test_filter: {path: '_[0-4]\\.wav$'}               # takes 0-4 are the test set
      group_column: speaker
    render: {sample_rate: 8000, seconds: 1.0, hop: 0.5, n_fft: 32ms, hop_length: 8ms, image_size: 64}
    train:
      weights: none
      tta: none
      optim: {optimizer: adamw, lr: 0.003}
      schedule: {epochs: 10}
      augment: {hflip: 0.0}
    folds: 3
    models:
      - {name: resnet_mel64, backbone: test_resnet}
      - {name: effnet_mel64, backbone: test_efficientnet}
      - {name: resnet_mel32, backbone: test_resnet, render: {n_mels: 32}}
    stacking: {methods: [cnn, cnn-skip, lgbm], blend: {cnn: 0.45, cnn-skip: 0.45, lgbm: 0.1}}
    pseudo: {enabled: true, threshold: 0.85}
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .._io import PathLike
from ..config import (OPTION_SECTION, SECTIONS, AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig,
                      TrainConfig, ms_to_samples)
from ..exceptions import ParameterError

__all__ = ["Recipe", "DataSpec", "ModelSpec", "StackingSpec", "PseudoSpec", "load_recipe", "STACKERS"]

#: Stackers a recipe can list under ``stacking.methods`` (the runs' task decides which apply: ``'logistic'`` is
#: the per-class stacker of multi-label runs, the CNN and LightGBM stackers combine single-label probabilities).
STACKERS = ("mean", "cnn", "cnn-skip", "lgbm", "logistic")

_RENDER_SECTIONS = {"audio": AudioConfig, "segment": SegmentConfig, "spectrogram": SpectrogramConfig}
_FIELD_SECTION = {f.name: sec for sec, cls in _RENDER_SECTIONS.items() for f in dataclasses.fields(cls)}
_MS_FIELDS = ("n_fft", "hop_length", "win_length")
_TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
#: The keys of each train section (``train.schedule.epochs``...).
_SECTION_KEYS = {name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in SECTIONS.items()}
#: TrainConfig fields a recipe sets elsewhere (every model must share the fold split).
_TRAIN_ELSEWHERE = {
    "n_splits": "Set the number of folds once, with the top-level 'folds' key.",
    "group_column": "Set it once, as data.group_column.",
    "seed": "Set it once, with the top-level 'seed' key: the seed also draws the folds, and every model must "
            "share one fold split for stacking.",
    "backbone": "Set the backbone per model: models[i].backbone.",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------- helpers
def _where(recipe_file: Optional[Path]) -> str:
    return f" ({recipe_file})" if recipe_file is not None else ""


def _check_keys(mapping: Mapping[str, Any], allowed: Sequence[str], where: str, rf: Optional[Path],
                hints: Optional[Mapping[str, str]] = None, elsewhere: Optional[Mapping[str, str]] = None) -> None:
    """Refuse a key not in ``allowed``, with the closest valid name; ``elsewhere``: other keys -> where they go."""
    for key in mapping:
        if hints and key in hints:
            raise ParameterError(f"The key {key!r} is not allowed in {where}{_where(rf)}. {hints[key]}")
        if key not in allowed:
            if elsewhere and key in elsewhere:
                raise ParameterError(f"Unknown key {key!r} in {where}{_where(rf)}: it belongs in "
                                     f"{elsewhere[key]!r} ({elsewhere[key]}: {{{key}: ...}}).")
            close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            if not close and elsewhere:
                near = difflib.get_close_matches(str(key), list(elsewhere), n=1, cutoff=0.6)
                hint = f"Did you mean {near[0]!r} (in {elsewhere[near[0]]!r})? " if near else ""
            raise ParameterError(f"Unknown key {key!r} in {where}{_where(rf)}. {hint}Valid keys: "
                                 f"{', '.join(allowed)}.")


def _mapping(value: Any, where: str, rf: Optional[Path], *, allow_none: bool = True) -> Dict[str, Any]:
    if value is None and allow_none:
        return {}
    if not isinstance(value, Mapping):
        raise ParameterError(f"{where}{_where(rf)} must be a mapping of key: value. Got {value!r}.")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ParameterError(f"{where}{_where(rf)} has a non-text key {bad[0]!r}; quote it (e.g. '{bad[0]}').")
    return dict(value)


def _int(value: Any, where: str, rf: Optional[Path], lo: int, *, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ParameterError(f"{where}{_where(rf)} must be an int >= {lo}"
                             + (" or null" if allow_none else "") + f". Got {value!r}.")
    return int(value)


def _reword(exc: ParameterError, where: str, rf: Optional[Path]) -> ParameterError:
    return ParameterError(f"In {where}{_where(rf)}: {exc}")


def _nest_render(value: Any, where: str, rf: Optional[Path]) -> Dict[str, Dict[str, Any]]:
    """Render options written flat (``n_mfcc: 13``) or by section (``spectrogram: {n_mfcc: 13}``) -> by section."""
    flat = _mapping(value, where, rf)
    out: Dict[str, Dict[str, Any]] = {name: {} for name in _RENDER_SECTIONS}
    allowed = list(_RENDER_SECTIONS) + list(_FIELD_SECTION)

    def put(section: str, key: str, v: Any) -> None:
        if key in out[section]:
            raise ParameterError(f"{where}{_where(rf)} sets {key!r} twice (flat and under {section!r}); keep one.")
        out[section][key] = v

    for key, v in flat.items():
        if key in _RENDER_SECTIONS:
            sub = _mapping(v, f"{where}.{key}", rf)
            names = [f.name for f in dataclasses.fields(_RENDER_SECTIONS[key])]
            _check_keys(sub, names, f"{where}.{key}", rf)
            for kk, vv in sub.items():
                put(key, kk, vv)
        elif key in _FIELD_SECTION:
            put(_FIELD_SECTION[key], key, v)
        else:
            _check_keys({key: v}, allowed, where, rf)
    return out


def _merge_render(base: Mapping[str, Mapping[str, Any]], over: Mapping[str, Mapping[str, Any]]) -> Dict[str, Dict]:
    return {sec: {**base.get(sec, {}), **over.get(sec, {})} for sec in _RENDER_SECTIONS}


def _samples(value: Any, sr: int, key: str, where: str, rf: Optional[Path]) -> Any:
    """``'16ms'`` -> samples at ``sr``; numbers (and numeric strings) pass through as ints."""
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            if text.endswith("ms"):
                return ms_to_samples(float(text[:-2]), sr)
            return int(text)
        except ValueError:
            raise ParameterError(f"{where}.{key}{_where(rf)} must be samples (e.g. 2048) or milliseconds (e.g. "
                                 f"'16ms'). Got {value!r}.") from None
    return value


# --------------------------------------------------------------------------- the specs
@dataclass(frozen=True)
class DataSpec:
    """Where the audio is.

    Parameters
    ----------
    train : str
        Labelled training input: a CSV (``path,label[,group,...]``) or a
        class-folder tree; a relative path is relative to the recipe file.
    test : str or None
        Optional test input (CSV or folder; labels optional: when present,
        the report scores the test set too).
    test_filter : dict[str, str] or None
        ``{column: regular expression}``: the training rows whose column
        matches (every given column, ``re.search``) are moved to the test set
        (e.g. FSDD's takes 0-4: ``{path: '_[0-4]\\.wav$'}``).
    group_column : str or None
        Column whose values never straddle folds (speaker, patient).
    max_files_per_class : int or None
        Keep at most this many training files per class (seeded sample), for
        quick runs.
    """

    train: str
    test: Optional[str] = None
    test_filter: Optional[Mapping[str, str]] = None
    group_column: Optional[str] = None
    max_files_per_class: Optional[int] = None


@dataclass(frozen=True)
class ModelSpec:
    """One base model: a backbone with its render and training overrides.

    Parameters
    ----------
    name : str
        Folder name under ``OUT/models/``; letters, digits, ``_.-``.
    backbone : str
        timm name or registered backbone.
    weights : str or None
        ``'hub'``, ``'offline'``, ``'none'``, ``'auto'`` or a checkpoint path;
        None uses the shared ``train.weights``.
    render : dict
        Render overrides by section (``{'spectrogram': {'n_mfcc': 13}}``).
    train : dict
        :class:`~specimg.config.TrainConfig` overrides.
    """

    name: str
    backbone: str
    weights: Optional[str] = None
    render: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StackingSpec:
    """How the base models are combined.

    Parameters
    ----------
    methods : tuple of str
        Stackers, each scored by an inner cross-validation grouped by the
        outer folds: ``'mean'``, ``'cnn'``, ``'cnn-skip'``, ``'lgbm'``.
    blend : dict[str, float], 'fit', 'equal' or None
        The final blend: member -> weight (members are stackers of
        ``methods`` or model names), ``'fit'`` (weights of the ``methods``
        fitted on out-of-fold predictions), ``'equal'`` (the ``methods``
        with equal weights) or None (no blend).
    folds : int or None
        Inner cross-validation folds (default: the outer folds).
    cnn, lgbm : dict
        Extra arguments of :class:`~specimg.stacking.CNNStacker` (also
        used by ``cnn-skip``) and :class:`~specimg.stacking.LGBMStacker`.
    """

    methods: Tuple[str, ...] = ("cnn", "cnn-skip", "lgbm")
    blend: Union[None, str, Mapping[str, float]] = None
    folds: Optional[int] = None
    cnn: Mapping[str, Any] = field(default_factory=dict)
    lgbm: Mapping[str, Any] = field(default_factory=dict)

    def blend_members(self) -> Optional[Tuple[List[str], Optional[List[float]]]]:
        """``(members, weights)`` of the blend (weights None: fitted), or None without a blend."""
        if self.blend is None:
            return None
        if self.blend == "fit":
            return list(self.methods), None
        if self.blend == "equal":
            return list(self.methods), [1.0] * len(self.methods)
        if not isinstance(self.blend, Mapping):
            raise ParameterError(f"stacking.blend must be a mapping member: weight, 'fit', 'equal' or None. "
                                 f"Got {self.blend!r}.")
        return list(self.blend), [float(v) for v in self.blend.values()]


@dataclass(frozen=True)
class PseudoSpec:
    """Pseudo-labelling rounds.

    Parameters
    ----------
    enabled : bool
    threshold : float in (0, 1]
        A test file is pseudo-labelled when its top probability is above it
        (strictly: at exactly the threshold it is not).
    max_per_class : int or None
        At most this many pseudo-labels per class (most confident first).
    rounds : int
        Number of retraining rounds (1: ``OUT/round2/``; 2 adds ``OUT/round3/``
        whose pseudo-labels come from round 2).
    source : str
        Whose test predictions are thresholded: ``'blend'``, a stacker of
        ``stacking.methods``, or a model name.
    """

    enabled: bool = False
    threshold: float = 0.85
    max_per_class: Optional[int] = None
    rounds: int = 1
    source: str = "blend"


@dataclass(frozen=True)
class Recipe:
    """A validated experiment recipe (see :func:`load_recipe`).

    Attributes
    ----------
    name : str
    data : DataSpec
    render : dict
        Shared render options by section (``audio``, ``segment``, ``spectrogram``).
    train : dict
        Shared :class:`~specimg.config.TrainConfig` options.
    models : tuple of ModelSpec
    folds : int
    seed : int
    stacking : StackingSpec
    pseudo : PseudoSpec
    source : str or None
        The recipe file, when read from one.
    """

    name: str
    data: DataSpec
    models: Tuple[ModelSpec, ...]
    render: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    folds: int = 5
    seed: int = 0
    stacking: StackingSpec = field(default_factory=StackingSpec)
    pseudo: PseudoSpec = field(default_factory=PseudoSpec)
    source: Optional[str] = None

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise ParameterError(f"The recipe has no model {name!r}; its models are {[m.name for m in self.models]}.")

    def render_config(self, model: Union[str, ModelSpec]) -> RenderConfig:
        """The resolved :class:`~specimg.config.RenderConfig` of a model (shared options + its overrides)."""
        m = self.model(model) if isinstance(model, str) else model
        rf = Path(self.source) if self.source else None
        where = f"models[{self.models.index(m)}] ({m.name}).render"
        merged = _merge_render(self.render, m.render)
        try:
            audio = AudioConfig(**merged["audio"])
            spec = dict(merged["spectrogram"])
            for key in _MS_FIELDS:
                if key in spec and spec[key] is not None:
                    spec[key] = _samples(spec[key], audio.sample_rate, key, where, rf)
            if isinstance(spec.get("image_size"), list):
                spec["image_size"] = tuple(spec["image_size"])
            return RenderConfig(audio=audio, segment=SegmentConfig(**merged["segment"]),
                                spectrogram=SpectrogramConfig(**spec))
        except ParameterError as exc:
            raise _reword(exc, f"{where} (merged with the shared 'render' section)", rf) from None
        except TypeError as exc:  # a wrong type the dataclasses did not anticipate
            raise ParameterError(f"In {where}{_where(rf)}: {exc}") from None

    def train_config(self, model: Union[str, ModelSpec]) -> TrainConfig:
        """The resolved :class:`~specimg.config.TrainConfig` of a model."""
        m = self.model(model) if isinstance(model, str) else model
        rf = Path(self.source) if self.source else None
        where = f"models[{self.models.index(m)}] ({m.name}).train"
        kw: Dict[str, Any] = {**self.train, **m.train}
        for name in SECTIONS:  # a model's section options add to the shared section's
            if name in self.train or name in m.train:
                kw[name] = {**self.train.get(name, {}), **m.train.get(name, {})}
        if m.weights is not None:
            kw["weights"] = m.weights
        kw.update(backbone=m.backbone, n_splits=self.folds, group_column=self.data.group_column, seed=self.seed)
        if isinstance(kw.get("image_size"), list):
            kw["image_size"] = tuple(kw["image_size"])
        try:
            return TrainConfig(**kw)
        except ParameterError as exc:
            raise _reword(exc, f"{where} (merged with the shared 'train' section)", rf) from None
        except TypeError as exc:
            raise ParameterError(f"In {where}{_where(rf)}: {exc}") from None

    def to_dict(self) -> Dict[str, Any]:
        """The recipe as plain data (what ``OUT/recipe.json`` holds)."""
        d = dataclasses.asdict(self)
        d["models"] = [dataclasses.asdict(m) for m in self.models]
        return copy.deepcopy(d)


# --------------------------------------------------------------------------- loading
_TOP = ("name", "data", "render", "train", "models", "folds", "seed", "stacking", "pseudo")
_DATA = tuple(f.name for f in dataclasses.fields(DataSpec))
_MODEL = tuple(f.name for f in dataclasses.fields(ModelSpec))
_STACK = tuple(f.name for f in dataclasses.fields(StackingSpec))
_PSEUDO = tuple(f.name for f in dataclasses.fields(PseudoSpec))


def _resolve_path(value: Any, key: str, base: Path, rf: Optional[Path]) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ParameterError(f"data.{key}{_where(rf)} must be the path of a CSV or a folder of audio. Got {value!r}.")
    p = Path(os.path.expanduser(str(value)))
    return str(p if p.is_absolute() else (base / p).resolve())


def _load_data(raw: Any, base: Path, rf: Optional[Path]) -> DataSpec:
    d = _mapping(raw, "the 'data' section", rf, allow_none=False)
    _check_keys(d, _DATA, "the 'data' section", rf)
    if "train" not in d:
        raise ParameterError(f"The 'data' section{_where(rf)} needs a 'train' key: the labelled training CSV or "
                             "class-folder tree, relative to the recipe file.")
    train = _resolve_path(d["train"], "train", base, rf)
    test = _resolve_path(d["test"], "test", base, rf) if d.get("test") is not None else None
    tf = d.get("test_filter")
    if test is not None and tf:
        raise ParameterError(f"The 'data' section{_where(rf)} gives both 'test' and 'test_filter'; keep one: a "
                             "separate test input, or a filter that moves training rows to the test set.")
    if tf is not None:
        tf = _mapping(tf, "data.test_filter", rf)
        if not tf:
            tf = None
        else:
            for col, pattern in tf.items():
                if not isinstance(pattern, str):
                    raise ParameterError(f"data.test_filter.{col}{_where(rf)} must be a regular expression (text). "
                                         f"Got {pattern!r}.")
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ParameterError(f"data.test_filter.{col}{_where(rf)} is not a valid regular expression "
                                         f"({exc}). Got {pattern!r}.") from None
    gc = d.get("group_column")
    if gc is not None and (not isinstance(gc, str) or not gc):
        raise ParameterError(f"data.group_column{_where(rf)} must be a column name or null. Got {gc!r}.")
    mpc = _int(d.get("max_files_per_class"), "data.max_files_per_class", rf, 1, allow_none=True)
    return DataSpec(train=train, test=test, test_filter=tf, group_column=gc, max_files_per_class=mpc)


def _load_train(raw: Any, key: str, rf: Optional[Path], *, shared: bool) -> Dict[str, Any]:
    """A train section (``key``: ``'train'`` or ``'models[i].train'``): TrainConfig's top-level options, and its
    sections (``schedule: {epochs: 8}``...)."""

    def where(k: str) -> str:
        return f"the {k!r} section" if shared else k

    t = _mapping(raw, where(key), rf)
    hints = dict(_TRAIN_ELSEWHERE)
    if not shared:
        hints["weights"] = "Set a model's weights with models[i].weights."
    _check_keys(t, _TRAIN_FIELDS, where(key), rf, hints=hints,
                elsewhere={k: f"{key}.{s}" for k, s in OPTION_SECTION.items() if k not in _TRAIN_FIELDS})
    for name, keys in _SECTION_KEYS.items():
        if name in t:
            t[name] = _mapping(t[name], where(f"{key}.{name}"), rf)
            _check_keys(t[name], keys, where(f"{key}.{name}"), rf)
    return t


def _load_model(raw: Any, i: int, rf: Optional[Path]) -> ModelSpec:
    where = f"models[{i}]"
    m = _mapping(raw, where, rf, allow_none=False)
    hints = {k: f"Put training options under {where}.train." for k in (*_TRAIN_FIELDS, *OPTION_SECTION)
             if k not in _MODEL and k not in _FIELD_SECTION}
    hints.update({k: f"Put render options under {where}.render." for k in _FIELD_SECTION if k not in _MODEL})
    _check_keys(m, _MODEL, where, rf, hints=hints)
    for key in ("name", "backbone"):
        if key not in m:
            raise ParameterError(f"{where}{_where(rf)} needs a {key!r} key"
                                 + (" (a folder name: letters, digits, _ . -)." if key == "name" else
                                    " (a timm model name such as 'resnet50', or a registered backbone)."))
    name = m["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ParameterError(f"{where}.name{_where(rf)} must be a folder name of letters, digits, '_', '.' or '-' "
                             f"(it names OUT/models/<name>). Got {name!r}.")
    if name in ("blend",) + STACKERS:
        raise ParameterError(f"{where}.name{_where(rf)} must not be {name!r}, which names a stacker. Rename it.")
    backbone = m["backbone"]
    if not isinstance(backbone, str) or not backbone.strip():
        raise ParameterError(f"{where}.backbone{_where(rf)} must be a timm model name. Got {backbone!r}.")
    weights = m.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights.strip()):
        raise ParameterError(f"{where}.weights{_where(rf)} must be 'auto', 'hub', 'offline', 'none' or a checkpoint "
                             f"path. Got {weights!r}.")
    render = _nest_render(m.get("render"), f"{where}.render", rf)
    train = _load_train(m.get("train"), f"{where}.train", rf, shared=False)
    return ModelSpec(name=name, backbone=backbone.strip(), weights=weights, render=render, train=train)


def _load_stacking(raw: Any, models: Sequence[ModelSpec], folds: int, rf: Optional[Path]) -> StackingSpec:
    s = _mapping(raw, "the 'stacking' section", rf)
    _check_keys(s, _STACK, "the 'stacking' section", rf)
    methods = s.get("methods", StackingSpec.methods)
    if isinstance(methods, str):
        methods = [methods]
    if methods is None:
        methods = []
    if not isinstance(methods, (list, tuple)):
        raise ParameterError(f"stacking.methods{_where(rf)} must be a list of {', '.join(STACKERS)}. Got {methods!r}.")
    for meth in methods:
        if meth not in STACKERS:
            close = difflib.get_close_matches(str(meth), STACKERS, n=1, cutoff=0.5)
            raise ParameterError(f"stacking.methods{_where(rf)} lists {meth!r}, which is not a stacker. "
                                 + (f"Did you mean {close[0]!r}? " if close else "")
                                 + f"Choose from {', '.join(STACKERS)}.")
    if len(set(methods)) != len(methods):
        raise ParameterError(f"stacking.methods{_where(rf)} repeats a method: {list(methods)}.")
    if "mean" in methods and len(models) < 2:
        raise ParameterError(f"stacking.methods{_where(rf)} lists 'mean', which averages the models, but the recipe "
                             f"has one model ({models[0].name}). Drop 'mean', or add a model.")
    inner = _int(s.get("folds"), "stacking.folds", rf, 2, allow_none=True)
    if inner is not None and inner > folds:
        raise ParameterError(f"stacking.folds{_where(rf)} must be <= the {folds} outer folds (the inner splits are "
                             f"grouped by outer fold). Got {inner}.")
    blend = s.get("blend")
    names = [m.name for m in models]
    if blend is not None:
        if isinstance(blend, str):
            if blend not in ("fit", "equal"):
                raise ParameterError(f"stacking.blend{_where(rf)} must be a mapping member: weight, 'fit', 'equal' "
                                     f"or null. Got {blend!r}.")
            if len(methods) < 2:
                raise ParameterError(f"stacking.blend: {blend}{_where(rf)} blends the stacking.methods, but "
                                     + (f"only {methods[0]!r} is" if methods else "none is") + " listed. List two "
                                     "or more methods, give the blend as a mapping member: weight, or set blend: "
                                     "null.")
        else:
            bm = _mapping(blend, "stacking.blend", rf)
            if not bm:
                raise ParameterError(f"stacking.blend{_where(rf)} is empty; give member: weight pairs or null.")
            valid = list(methods) + names
            for member, w in bm.items():
                if member not in valid:
                    close = difflib.get_close_matches(member, valid, n=1, cutoff=0.5)
                    raise ParameterError(
                        f"stacking.blend{_where(rf)} names {member!r}, which is neither a stacker of "
                        f"stacking.methods ({', '.join(methods) or 'none'}) nor a model ({', '.join(names)}). "
                        + (f"Did you mean {close[0]!r}? " if close else "")
                        + ("Add it to stacking.methods." if member in STACKERS else ""))
                if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                    raise ParameterError(f"stacking.blend.{member}{_where(rf)} must be a weight >= 0. Got {w!r}.")
            if len(bm) < 2:
                raise ParameterError(f"stacking.blend{_where(rf)} has one member ({next(iter(bm))!r}); a blend "
                                     "combines two or more. Add members, or set blend: null.")
            if sum(float(w) for w in bm.values()) <= 0:
                raise ParameterError(f"stacking.blend{_where(rf)} weights must not all be 0. Got {bm}.")
            blend = {k: float(v) for k, v in bm.items()}
    from ..stacking import CNNStacker

    cnn = _mapping(s.get("cnn"), "stacking.cnn", rf)
    cnn_params = [p for p in inspect.signature(CNNStacker.__init__).parameters if p not in ("self", "skip", "classes")]
    _check_keys(cnn, cnn_params, "stacking.cnn", rf,
                hints={"skip": "Use the method 'cnn-skip' for the residual variant."})
    lgbm = _mapping(s.get("lgbm"), "stacking.lgbm", rf)
    if "classes" in lgbm:
        raise ParameterError(f"stacking.lgbm{_where(rf)} must not set 'classes'; they come from the data.")
    return StackingSpec(methods=tuple(methods), blend=blend, folds=inner, cnn=cnn, lgbm=lgbm)


def _load_pseudo(raw: Any, stacking: StackingSpec, models: Sequence[ModelSpec], has_test: bool,
                 rf: Optional[Path]) -> PseudoSpec:
    p = _mapping(raw, "the 'pseudo' section", rf)
    _check_keys(p, _PSEUDO, "the 'pseudo' section", rf)
    enabled = p.get("enabled", True if p else False)
    if not isinstance(enabled, bool):
        raise ParameterError(f"pseudo.enabled{_where(rf)} must be true or false. Got {enabled!r}.")
    thr = p.get("threshold", 0.85)
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 < thr <= 1:
        raise ParameterError(f"pseudo.threshold{_where(rf)} must be a probability in (0, 1], e.g. 0.85. Got {thr!r}.")
    mpc = _int(p.get("max_per_class"), "pseudo.max_per_class", rf, 1, allow_none=True)
    rounds = _int(p.get("rounds", 1), "pseudo.rounds", rf, 1)
    source = p.get("source", "blend")
    valid = (["blend"] if stacking.blend is not None else []) + list(stacking.methods) + [m.name for m in models]
    if enabled:
        if source not in valid:
            raise ParameterError(f"pseudo.source{_where(rf)} must be one of {', '.join(valid)} (whose test "
                                 f"predictions are thresholded). Got {source!r}.")
        if not has_test:
            raise ParameterError(f"pseudo.enabled is true{_where(rf)} but there is no test set to pseudo-label. Add "
                                 "data.test (or data.test_filter), or set pseudo.enabled: false.")
    return PseudoSpec(enabled=enabled, threshold=float(thr), max_per_class=mpc, rounds=int(rounds or 1),
                      source=str(source))


def load_recipe(source: Union[PathLike, Mapping[str, Any]], *, base_dir: Optional[PathLike] = None) -> Recipe:
    """Read and validate a recipe.

    Parameters
    ----------
    source : path or mapping
        A YAML file, or the recipe as a mapping (e.g. built in code).
    base_dir : path, optional
        Folder that relative data paths are resolved against: by default the
        recipe file's folder, or the working directory for a mapping.

    Returns
    -------
    recipe : Recipe
        Every model's render and train configs have been built once, so a bad
        value has already failed here.

    Raises
    ------
    ParameterError
        A YAML syntax error, an unknown key (with the closest valid name), a
        missing key, or a bad value; the message names the key and the fix.

    Examples
    --------
    >>> recipe = load_recipe("examples/recipes/music_genre_quick.yaml")  # doctest: +SKIP
    >>> [m.name for m in recipe.models]  # doctest: +SKIP
    """
    import yaml

    rf: Optional[Path] = None
    if isinstance(source, Mapping):
        raw: Any = copy.deepcopy(dict(source))
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        rf = Path(source)
        if not rf.is_file():
            raise ParameterError(f"Recipe file {str(rf)!r} does not exist. Give the path of a YAML recipe, e.g. "
                                 "examples/recipes/music_genre_quick.yaml.")
        try:
            raw = yaml.safe_load(rf.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ParameterError(f"Recipe file {str(rf)!r} is not valid YAML: {exc}") from None
        base = Path(base_dir) if base_dir is not None else rf.resolve().parent
    top = _mapping(raw, "The recipe", rf, allow_none=False)
    _check_keys(top, _TOP, "the recipe's top level", rf)
    for key in ("data", "models"):
        if key not in top:
            raise ParameterError(f"The recipe{_where(rf)} needs a {key!r} section.")
    name = top.get("name") or (rf.stem if rf is not None else "experiment")
    if not isinstance(name, str):
        raise ParameterError(f"The recipe's 'name'{_where(rf)} must be text. Got {name!r}.")
    data = _load_data(top["data"], base, rf)
    folds = _int(top.get("folds", 5), "The top-level 'folds'", rf, 2)
    seed = _int(top.get("seed", 0), "The top-level 'seed'", rf, 0)
    render = _nest_render(top.get("render"), "the 'render' section", rf)
    train = _load_train(top.get("train"), "train", rf, shared=True)
    models_raw = top["models"]
    if not isinstance(models_raw, (list, tuple)) or not models_raw:
        raise ParameterError(f"The recipe's 'models'{_where(rf)} must be a non-empty list of models "
                             "(each with name and backbone).")
    models = tuple(_load_model(m, i, rf) for i, m in enumerate(models_raw))
    seen: Dict[str, int] = {}
    for i, m in enumerate(models):
        if m.name in seen:
            raise ParameterError(f"models[{i}].name{_where(rf)} repeats {m.name!r} (also models[{seen[m.name]}]); "
                                 "every model needs its own name.")
        seen[m.name] = i
    stacking = _load_stacking(top.get("stacking"), models, folds, rf)
    has_test = data.test is not None or data.test_filter is not None
    pseudo = _load_pseudo(top.get("pseudo"), stacking, models, has_test, rf)
    recipe = Recipe(name=name, data=data, models=models, render=render, train=train, folds=folds, seed=seed,
                    stacking=stacking, pseudo=pseudo, source=str(rf.resolve()) if rf is not None else None)
    for m in models:  # build every config once: a bad value fails now, naming its key
        recipe.render_config(m)
        recipe.train_config(m)
    return recipe
