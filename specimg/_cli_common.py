"""Render options shared by every CLI subcommand that renders audio."""

from __future__ import annotations

import argparse
from typing import Dict, Optional, Tuple

from .config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig, ms_to_samples
from ._validation import finite_float
from .exceptions import ParameterError

__all__ = ["add_render_options", "render_config_from_args", "parse_class_hop", "parse_image_size",
           "add_table_options", "input_table"]


def parse_class_hop(items) -> Dict[str, float]:
    """``['1=5', 'blues=5']`` → ``{'1': 5.0, 'blues': 5.0}``."""
    out: Dict[str, float] = {}
    for item in items or []:
        label, sep, value = str(item).rpartition("=")
        if not sep or not label:
            raise ParameterError(f"--class-hop {item!r} must be LABEL=SECONDS, e.g. --class-hop blues=5.")
        try:
            out[label] = float(value)
        except ValueError:
            raise ParameterError(f"--class-hop {item!r}: {value!r} is not a number of seconds.") from None
    return out


def parse_image_size(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """``'512'`` → (512, 512); ``'256x512'`` → (256, 512) as (height, width)."""
    if text is None:
        return None
    parts = str(text).lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise ParameterError(f"--image-size {text!r} must be N or HxW in pixels, e.g. 512 or 256x512.") from None
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2:
        raise ParameterError(f"--image-size {text!r} must be N or HxW in pixels.")
    return size  # type: ignore[return-value]


def _samples(text: Optional[str], sr: int, option: str) -> Optional[int]:
    """An STFT length given as samples (``'2048'``) or milliseconds (``'16ms'``)."""
    if text is None:
        return None
    t = str(text).strip().lower()
    try:
        if t.endswith("ms"):
            return ms_to_samples(float(t[:-2]), sr)
        return int(t)
    except ValueError:
        raise ParameterError(f"{option} {text!r} must be samples (2048) or milliseconds (16ms).") from None


def add_render_options(p: argparse.ArgumentParser) -> None:
    """Add the options that decide how audio becomes images."""
    g = p.add_argument_group("rendering (audio -> images)")
    g.add_argument("--sample-rate", type=int, default=22050, help="resample every file to this rate (Hz; default 22050)")
    g.add_argument("--offset", type=finite_float, default=0.0, help="skip this many seconds at the start of each file")
    g.add_argument("--duration", type=finite_float, default=None, help="keep only this many seconds (e.g. 1 for 'first 1 s')")
    g.add_argument("--min-seconds", type=finite_float, default=None,
                   help="extend shorter files to this length (default: one window; the music seed used 120)")
    g.add_argument("--pad-mode", choices=("tile", "zero", "none"), default="tile",
                   help="how short files are extended: loop them (tile, default), add silence (zero) or not at all")
    g.add_argument("--allow-truncated", action="store_true",
                   help="keep what a truncated file holds (its header announces more audio than is there) and "
                        "list it as a warning, instead of listing it as an error")
    g.add_argument("--seconds", type=finite_float, default=20.0, help="window length in seconds (default 20)")
    g.add_argument("--hop", type=finite_float, default=10.0, help="hop between windows in seconds (default 10)")
    g.add_argument("--class-hop", action="append", default=[], metavar="LABEL=SECONDS",
                   help="per-class hop for training files (repeatable), e.g. --class-hop 1=5 to oversample class 1")
    g.add_argument("--last", choices=("align_end", "drop"), default="align_end",
                   help="tail policy: one more window ending at the file's end (default) or drop the tail")
    g.add_argument("--feature", choices=("mel", "mfcc"), default="mel")
    g.add_argument("--n-fft", default=None, help="STFT size in samples or ms, e.g. 2048 or 16ms (default: the largest "
                   "power of two within 46.4 ms at --sample-rate: 1024 at 22.05 kHz, 256 at 8 kHz)")
    g.add_argument("--hop-length", default=None, help="STFT hop in samples or ms, e.g. 512 or 8ms (default: 11.6 ms "
                   "at --sample-rate: 256 at 22.05 kHz, 93 at 8 kHz)")
    g.add_argument("--n-mels", type=int, default=None,
                   help="mel bands (default: 128, fewer where the STFT is too short for 128 non-empty bands)")
    g.add_argument("--n-mfcc", type=int, default=20)
    g.add_argument("--fmin", type=finite_float, default=0.0)
    g.add_argument("--fmax", type=finite_float, default=None)
    g.add_argument("--top-db", type=finite_float, default=80.0)
    g.add_argument("--image-size", default="512", help="image size N or HxW (default 512)")
    g.add_argument("--channels", choices=("replicate", "delta"), default="replicate",
                   help="3 copies of the image (default) or feature/delta/delta-delta")


def render_config_from_args(args: argparse.Namespace) -> RenderConfig:
    """Build a validated :class:`RenderConfig` from parsed options."""
    sr = args.sample_rate
    return RenderConfig(
        audio=AudioConfig(sample_rate=sr, offset=args.offset, duration=args.duration, min_seconds=args.min_seconds,
                          pad_mode=args.pad_mode, allow_truncated=bool(getattr(args, "allow_truncated", False))),
        segment=SegmentConfig(seconds=args.seconds, hop=args.hop, class_hop=parse_class_hop(args.class_hop),
                              last=args.last),
        spectrogram=SpectrogramConfig(
            feature=args.feature, n_fft=_samples(args.n_fft, sr, "--n-fft"),
            hop_length=_samples(args.hop_length, sr, "--hop-length"), n_mels=args.n_mels, n_mfcc=args.n_mfcc,
            fmin=args.fmin, fmax=args.fmax, top_db=args.top_db, image_size=parse_image_size(args.image_size),
            channels=args.channels),
    )


def add_table_options(p: argparse.ArgumentParser) -> None:
    """``--annotation-column`` and ``--recording``: how an annotation (Raven selection) table is read."""
    g = p.add_argument_group("annotation tables (multi-label input)")
    g.add_argument("--annotation-column", metavar="COL", default=None,
                   help="the column of a Raven selection table (or of a path,start,end,... table) that holds the "
                        "tags (default: the first of Annotation, Species, Label, ... present)")
    g.add_argument("--recording", metavar="PATH", default=None,
                   help="the audio file a Raven selection table without a 'Begin Path' / 'Begin File' column "
                        "annotates (relative to the table's folder)")


def input_table(args: argparse.Namespace, source: str):
    """``source`` as given, or (with ``--annotation-column`` / ``--recording``) the table read with them."""
    column, recording = getattr(args, "annotation_column", None), getattr(args, "recording", None)
    if column is None and recording is None:
        return source
    from .audio import read_table

    return read_table(source, annotation_column=column, recording=recording)
