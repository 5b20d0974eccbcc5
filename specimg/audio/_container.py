"""Truncated files: what a container's header announces against what the file holds.

libsndfile trusts what it can read: a WAV whose header announces 120 s but whose download stopped after
200 bytes opens as a 4 ms file, without a word. Checked here: WAV / RIFX ``data`` chunk size, AIFF / AIFC
``COMM`` frame count, AU data size, complete FLAC metadata blocks, complete Ogg pages ending with the
end-of-stream flag. For other formats (MP3, CAF, W64...) :func:`~specimg.audio.load_audio` compares the frames
the header announces with those it decodes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

__all__ = ["Truncation", "inspect_container"]

#: What an Ogg container announces: no length, but a last page flagged end-of-stream.
OGG_ANNOUNCED = "an Ogg stream ending with an end-of-stream page"


@dataclass(frozen=True)
class Truncation:
    """A file that holds less than its header announces.

    Attributes
    ----------
    announced : str
        What the header says, e.g. ``"120.0 s (960000 samples at 8000 Hz)"`` or ``"3906 bytes"``.
    held : str
        What the file holds, in the same unit.
    usable : bool
        Whether any audio can be decoded from what is there (``False``: the file is cut inside its
        header).
    keep_bytes : int or None
        Decode only this many leading bytes (an Ogg stream cut inside a page: its complete pages), or
        ``None`` for the whole file.
    """

    announced: str
    held: str
    usable: bool = True
    keep_bytes: Optional[int] = None

    def describe(self) -> str:
        """``"header says X, file holds Y"``."""
        return f"header says {self.announced}, file holds {self.held}"


def seconds_text(frames: float, sr: float) -> str:
    """``"0.241 s (1931 samples at 8000 Hz)"``: a length both in seconds and in samples."""
    s = frames / sr if sr > 0 else 0.0
    secs = f"{s:.1f}" if s >= 10 else f"{s:.3f}" if s >= 0.001 or s == 0 else f"{s:.6f}"
    return f"{secs} s ({int(frames)} samples at {int(sr)} Hz)"


def inspect_container(path: "os.PathLike[str] | str") -> Optional[Truncation]:
    """Compare the length a file's header announces with what the file holds.

    Reads headers only (no audio is decoded), so it costs a few small reads per file.

    Parameters
    ----------
    path : str or os.PathLike
        An existing, non-empty file.

    Returns
    -------
    truncation : Truncation or None
        ``None`` when the header and the file agree, or when the format states no length.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(12)
        fh.seek(0)
        if magic[:4] in (b"RIFF", b"RIFX") and magic[8:12] == b"WAVE":
            return _riff(fh, size, big=magic[:4] == b"RIFX")
        if magic[:4] == b"FORM" and magic[8:12] in (b"AIFF", b"AIFC"):
            return _aiff(fh, size, path)
        if magic[:4] == b".snd":
            return _au(fh, size)
        if magic[:4] == b"fLaC":
            return _flac(fh, size)
        if magic[:4] == b"OggS":
            return _ogg(fh, size)
    return None


def _header_cut(size: int, announced: int) -> Truncation:
    return Truncation(f"{announced} bytes", f"{size} bytes, cut inside its header", usable=False)


def _chunk_id(cid: bytes) -> bool:
    """A RIFF / IFF chunk name: four printable ASCII characters."""
    return len(cid) == 4 and all(32 <= c < 127 for c in cid)


def _riff(fh: BinaryIO, size: int, *, big: bool) -> Optional[Truncation]:
    end = ">" if big else "<"
    riff_size = struct.unpack(end + "I", fh.read(8)[4:])[0] + 8
    fh.seek(12)
    byte_rate = block_align = sr = 0
    while True:
        pos = fh.tell()
        head = fh.read(8)
        if len(head) < 8:  # no 'data' chunk before the end of the file
            return _header_cut(size, riff_size) if riff_size > size else None
        cid, csize = head[:4], struct.unpack(end + "I", head[4:])[0]
        if not _chunk_id(cid) or (cid == b"fmt " and not 14 <= csize <= 256):
            return None  # not a header cut short but a malformed one: the decoder says what is wrong
        if cid == b"fmt ":
            fmt = fh.read(min(csize, 16))
            if len(fmt) < 16:
                return _header_cut(size, riff_size)
            _, _, sr, byte_rate, block_align = struct.unpack(end + "HHIIH", fmt[:14])
        if cid == b"data":
            data_at = pos + 8
            if csize in (0, 0xFFFFFFFF) or byte_rate <= 0:  # size left open by a streaming writer
                return None
            held = max(0, size - data_at)
            if held >= csize:
                return None
            held -= held % max(block_align, 1)
            frame_bytes = max(block_align, 1)
            rate = byte_rate / frame_bytes  # frames per second (the sample rate for PCM)
            return Truncation(seconds_text(csize / frame_bytes, rate or sr), seconds_text(held / frame_bytes, rate or sr),
                              usable=held > 0)
        fh.seek(pos + 8 + csize + (csize & 1))


def _aiff(fh: BinaryIO, size: int, path: Path) -> Optional[Truncation]:
    form_size = struct.unpack(">I", fh.read(8)[4:])[0] + 8
    fh.seek(12)
    frames = None
    sr = 0.0
    while True:
        pos = fh.tell()
        head = fh.read(8)
        if len(head) < 8:
            return _header_cut(size, form_size) if form_size > size or frames is None else None
        cid, csize = head[:4], struct.unpack(">I", head[4:])[0]
        if not _chunk_id(cid) or (cid == b"COMM" and not 18 <= csize <= 1024):
            return None  # malformed rather than cut short
        if cid == b"COMM":
            comm = fh.read(18)
            if len(comm) < 18:
                return _header_cut(size, form_size)
            frames = struct.unpack(">I", comm[2:6])[0]
            sr = _extended(comm[8:18])
        if cid == b"SSND":
            break
        fh.seek(pos + 8 + csize + (csize & 1))
    if frames is None:
        return _header_cut(size, form_size)
    import soundfile as sf

    try:
        found = sf.info(str(path)).frames  # libsndfile counts the frames that are there
    except Exception:  # the caller's decoder reports what is wrong with the file
        return None
    if found >= frames:
        return None
    return Truncation(seconds_text(frames, sr), seconds_text(found, sr), usable=found > 0)


def _extended(b: bytes) -> float:
    """An IEEE 754 80-bit extended float (AIFF's sample rate)."""
    exp = ((b[0] & 0x7F) << 8) | b[1]
    mant = int.from_bytes(b[2:10], "big")
    if exp == 0 and mant == 0:
        return 0.0
    return (-1.0 if b[0] & 0x80 else 1.0) * mant * 2.0 ** (exp - 16383 - 63)


def _au(fh: BinaryIO, size: int) -> Optional[Truncation]:
    head = fh.read(24)
    if len(head) < 24:
        return _header_cut(size, 24)
    offset, data_size, encoding, sr, channels = struct.unpack(">IIIII", head[4:24])
    width = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}.get(encoding)
    if data_size == 0xFFFFFFFF or width is None or channels == 0:
        return None
    if size < offset:
        return _header_cut(size, offset)
    held = size - offset
    if held >= data_size:
        return None
    frame = width * channels
    return Truncation(seconds_text(data_size // frame, sr), seconds_text(held // frame, sr), usable=held >= frame)


def _flac(fh: BinaryIO, size: int) -> Optional[Truncation]:
    pos = 4
    while True:
        fh.seek(pos)
        head = fh.read(4)
        if len(head) < 4:
            return _header_cut(size, pos + 4)
        length = int.from_bytes(head[1:4], "big")
        pos += 4 + length
        if pos > size:
            return _header_cut(size, pos)
        if head[0] & 0x80:  # the last metadata block
            return None


def _ogg(fh: BinaryIO, size: int) -> Optional[Truncation]:
    pos, last_flags, granule, complete = 0, 0, 0, 0
    while pos < size:
        fh.seek(pos)
        head = fh.read(27)
        if len(head) < 27 or head[:4] != b"OggS":
            break
        segments = fh.read(head[26])
        page_end = pos + 27 + head[26] + sum(segments)
        if len(segments) < head[26] or page_end > size:
            break
        pos, complete, last_flags = page_end, complete + 1, head[5]
        granule = struct.unpack("<q", head[6:14])[0]
    if pos >= size and last_flags & 0x04:
        return None
    if pos < size:  # the page at `pos` is cut (or is not a page)
        held = f"{complete} whole page(s) ({pos} bytes), then a page cut after {size - pos} bytes"
    else:
        held = f"{complete} whole page(s) and no end-of-stream page"
    return Truncation(OGG_ANNOUNCED, held, usable=complete >= 2 and granule > 0, keep_bytes=pos if pos < size else None)
