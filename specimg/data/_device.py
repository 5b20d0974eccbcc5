"""Images made and augmented on the device: the ``images='on-the-fly'`` path of training and prediction."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as nnf
from torch import nn

from .._validation import check_int
from ..config import RenderConfig
from ..exceptions import ParameterError
from ._normalize import IMAGENET_MEAN, IMAGENET_STD, PixelNormalize

__all__ = ["DeviceAugment", "FrontendPipeline"]

Batch = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor], Sequence[torch.Tensor]]


def _uniform(n: int, lo: float, hi: float, g: Optional[torch.Generator]) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


class DeviceAugment(nn.Module):
    """The training augmentations of :func:`spectrogram_transforms`, on a batch of image tensors.

    Same operations, order and probabilities as the albumentations pipeline of the cached path, drawn per item
    (emptied rows or columns of a stretch set to 0). The draws come from a CPU :class:`torch.Generator`: a
    batch's augmentation depends on the generator's state, not on the device.

    Parameters
    ----------
    hflip, time_mask, freq_mask, n_masks, freq_stretch, time_stretch
        As for :func:`spectrogram_transforms` (0 disables).

    Examples
    --------
    >>> aug = DeviceAugment(hflip=0.5, time_mask=0.1, freq_stretch=0.1)
    >>> x = torch.rand(4, 3, 32, 48)
    >>> aug(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 32, 48])
    """

    def __init__(self, *, hflip: float = 0.5, time_mask: float = 0.0, freq_mask: float = 0.0, n_masks: int = 2,
                 freq_stretch: float = 0.0, time_stretch: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= float(hflip) <= 1.0:
            raise ParameterError(f"The 'hflip' parameter of DeviceAugment must be a probability in [0, 1]. "
                                 f"Got {hflip!r}.")
        for name, v in (("time_mask", time_mask), ("freq_mask", freq_mask), ("freq_stretch", freq_stretch),
                        ("time_stretch", time_stretch)):
            if not 0.0 <= float(v) < 1.0:
                raise ParameterError(f"The {name!r} parameter of DeviceAugment must be a fraction in [0, 1). "
                                     f"Got {v!r}.")
        check_int(n_masks, "n_masks", owner="DeviceAugment", low=1)
        self.hflip, self.n_masks = float(hflip), int(n_masks)
        self.time_mask, self.freq_mask = float(time_mask), float(freq_mask)
        self.freq_stretch, self.time_stretch = float(freq_stretch), float(time_stretch)

    def extra_repr(self) -> str:
        return (f"hflip={self.hflip}, time_mask={self.time_mask}, freq_mask={self.freq_mask}, n_masks={self.n_masks}, "
                f"freq_stretch={self.freq_stretch}, time_stretch={self.time_stretch}")

    def _stripes(self, n: int, size: int, frac: float, apply: torch.Tensor, g: Optional[torch.Generator]
                 ) -> torch.Tensor:
        """(n, size) bool: True on the masked rows / columns of each item."""
        longest = max(1, int(round(frac * size)))
        count = torch.randint(1, self.n_masks + 1, (n, 1), generator=g)  # (n, 1) stripes per item
        length = torch.randint(1, longest + 1, (n, self.n_masks), generator=g)  # (n, k)
        start = (torch.rand(n, self.n_masks, generator=g) * (size - length + 1).clamp_min(1)).floor().long()
        used = (torch.arange(self.n_masks)[None, :] < count) & apply[:, None]  # (n, k)
        pos = torch.arange(size)[None, None, :]  # (1, 1, size)
        inside = (pos >= start[..., None]) & (pos < (start + length)[..., None]) & used[..., None]  # (n, k, size)
        return inside.any(1)  # (n, size)

    @staticmethod
    def stretch(x: torch.Tensor, fy: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """Rescale each image's frequency axis by ``fy`` (bottom row fixed) and time axis by ``fx`` (left edge fixed).

        The device version of :class:`SpectrogramStretch`: bilinear, emptied
        rows / columns set to 0.

        Parameters
        ----------
        x : torch.Tensor [shape=(B, C, H, W)]
        fy, fx : torch.Tensor [shape=(B,)]
            Factors; > 1 stretches (content moves up / right), < 1 squeezes.

        Returns
        -------
        out : torch.Tensor [shape=(B, C, H, W)]
        """
        B = x.shape[0]
        fy = torch.as_tensor(fy, dtype=torch.float32).reshape(B).cpu()
        fx = torch.as_tensor(fx, dtype=torch.float32).reshape(B).cpu()
        # output -> source coordinates (align_corners=False, [-1, 1]): the bottom edge (y = 1) and the left edge
        # (x = -1) stay put; everything else scales away from them.
        theta = torch.zeros(B, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = 1.0 / fx, 1.0 / fx - 1.0
        theta[:, 1, 1], theta[:, 1, 2] = 1.0 / fy, 1.0 - 1.0 / fy
        grid = nnf.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return nnf.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def forward(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Augment images (B, C, H, W), low frequencies at the bottom row; returns a new tensor."""
        B, _, H, W = x.shape
        g = generator
        if self.hflip > 0:
            flip = (torch.rand(B, generator=g) < self.hflip).to(x.device)  # (B,)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.freq_stretch > 0 or self.time_stretch > 0:
            fy, fx = torch.ones(B), torch.ones(B)
            if self.freq_stretch > 0:
                on = torch.rand(B, generator=g) < 0.5
                fy = torch.where(on, 1.0 + _uniform(B, -self.freq_stretch, self.freq_stretch, g), fy)
            if self.time_stretch > 0:
                on = torch.rand(B, generator=g) < 0.5
                fx = torch.where(on, 1.0 + _uniform(B, -self.time_stretch, self.time_stretch, g), fx)
            moved = (fy != 1.0) | (fx != 1.0)
            if bool(moved.any()):
                x = torch.where(moved.to(x.device)[:, None, None, None], self.stretch(x, fy, fx), x)
        if self.time_mask > 0 or self.freq_mask > 0:
            apply = torch.rand(B, generator=g) < 0.5  # XYMasking(p=0.5): one draw for both kinds
            keep = torch.ones(B, 1, H, W, dtype=torch.bool)
            if self.time_mask > 0:
                keep &= ~self._stripes(B, W, self.time_mask, apply, g)[:, None, None, :]
            if self.freq_mask > 0:
                keep &= ~self._stripes(B, H, self.freq_mask, apply, g)[:, None, :, None]
            x = x * keep.to(x.device, x.dtype)
        return x


class FrontendPipeline(nn.Module):
    """Waveform windows → normalised backbone input, all on the device.

    :class:`~specimg.spectrogram.SpectrogramFrontend`, a bilinear resize to ``image_size``, the training
    augmentations (:class:`DeviceAugment`, with ``train=True``) and the backbone's normalisation. Training and
    :class:`~specimg.predict.Predictor` with ``images='on-the-fly'`` share it: a model sees the same images in both.

    Parameters
    ----------
    render_config : RenderConfig
        Sample rate, window length and spectrogram settings.
    image_size : (int, int) or None
        (height, width) the backbone sees; ``None`` keeps the rendered size.
    mean, std : (float, float, float)
        Normalisation on the 0-1 scale.
    augment : DeviceAugment or None
        Applied in :meth:`forward` with ``train=True``.
    normalize : bool
        ``True``: :meth:`forward` returns the backbone's input (normalised
        with :class:`~specimg.data.PixelNormalize`). ``False``: it returns
        pixels on the 0-255 scale of the cached images, for a consumer that
        normalises itself (the :class:`~specimg.training.Trainer` and
        :class:`~specimg.models.Ensemble` of training and prediction).

    Examples
    --------
    >>> from specimg.config import AudioConfig, RenderConfig, SegmentConfig, SpectrogramConfig
    >>> cfg = RenderConfig(audio=AudioConfig(sample_rate=8000), segment=SegmentConfig(seconds=1.0, hop=0.5),
    ...                    spectrogram=SpectrogramConfig(n_fft=256, hop_length=64, n_mels=32, image_size=(32, 32)))
    >>> pipe = FrontendPipeline(cfg, image_size=(48, 48))
    >>> pipe(torch.randn(2, 8000)).shape
    torch.Size([2, 3, 48, 48])
    """

    def __init__(self, render_config: RenderConfig, *, image_size: Optional[Sequence[int]] = None,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 augment: Optional[DeviceAugment] = None, normalize: bool = True) -> None:
        super().__init__()
        from ..spectrogram import SpectrogramFrontend

        if not isinstance(render_config, RenderConfig):
            raise ParameterError(f"The 'render_config' parameter of FrontendPipeline must be a RenderConfig. Got "
                                 f"{type(render_config).__name__}.")
        self.frontend = SpectrogramFrontend(render_config, output="float")
        self.render_config = render_config
        self.image_size: Tuple[int, int] = (tuple(int(v) for v in image_size) if image_size is not None  # type: ignore
                                            else self.frontend.image_size)
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ParameterError(f"The 'image_size' parameter of FrontendPipeline must be (height, width). Got "
                                 f"{image_size!r}.")
        self.normalizer = PixelNormalize(mean, std, pixel_max=1.0)
        self.normalize = bool(normalize)
        self.augment = augment

    @property
    def n_samples(self) -> int:
        """Samples per waveform window."""
        return int(self.frontend.n_samples)  # type: ignore[arg-type]

    def images(self, waveforms: torch.Tensor, ref: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Un-normalised images (B, 3, H, W) in [0, 1] at ``image_size``, before augmentation."""
        return self.resize(self.frontend(waveforms, ref))

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """Float images (B, 3, h, w) in [0, 1] → ``image_size`` (bilinear, anti-aliased; unchanged when equal)."""
        if tuple(x.shape[-2:]) != self.image_size:
            x = nnf.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False,
                                antialias=True).clamp_(0.0, 1.0)  # (B, 3, H, W)
        return x

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the backbone's input, ``(x - mean) / std`` (:class:`~specimg.data.PixelNormalize`)."""
        return self.normalizer.to(x.device)(x)

    @torch.no_grad()
    def forward(self, batch: Batch, ref: Optional[torch.Tensor] = None, *, train: bool = False,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Render, (augment,) normalise.

        Parameters
        ----------
        batch : torch.Tensor [shape=(B, n_samples)] or (waveforms, ref)
            Waveform windows on the device, optionally paired with their dB
            references (shape (B,), e.g. from :class:`WaveformDataset`).
        ref : torch.Tensor [shape=(B,)] or None
            dB reference of each window (its file's maximum mel power);
            ``None`` uses each window's own maximum.
        train : bool
            Apply ``augment``.
        generator : torch.Generator or None
            The augmentation's random draws.

        Returns
        -------
        x : torch.Tensor [shape=(B, 3, H, W), dtype=float32]
            Normalised, or pixels in [0, 255] with ``normalize=False``.
        """
        if isinstance(batch, (tuple, list)):
            waveforms, ref = batch[0], batch[1]
        else:
            waveforms = batch
        x = self.images(waveforms, ref)
        if train and self.augment is not None:
            x = self.augment(x, generator=generator)
        return self.normalise(x) if self.normalize else x * 255.0
