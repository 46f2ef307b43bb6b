"""Calibration images for post-training quantization: training images letterboxed exactly as
facedet's data pipeline does it at the export size, and the reader ONNX Runtime's
``quantize_static`` pulls them through.

Static int8 quantization picks each activation's scale from the ranges it sees on these images, so
they must look like what the model will run on: the same letterbox (``facedet.data.transforms.Letterbox``,
pad 128, INTER_AREA when shrinking) and the same [0, 1] float scaling as training and the exported
graph's input. Images are taken evenly spaced over the data set (deterministic, and not only the
first folder of a data set sorted by event).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from facedet.data.transforms import LETTERBOX_PAD, Letterbox

log = logging.getLogger(__name__)


def evenly_spaced(total: int, n: int) -> list[int]:
    """``min(n, total)`` indices spread evenly over ``range(total)``, first included."""
    if total <= 0 or n <= 0:
        return []
    n = min(n, total)
    return sorted({int(i) for i in np.linspace(0, total - 1, n).round()})


def letterboxed(image: np.ndarray, img_size: int, pad_value: int = LETTERBOX_PAD) -> np.ndarray:
    """One HxWx3 uint8 RGB image as the graph's input: float32 ``(1, 3, S, S)`` in [0, 1]."""
    sample = {"image": image, "boxes": np.zeros((0, 4), np.float32), "landmarks": np.zeros((0, 5, 2), np.float32),
              "image_id": "", "orig_size": image.shape[:2]}
    img = Letterbox(size=img_size, pad_value=pad_value)(sample)["image"]
    return (img.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)).copy()


def calibration_batches(dataset: Any, n: int, img_size: int) -> list[np.ndarray]:
    """``n`` images of ``dataset`` (a ``FaceDataset``: ``load_sample(i)["image"]`` is the raw RGB
    image), evenly spaced, each letterboxed to ``img_size`` as a ``(1, 3, S, S)`` float32 batch."""
    idx = evenly_spaced(len(dataset), n)
    if not idx:
        raise ValueError(f"no calibration images: the data set is empty (asked for {n})")
    out = [letterboxed(dataset.load_sample(i, copy=False)["image"], img_size) for i in idx]
    log.info("%d images letterboxed to %d px", len(out), img_size)
    return out


class OrtCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over prepared batches: ``get_next`` returns
    ``{"images": batch}`` until they run out, then None; ``rewind`` starts over (ORT's entropy and
    percentile calibrators read the data once, MinMax too, but a reader that rewinds is reusable)."""

    def __init__(self, batches: Sequence[np.ndarray], input_name: str = "images") -> None:
        self.batches, self.input_name = list(batches), input_name
        self._it: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._it = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
