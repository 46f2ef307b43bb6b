"""Necks; importing a module registers it in ``NECKS``."""

from facedet.models.necks.fpn import FPN, TinyFPN
from facedet.models.necks.pan import PAN

__all__ = ["FPN", "PAN", "TinyFPN"]
