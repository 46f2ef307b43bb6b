"""A deterministic synthetic face data set: cartoon faces on cluttered backgrounds.

Not trivial but learnable: faces of 8-200 px (log-uniform) with skin tones, eyes, brows, nose and
mouth, sometimes hair, glasses or a mask, small in-plane rotations and yaw, per-face blur and
lighting; backgrounds with gradients, texture, clutter and face-sized distractors (skin-coloured
ellipses and blobs without facial features) so colour and shape alone do not solve the task.

Every image is rendered from its own seed ``(seed, split, index)``, so the set is reproducible and
independent of rendering order. ``ensure_synthetic`` generates a set once (atomically) and reuses
it while its manifest matches.

Modules: ``draw`` (anti-aliased primitives), ``resample`` (numpy resizing), ``background``
(gradients, texture, clutter, glyphs), ``faces`` (faces and their five points, distractors,
placement), ``render`` (one image), ``store`` (the set on disk and its manifest).

Every face comes with its five points (left eye, right eye, nose tip, left and right mouth corner),
taken from the geometry ``draw_face`` drew and drawn from no random number of their own: adding them
changed no pixel and no box of the set.
"""

from facedet.data.synthetic.faces import FACE_RANGE, face_points
from facedet.data.synthetic.render import IMG_RANGE, SPLITS, render_synthetic_image, render_synthetic_sample
from facedet.data.synthetic.store import (
    GENERATOR,
    RETINAFACE_LABELS,
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
    "RETINAFACE_LABELS",
    "SPLITS",
    "VERSION",
    "encode_jpeg",
    "ensure_synthetic",
    "generate_synthetic",
    "face_points",
    "read_manifest",
    "render_synthetic_image",
    "render_synthetic_sample",
]
