"""The spectrogram images of :mod:`specimg.spectrogram._image`, computed on the device by
:class:`SpectrogramFrontend` (librosa's mel filterbank, scipy's Savitzky-Golay coefficients: the CPU path's
maths; only the order of float operations differs).
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import nn

from ._config import RenderConfig, SpectrogramConfig
from ..exceptions import ParameterError

__all__ = ["SpectrogramFrontend"]

#: ``librosa.power_to_db``'s floor on power values (and on the reference).
_AMIN = 1e-10
#: librosa.feature.delta's window in :func:`~specimg.spectrogram.to_images`.
_DELTA_WIDTH = 9
#: Largest complex STFT (bytes) transformed at once on the CPU.
_CPU_STFT_BYTES = 4 * 2**20
#: Largest complex STFT (bytes) :meth:`SpectrogramFrontend.reference` transforms at once, on any device.
_REF_STFT_BYTES = 256 * 2**20


def _delta_width(n_frames: int) -> int:
    """The delta window of :func:`~specimg.spectrogram.to_images` for ``n_frames`` frames (< 3: no delta)."""
    return min(_DELTA_WIDTH, n_frames if n_frames % 2 else n_frames - 1)


def _savgol_kernels(width: int) -> torch.Tensor:
    """First- and second-derivative Savitzky-Golay correlation kernels (2, 1, width) float32, as
    ``librosa.feature.delta`` uses them.
    """
    from scipy.signal import savgol_coeffs

    k = [savgol_coeffs(width, order, deriv=order, use="dot") for order in (1, 2)]
    return torch.as_tensor(np.stack(k)[:, None, :], dtype=torch.float32)


def _dct_ortho(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """The first ``n_mfcc`` rows (n_mfcc, n_mels) of the orthonormal DCT-II matrix (``scipy.fft.dct(norm='ortho')``)."""
    k = np.arange(n_mfcc, dtype=np.float64)[:, None]
    n = np.arange(n_mels, dtype=np.float64)[None, :]
    D = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    D[0] /= math.sqrt(2.0)
    return torch.as_tensor(D, dtype=torch.float32)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-item min-max scaling to [0, 1] over the last two dims (constant items → 0), batched."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(x))


class SpectrogramFrontend(nn.Module):
    """Waveform windows → spectrogram images, on the waveforms' device.

    Computes the image of :func:`~specimg.spectrogram.render_signal` for one window at a time, with its maths
    (``torch.stft`` padded as librosa pads, the Slaney mel filterbank, dB clipped at ``top_db``, PIL's bilinear
    resize, ``librosa.feature.delta``'s Savitzky-Golay deltas, ``librosa.feature.mfcc``'s orthonormal DCT).

    **The dB reference.** The cached path measures dB from the loudest bin of the *whole file*; by default the
    front end uses the *window's*, which agrees when a file is one window. For a longer file pass ``ref`` (the
    file's maximum mel power, :meth:`reference`): the images then differ from the cached ones only in the few
    frames at each window edge (the cached STFT sees the neighbouring audio) and by the cached path's rounding
    of a window start to a whole frame.

    Parameters
    ----------
    config : RenderConfig or SpectrogramConfig
        A :class:`~specimg.config.RenderConfig` fixes the sample rate and the
        window length (``segment.seconds``); with a
        :class:`~specimg.config.SpectrogramConfig` pass ``sample_rate`` and
        any window length is accepted.
    sample_rate : int or None
        Sample rate of the waveforms in Hz; required with a
        SpectrogramConfig, optional (and checked) with a RenderConfig.
    output : {'float', 'uint8'}
        ``'float'``: float32 in [0, 1] (``uint8 image / 255`` of the cached
        path, before any normalisation); ``'uint8'``: the rounded 0-255
        pixels, as stored in the image cache (CHW, not HWC).

    Notes
    -----
    On single-window FSDD files (CPU) the uint8 images equal the cached
    ones except in rare pixels, by 1 or 2
    (``tests/test_frontend.py::test_parity_with_render_signal_on_fsdd``
    asserts it on 40 files: under 0.5 % of the pixels differ, by at most
    2, mean difference under 0.01). The rounding steps of the cached path are reproduced (uint8 before
    the resize, PIL's two 8-bit passes), so the float output is a multiple of
    1/255 and carries no gradient (:meth:`forward` runs under
    :func:`torch.no_grad`). On multi-window files with ``ref``
    passed and windows cut at the frame the cached path starts them on, only
    the image columns at each window edge differ (away from 4 of them at
    each edge, pixels are at most 1 off); cut at the window's start sample,
    the frames can be up to half a hop off those of the cached path
    (``test_multi_window_file_with_file_reference`` bounds the mean
    difference by 3.5 uint8 units for 1 s windows at a 0.5 s hop and a
    64-sample STFT hop, and by half of what it is without ``ref``).

    Attributes
    ----------
    n_samples : int or None
        Window length in samples that :meth:`forward` requires (``None``:
        any).
    image_size : (int, int)
        Output (height, width).

    Examples
    --------
    >>> from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
    >>> cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
    ...                    spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=64, image_size=(128, 128)))
    >>> frontend = SpectrogramFrontend(cfg)
    >>> x = torch.randn(4, 8000)  # (batch, n_samples), on any device
    >>> with torch.no_grad():
    ...     images = frontend(x)
    >>> tuple(images.shape), images.dtype
    ((4, 3, 128, 128), torch.float32)
    """

    window: torch.Tensor
    mel_basis: torch.Tensor

    def __init__(
        self,
        config: Union[RenderConfig, SpectrogramConfig],
        *,
        sample_rate: Optional[int] = None,
        output: Literal["float", "uint8"] = "float",
    ) -> None:
        super().__init__()
        from ._image import mel_filters

        if isinstance(config, RenderConfig):
            sr = config.audio.sample_rate
            if sample_rate is not None and sample_rate != sr:
                raise ParameterError(
                    f"The 'sample_rate' parameter of SpectrogramFrontend must match config.audio.sample_rate={sr} "
                    f"when config is a RenderConfig. Got {sample_rate!r}. Leave it out, or resample the audio.")
            spec = config.spectrogram
            self.n_samples: Optional[int] = int(round(config.segment.seconds * sr))
        elif isinstance(config, SpectrogramConfig):
            if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
                raise ParameterError(
                    f"The 'sample_rate' parameter of SpectrogramFrontend must be an int > 0 (Hz) when config is a "
                    f"SpectrogramConfig. Got {sample_rate!r}. Pass sample_rate=..., or a RenderConfig.")
            sr = int(sample_rate)
            spec = config.resolve(sr)  # the rate-dependent defaults (n_fft, hop_length, n_mels) in samples
            self.n_samples = None
        else:
            raise ParameterError(f"The 'config' parameter of SpectrogramFrontend must be a RenderConfig or a "
                                 f"SpectrogramConfig. Got {type(config).__name__}.")
        if output not in ("float", "uint8"):
            raise ParameterError(f"The 'output' parameter of SpectrogramFrontend must be 'float' or 'uint8'. "
                                 f"Got {output!r}.")
        self.sample_rate = sr
        self.config = spec
        self.output = output
        self.image_size: Tuple[int, int] = tuple(spec.image_size)  # type: ignore[assignment]
        win_length = spec.win_length or spec.n_fft
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)
        mel = mel_filters(sr, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)
        self.register_buffer("mel_basis", torch.as_tensor(mel, dtype=torch.float32), persistent=False)
        if spec.feature == "mfcc":
            self.register_buffer("dct", _dct_ortho(spec.n_mfcc, spec.n_mels), persistent=False)
        if spec.channels == "delta":
            self.register_buffer("delta_kernels", _savgol_kernels(_DELTA_WIDTH), persistent=False)

    def extra_repr(self) -> str:
        c = self.config
        return (f"feature={c.feature!r}, sample_rate={self.sample_rate}, n_samples={self.n_samples}, n_fft={c.n_fft}, "
                f"hop_length={c.hop_length}, n_mels={c.n_mels}, image_size={self.image_size}, "
                f"channels={c.channels!r}, output={self.output!r}")

    # ------------------------------------------------------------------ checks
    def _check_waveforms(self, waveforms: torch.Tensor, name: str, *, fixed_length: bool) -> None:
        if not isinstance(waveforms, torch.Tensor):
            raise ParameterError(f"The '{name}' argument of SpectrogramFrontend must be a torch.Tensor of shape "
                                 f"(batch, n_samples). Got {type(waveforms).__name__}. Use torch.as_tensor(...).")
        if waveforms.ndim != 2:
            fix = {1: " For one signal use x.unsqueeze(0).",
                   3: " For (batch, 1, n_samples) use x.squeeze(1)."}.get(waveforms.ndim, "")
            raise ParameterError(f"The '{name}' argument of SpectrogramFrontend must be 2-D (batch, n_samples), one "
                                 f"mono window per row. Got shape {tuple(waveforms.shape)}.{fix}")
        if not waveforms.is_floating_point():
            raise ParameterError(f"The '{name}' argument of SpectrogramFrontend must be a floating tensor (samples "
                                 f"in [-1, 1]). Got dtype {waveforms.dtype}. Use x.float() / 32768 for int16 PCM.")
        n = waveforms.shape[1]
        if fixed_length and self.n_samples is not None and n != self.n_samples:
            raise ParameterError(
                f"The '{name}' argument of SpectrogramFrontend must hold windows of n_samples={self.n_samples} "
                f"(segment.seconds * audio.sample_rate). Got {n} samples per row. Cut the audio into windows of "
                f"{self.n_samples} samples (pad_audio / segment_bounds), or build the front end from a config with "
                f"the window length you use.")
        if n < 1 or waveforms.shape[0] < 1:
            raise ParameterError(f"The '{name}' argument of SpectrogramFrontend must be non-empty. Got shape "
                                 f"{tuple(waveforms.shape)}.")

    def _buffer(self, name: str, device: torch.device) -> torch.Tensor:
        buf = getattr(self, name)
        return buf if buf.device == device else buf.to(device)  # a one-off copy; call .to(device) once to avoid it

    # ------------------------------------------------------------------ maths
    def _mel_power(self, x: torch.Tensor, *, center: bool = True) -> torch.Tensor:
        """(batch, n) float32 → mel power spectrogram (power 2) (batch, n_mels, 1 + n // hop_length).

        ``center=False``: frames of ``x`` as it is, ``1 + (n - n_fft) // hop_length`` of them.
        """
        c = self.config
        window = self._buffer("window", x.device)
        mel_basis = self._buffer("mel_basis", x.device)
        n_frames = 1 + x.shape[1] // c.hop_length
        chunk = x.shape[0]
        if x.device.type == "cpu":
            # On the CPU a whole batch of long STFTs (20 s windows at 22.05 kHz) overflows the caches and runs
            # slower than item by item; transform a few items at a time. Accelerators take the whole batch.
            chunk = max(1, _CPU_STFT_BYTES // (8 * (c.n_fft // 2 + 1) * n_frames))
        mels = []
        for part in x.split(chunk):  # a single part on accelerators
            stft = torch.stft(part, n_fft=c.n_fft, hop_length=c.hop_length, win_length=window.shape[0],
                              window=window, center=center, pad_mode="constant",
                              return_complex=True)  # (b, n_fft // 2 + 1, T)
            if c.power == 2.0:
                S = stft.real.square() + stft.imag.square()  # (b, n_freq, T)
            else:
                S = stft.abs().pow(c.power)
            mels.append(torch.matmul(mel_basis, S))  # (b, n_mels, T)
        mel = mels[0] if len(mels) == 1 else torch.cat(mels)  # (B, n_mels, T)
        # power_to_db expects a power spectrogram; bring any exponent to power 2 (as the CPU path).
        return mel if c.power == 2.0 else mel.pow(2.0 / c.power)

    @torch.no_grad()
    def reference(self, waveforms: torch.Tensor) -> torch.Tensor:
        """The dB reference of whole signals: the maximum of their mel power spectrogram.

        This is the ``ref`` of the cached path (``power_to_db(ref=np.max)``
        over the whole, padded file); pass it to :meth:`forward` with the
        file's windows.

        Parameters
        ----------
        waveforms : torch.Tensor [shape=(batch, n_samples), floating]
            Whole signals (any length), at the front end's sample rate.

        Returns
        -------
        ref : torch.Tensor [shape=(batch,), dtype=float32]
        """
        self._check_waveforms(waveforms, "waveforms", fixed_length=False)
        x = waveforms.to(torch.float32)  # (B, n)
        c = self.config
        n_frames = 1 + x.shape[1] // c.hop_length
        chunk = max(1, _REF_STFT_BYTES // (8 * (c.n_fft // 2 + 1) * x.shape[0]))  # frames per piece
        if n_frames <= chunk:
            return self._mel_power(x).amax(dim=(1, 2))
        # A long signal (an hour at 22.05 kHz is a 1.3 GB complex STFT): the same frames, a piece at a time.
        # Frame t of the centred STFT covers padded[t * hop : t * hop + n_fft] of the zero-padded signal, so
        # each piece is an uncentred STFT of exactly its frames' samples.
        half = c.n_fft // 2
        padded = nnf.pad(x, (half, half))  # (B, n + n_fft), pad_mode='constant'
        ref = torch.zeros(x.shape[0], device=x.device)
        for a in range(0, n_frames, chunk):
            b = min(n_frames, a + chunk)
            piece = padded[:, a * c.hop_length:(b - 1) * c.hop_length + c.n_fft]
            ref = torch.maximum(ref, self._mel_power(piece, center=False).amax(dim=(1, 2)))
        return ref

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, ref: Optional[Union[torch.Tensor, float]] = None) -> torch.Tensor:
        """Render a batch of windows (under :func:`torch.no_grad`: no gradient flows through the pixel rounding).

        Parameters
        ----------
        waveforms : torch.Tensor [shape=(batch, n_samples), floating]
            One mono window per row at the front end's sample rate, already
            padded like the cached path (``pad_audio``) when a file is
            shorter than a window.
        ref : torch.Tensor [shape=(batch,) or ()], float or None
            dB reference (mel power) of each item, e.g. its file's
            :meth:`reference`; dB are clipped at ``top_db`` below it and
            values above it saturate at 1. ``None`` uses each window's own
            maximum.

        Returns
        -------
        images : torch.Tensor [shape=(batch, 3, H, W)]
            float32 in [0, 1] (``output='float'``) or uint8 (``'uint8'``),
            low frequencies at the bottom row, on ``waveforms.device``.
        """
        self._check_waveforms(waveforms, "waveforms", fixed_length=True)
        c = self.config
        B, n = waveforms.shape
        x = waveforms.to(torch.float32)  # (B, n)
        ref_t = None
        if ref is not None:
            ref_t = torch.as_tensor(ref, dtype=torch.float32, device=x.device)
            if ref_t.ndim == 0:
                ref_t = ref_t.expand(B)
            if ref_t.shape != (B,):
                raise ParameterError(f"The 'ref' argument of SpectrogramFrontend must be a float or a tensor of "
                                     f"shape (batch,)=({B},). Got shape {tuple(ref_t.shape)}. Pass one reference "
                                     f"per window, e.g. frontend.reference(file_waveform) repeated per window.")
        mel = self._mel_power(x)  # (B, n_mels, T), T = 1 + n // hop_length

        log_spec = 10.0 * torch.log10(mel.clamp_min(_AMIN))  # (B, n_mels, T)
        if ref_t is None:
            ref_db = log_spec.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1): the window's loudest bin
        else:
            ref_db = 10.0 * torch.log10(ref_t.clamp_min(_AMIN)).reshape(B, 1, 1)  # (B, 1, 1)
        # power_to_db(ref=max, top_db): the clip sits top_db below the reference (0 dB).
        db = (log_spec - ref_db).clamp_min(-c.top_db)  # (B, n_mels, T)

        if c.feature == "mfcc":
            F = torch.matmul(self._buffer("dct", x.device), db)  # (B, n_mfcc, T)
        else:
            F = (db + c.top_db) / c.top_db  # (B, n_mels, T) in [0, 1] (more where ref is below the window's max)

        n_frames = F.shape[-1]
        n_win = max(1, int(round(n / c.hop_length)))  # the frames render_signal slices for one window
        planes = [_minmax(F[..., :n_win]) if c.feature == "mfcc" else F[..., :n_win]]  # (B, bins, n_win)
        if c.channels == "delta":
            width = _delta_width(n_frames)
            if width >= 3:
                kernels = self._buffer("delta_kernels", x.device) if width == _DELTA_WIDTH \
                    else _savgol_kernels(width).to(x.device)
                bins = F.shape[1]
                flat = F.reshape(B * bins, 1, n_frames)
                flat = nnf.pad(flat, (width // 2, width // 2), mode="replicate")  # mode='nearest'
                d = nnf.conv1d(flat, kernels).reshape(B, bins, 2, n_frames)  # (B, bins, 2, T)
                planes += [_minmax(d[:, :, 0, :n_win]), _minmax(d[:, :, 1, :n_win])]
            else:
                zero = torch.zeros_like(planes[0])
                planes += [zero, zero]
        img = torch.stack(planes, dim=1).flip(-2)  # (B, C, bins, n_win), low frequencies at the bottom
        # The cached path rounds to uint8, then PIL resizes in two 8-bit passes (width, then height), each
        # rounding half up; the same steps here make the pixels agree to +-1.
        img = img.clamp(0.0, 1.0).mul_(255.0).round_()  # (B, C, bins, n_win) in 0..255
        H, W = self.image_size
        if img.shape[-1] != W:
            img = nnf.interpolate(img, size=(img.shape[-2], W), mode="bilinear", align_corners=False,
                                  antialias=True)  # (B, C, bins, W)
            img = img.add_(0.5).floor_().clamp_(0.0, 255.0)
        if img.shape[-2] != H:
            img = nnf.interpolate(img, size=(H, W), mode="bilinear", align_corners=False,
                                  antialias=True)  # (B, C, H, W)
            img = img.add_(0.5).floor_().clamp_(0.0, 255.0)
        img = img.to(torch.uint8) if self.output == "uint8" else img.div_(255.0)  # (B, C, H, W)
        if img.shape[1] == 1:
            return img.expand(B, 3, H, W).contiguous()  # (B, 3, H, W), replicated
        return img.contiguous()  # (B, 3, H, W): uint8, or float32 in [0, 1] (multiples of 1/255)
