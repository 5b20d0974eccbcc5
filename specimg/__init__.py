"""specimg: audio classification with spectrogram images and ImageNet backbones."""

__version__ = "0.1.0"
