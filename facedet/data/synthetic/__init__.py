"""A deterministic synthetic face data set: cartoon faces on cluttered backgrounds.

Not trivial but learnable: faces of 8-200 px (log-uniform) with skin tones, eyes, brows, nose and
mouth, sometimes hair, glasses or a mask, small in-plane rotations and yaw, per-face blur and
lighting; backgrounds with gradients, texture, clutter and face-sized distractors (skin-coloured
ellipses and blobs without facial features) so colour and shape alone do not solve the task.

Every image is rendered from its own seed ``(seed, split, index)``, so the set is reproducible and
independent of rendering order. ``ensure_synthetic`` generates a set once (atomically) and reuses
it while its manifest matches.

Modules: ``draw`` (anti-aliased primitives), ``resample`` (numpy resizing), ``background``
(gradients, texture, clutter, glyphs), ``faces`` (faces, distractors, placement), ``render`` (one
image), ``store`` (the set on disk and its manifest).
"""

from facedet.data.synthetic.faces import FACE_RANGE
from facedet.data.synthetic.render import IMG_RANGE, SPLITS, render_synthetic_image
from facedet.data.synthetic.store import (
    GENERATOR,
    VERSION,
    encode_jpeg,
    ensure_synthetic,
    generate_synthetic,
    read_manifest,
)

__all__ = [
    "FACE_RANGE",
    "GENERATOR",
    "IMG_RANGE",
    "SPLITS",
    "VERSION",
    "encode_jpeg",
    "ensure_synthetic",
    "generate_synthetic",
    "read_manifest",
    "render_synthetic_image",
]
