"""Models: layers, backbones, necks, heads and the Detector that joins them.

Importing this package registers every backbone, neck and head (and the losses, assigners and
post-processors a Detector needs), so the registries are complete for plain-Python use too.
"""

import facedet.assign  # noqa: F401  (registers ASSIGNERS)
import facedet.losses  # noqa: F401  (registers LOSSES)
import facedet.models.backbones  # noqa: F401  (registers BACKBONES)
import facedet.models.heads  # noqa: F401  (registers HEADS)
import facedet.models.necks  # noqa: F401  (registers NECKS)
import facedet.postprocess  # noqa: F401  (registers POSTPROCESSORS)
from facedet.models.detector import Detector, build_detector

__all__ = ["Detector", "build_detector"]
