"""The training log says whether the training faces fit the model's landmark setting."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from facedet.data.landmark_coverage import check_training_landmarks, landmark_coverage
from facedet.data.records import Record


def record(points: list[bool], ignore: list[bool] | None = None) -> Record:
    """One image whose faces have five points (True) or none (False)."""
    n = len(points)
    landmarks = np.full((n, 5, 2), np.nan, np.float32)
    landmarks[np.asarray(points, bool)] = 1.0
    return Record(image_path=Path("x.jpg"), image_id="x.jpg", boxes=np.zeros((n, 4), np.float32),
                  ignore=np.asarray(ignore or [False] * n), landmarks=landmarks, orig_size=(10, 10))


def test_coverage_counts_faces_with_any_point_and_skips_ignored_faces():
    one_point = record([False])
    one_point.landmarks[0, 2] = (3.0, 4.0)  # a face with only its nose still trains that point
    recs = [record([True, False, True], ignore=[False, False, True]), one_point, record([])]
    assert landmark_coverage(recs) == (3, 2)


@pytest.mark.parametrize(("points", "num_landmarks", "level", "words"), [
    ([False, False], 5, logging.WARNING, "none of the 2 training faces"),
    ([True, False], 5, logging.INFO, "1 of 2 training faces (50.0%)"),
    ([True, False], 0, logging.INFO, "does not use them"),
])
def test_the_log_names_the_mismatch(points, num_landmarks, level, words, caplog):
    with caplog.at_level(logging.INFO, logger="facedet.data.landmark_coverage"):
        check_training_landmarks([record(points)], num_landmarks, data_name="mine")
    hits = [r for r in caplog.records if words in r.getMessage()]
    assert len(hits) == 1 and hits[0].levelno == level and "'mine'" in hits[0].getMessage()


def test_a_box_only_model_on_box_only_data_says_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="facedet.data.landmark_coverage"):
        assert check_training_landmarks([record([False])], 0, data_name="boxes") == (1, 0)
    assert not caplog.records
