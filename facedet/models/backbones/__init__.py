"""Backbones; importing a module registers it in ``BACKBONES``."""

from facedet.models.backbones.cspdarknet import CSPDarknet

__all__ = ["CSPDarknet"]
