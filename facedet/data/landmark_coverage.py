"""How many training faces carry points, checked against the model before training starts.

A landmark model (``model.head.num_landmarks`` 5) learns points only from faces that have them;
on a set of boxes only its point outputs never train (and drift as the shared features change),
which the loss cannot tell from a set whose faces simply have few points. A box-only model on a
set with points leaves them unused. Both are said once in the training log, with the counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from facedet.data.records import Record

log = logging.getLogger(__name__)


def landmark_coverage(records: Sequence[Record]) -> tuple[int, int]:
    """(faces that are not ignored, those of them with at least one point)."""
    faces = with_points = 0
    for r in records:
        keep = ~np.asarray(r.ignore, bool)
        faces += int(keep.sum())
        if len(r.landmarks):
            with_points += int((~np.isnan(r.landmarks[keep]).all(axis=(1, 2))).sum())
    return faces, with_points


def check_training_landmarks(records: Sequence[Record], num_landmarks: int, *, data_name: str) -> tuple[int, int]:
    """Log whether the training faces of ``data_name`` fit a model with ``num_landmarks`` points
    (a warning when a landmark model has no face with points); returns ``landmark_coverage``."""
    faces, with_points = landmark_coverage(records)
    if num_landmarks and not with_points:
        log.warning("model.head.num_landmarks=%d, but none of the %d training faces of data '%s' has landmarks: "
                    "the point outputs will not learn (their loss is 0). Train on labels with points, or set "
                    "model.head.num_landmarks=0", num_landmarks, faces, data_name)
    elif num_landmarks:
        log.info("landmarks: %d of %d training faces (%.1f%%) of data '%s' have points; the points learn from "
                 "those, the boxes from all", with_points, faces, 100.0 * with_points / max(faces, 1), data_name)
    elif with_points:
        log.info("data '%s' has points for %d of %d training faces; model.head.num_landmarks=0 does not use them "
                 "(set model.head.num_landmarks=5 to learn them)", data_name, with_points, faces)
    return faces, with_points
