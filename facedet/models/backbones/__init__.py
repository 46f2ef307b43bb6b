"""Backbones; importing a module registers it in ``BACKBONES``."""

from facedet.models.backbones.cspdarknet import CSPDarknet
from facedet.models.backbones.cspdarknet_tiny import CSPDarknetTiny
from facedet.models.backbones.darknet import Darknet53
from facedet.models.backbones.mobilenet import MobileNetV2, MobileNetV3

__all__ = ["CSPDarknet", "CSPDarknetTiny", "Darknet53", "MobileNetV2", "MobileNetV3"]
