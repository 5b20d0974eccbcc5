"""Backbones: build by name (timm or registered) or from a module, with pretrained weights.
"""

from ._ensemble import Ensemble as Ensemble
from ._factory import backbone_data_config as backbone_data_config
from ._factory import check_backbone_name as check_backbone_name
from ._factory import create_backbone as create_backbone
from ._registry import list_backbones as list_backbones
from ._registry import register_backbone as register_backbone
from ._weights import load_checkpoint as load_checkpoint
from ._weights import offline_weights_available as offline_weights_available

__all__ = [
    "Ensemble",
    "create_backbone",
    "register_backbone",
    "list_backbones",
    "backbone_data_config",
    "check_backbone_name",
    "offline_weights_available",
    "load_checkpoint",
]
