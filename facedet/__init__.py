"""facedet: a config-driven training framework for YOLOv3/v4-style face detectors."""

from facedet.threads import apply_env_defaults

# before anything imports torch: libgomp reads its settings once, when torch loads it (see threads.py)
apply_env_defaults()

__version__ = "0.1.0"
