"""Necks; importing a module registers it in ``NECKS``."""

from facedet.models.necks.pan import PAN

__all__ = ["PAN"]
