"""Prediction input: :class:`RenderedInput` (``images='cached'``: each file rendered on the CPU, the pixels of the
image cache) or :class:`OnTheFlyInput` (``images='on-the-fly'``: waveform windows made into images on the
device); :class:`~specimg.predict.Predictor` never asks which. Both give pixels on the 0-255 scale.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import torch

from ..config import RenderConfig
from ..data import FrontendPipeline, spectrogram_transforms
from ..spectrogram import render_file, render_signal, signal_windows

__all__ = ["PredictionInput", "RenderedInput", "OnTheFlyInput", "prediction_input", "prepare_file"]

#: What a worker prepares for one file: the model input and the windows' (start, end) seconds.
Payload = Tuple[Any, ...]


class PredictionInput:
    """How a :class:`~specimg.predict.Predictor` turns audio (or cached images) into pixel batches.

    Parameters
    ----------
    render_config : RenderConfig
        The run's render config.
    input_hw : (int, int)
        (height, width) the models take.
    mean, std : (float, float, float)
        The models' normalisation (used by the device pipeline's resize only;
        normalising is the inference core's job).
    device : torch.device
    """

    kind: ClassVar[str] = ""

    def __init__(self, render_config: RenderConfig, *, input_hw: Tuple[int, int], mean: Sequence[float],
                 std: Sequence[float], device: torch.device) -> None:
        self.render_config = render_config
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.device = device

    # what a worker process runs (module-level functions, so that they pickle)
    @staticmethod
    def prepare(abspath: str, config: RenderConfig) -> Payload:
        """One file's payload: ``(model input, bounds)``; raises on a bad file."""
        raise NotImplementedError

    def prepare_signal(self, y: np.ndarray) -> Payload:
        """The payload of a signal at the render config's sample rate."""
        raise NotImplementedError

    @staticmethod
    def n_windows(payload: Payload) -> int:
        return int(len(payload[1]))

    def window_probs(self, payloads: Sequence[Payload], probs: Callable[[torch.Tensor], torch.Tensor],
                     batch_size: int) -> List[np.ndarray]:
        """Window probabilities of several files, batched across them; one (n_windows, n_classes) array each."""
        raise NotImplementedError

    def image_pixels(self, images: np.ndarray) -> torch.Tensor:
        """Cached-style uint8 images (n, h, w, 3) -> pixels (n, 3, H, W) on the device, resized as in training."""
        raise NotImplementedError

    def _split(self, chunks: List[torch.Tensor], counts: List[int]) -> List[np.ndarray]:
        wp = torch.cat(chunks).cpu().numpy().astype(np.float32) if chunks else np.zeros((0, 0), np.float32)
        return np.split(wp, np.cumsum(counts)[:-1]) if counts else []


class RenderedInput(PredictionInput):
    """Images rendered on the CPU (the pixels of the image cache), resized by albumentations."""

    kind = "cached"

    def __init__(self, render_config: RenderConfig, **kwargs: Any) -> None:
        super().__init__(render_config, **kwargs)
        self._resize = spectrogram_transforms(train=False, image_size=self.input_hw,
                                              cache_size=tuple(render_config.spectrogram.image_size))
        self.pipeline = None

    @staticmethod
    def prepare(abspath: str, config: RenderConfig) -> Payload:
        return render_file(abspath, config=config)[:2]

    def prepare_signal(self, y: np.ndarray) -> Payload:
        return render_signal(y, config=self.render_config)

    def image_pixels(self, images: np.ndarray) -> torch.Tensor:
        if self._resize is not None:
            images = np.stack([self._resize(image=im)["image"] for im in images])
        return torch.from_numpy(np.array(images, copy=True, order="C")).to(self.device).permute(0, 3, 1, 2)

    def window_probs(self, payloads: Sequence[Payload], probs: Callable[[torch.Tensor], torch.Tensor],
                     batch_size: int) -> List[np.ndarray]:
        counts = [len(p[0]) for p in payloads]
        images = payloads[0][0] if len(payloads) == 1 else np.concatenate([p[0] for p in payloads])
        out = [probs(self.image_pixels(images[s:s + batch_size])) for s in range(0, len(images), batch_size)]
        return self._split(out, counts)


class OnTheFlyInput(PredictionInput):
    """Waveform windows that become images on the device (:class:`~specimg.data.FrontendPipeline`)."""

    kind = "on-the-fly"

    def __init__(self, render_config: RenderConfig, *, mean: Sequence[float], std: Sequence[float],
                 **kwargs: Any) -> None:
        super().__init__(render_config, mean=mean, std=std, **kwargs)
        self.pipeline = FrontendPipeline(render_config, image_size=self.input_hw, mean=mean, std=std,
                                         normalize=False).to(self.device).eval()

    @staticmethod
    def prepare(abspath: str, config: RenderConfig) -> Payload:
        from ..spectrogram import load_for_render

        return signal_windows(load_for_render(abspath, config), config=config, path=abspath)

    def prepare_signal(self, y: np.ndarray) -> Payload:
        return signal_windows(np.asarray(y, dtype=np.float32), config=self.render_config)

    def image_pixels(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(images, copy=True, order="C")).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, h, w) in [0, 1]
        return self.pipeline.resize(x) * 255.0  # (B, 3, H, W) pixels, resized as in training

    def _references(self, payloads: Sequence[Payload]) -> torch.Tensor:
        """The dB reference of each window: its file's maximum mel power (files of equal length in one call)."""
        refs = torch.empty(len(payloads), dtype=torch.float32, device=self.device)
        by_length: Dict[int, List[int]] = {}
        for k, p in enumerate(payloads):
            by_length.setdefault(len(p[2]), []).append(k)
        for ks in by_length.values():
            signals = torch.from_numpy(np.stack([payloads[k][2] for k in ks])).to(self.device)  # (n, m)
            refs[torch.as_tensor(ks, device=self.device)] = self.pipeline.frontend.reference(signals)  # (n,)
        counts = torch.as_tensor([len(p[0]) for p in payloads], device=self.device)
        return torch.repeat_interleave(refs, counts)  # (n_windows,)

    def window_probs(self, payloads: Sequence[Payload], probs: Callable[[torch.Tensor], torch.Tensor],
                     batch_size: int) -> List[np.ndarray]:
        if not payloads:
            return []
        ref_w = self._references(payloads)
        windows = payloads[0][0] if len(payloads) == 1 else np.concatenate([p[0] for p in payloads])
        out = []
        for s in range(0, len(windows), batch_size):
            x = torch.from_numpy(windows[s:s + batch_size]).to(self.device)  # (B, n_samples)
            out.append(probs(self.pipeline(x, ref_w[s:s + batch_size])))  # pixels -> (B, n_classes)
        return self._split(out, [len(p[0]) for p in payloads])


_KINDS = {"cached": RenderedInput, "on-the-fly": OnTheFlyInput}


def prediction_input(kind: str, render_config: RenderConfig, **kwargs: Any) -> PredictionInput:
    """The :class:`PredictionInput` of ``kind`` (``'cached'`` or ``'on-the-fly'``)."""
    return _KINDS[kind](render_config, **kwargs)


def prepare_file(abspath: str, config_dict: Dict[str, Any], kind: str) -> Union[str, Payload]:
    """One file's payload, or the reason it cannot be predicted (a worker-process job)."""
    from .._parallel import failure_reason

    try:
        return _KINDS[kind].prepare(abspath, RenderConfig.from_dict(config_dict))
    except Exception as exc:  # one bad file never costs the batch its work
        return failure_reason(exc)


def payload_stream(paths: List[str], config: RenderConfig, kind: str, workers: int) -> Iterator[Tuple[int, Any]]:
    """Prepare files in order, at most ``2 * workers`` in flight (bounded memory); a dead worker names its file."""
    from .._parallel import pool_map

    cfg = config.to_dict()
    yield from pool_map(prepare_file, [(p, cfg, kind) for p in paths], workers=workers)
