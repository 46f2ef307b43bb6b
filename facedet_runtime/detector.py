"""``FaceDetector``: an exported facedet model on images, with no PyTorch: letterbox, run the
backend, post-process in numpy, map back to the images' pixels.

The contract is that of ``facedet.inference.Predictor.__call__``, so the same code (``run_detection``,
the evaluation, a benchmark) can drive either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facedet_runtime.backends import open_backend
from facedet_runtime.letterbox import boxes_to_original, letterbox_image, points_to_original
from facedet_runtime.metadata import ModelInfo
from facedet_runtime.postprocess import PostProcess


class FaceDetector:
    """``det(images)``: HxWx3 uint8 RGB arrays -> per image ``{boxes (K, 4) xyxy float32 in the
    image's pixels, scores (K,)}`` by descending score, plus ``landmarks (K, P, 2)`` when the model
    predicts points.

    ``path``: an exported ``.onnx`` file (or for ``backend="openvino"`` also an IR ``.xml``).
    ``score_thresh``, ``nms_iou``, ``max_det``, ``nms`` (diou_nms, nms, soft_nms), ``landmark_vote_iou``:
    None keeps the file's metadata (the model config's post-processing); for a model with NMS in the
    graph only ``score_thresh`` (raised) and ``max_det`` can still act.
    ``img_size``: None is the export's size; any multiple of 32 works (the graph's size is dynamic).
    """

    def __init__(self, path: str | Path, *, backend: str = "onnxruntime", threads: int | None = None,
                 score_thresh: float | None = None, nms_iou: float | None = None, max_det: int | None = None,
                 img_size: int | None = None, nms: str | None = None, landmark_vote_iou: float | None = None) -> None:
        self.path = Path(path)
        self.backend = open_backend(self.path, backend, threads)
        info = ModelInfo.from_metadata(self.backend.metadata, str(self.path), self.backend.output_names)
        overrides = {"type": nms, "score_thresh": score_thresh, "nms_iou": nms_iou, "max_det": max_det,
                     "landmark_vote_iou": landmark_vote_iou}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        fixed = sorted(k for k in ("type", "nms_iou", "landmark_vote_iou")
                       if k in overrides and overrides[k] != getattr(info.postprocess, k))
        if info.nms_in_graph and fixed:  # the graph did these; only score_thresh and max_det can still act
            raise ValueError(f"{self.path} has NMS in its graph: {', '.join(fixed)} cannot be changed "
                             "(export it without NMS)")
        node = dataclasses.asdict(info.postprocess) | overrides
        self.postprocess = PostProcess.from_dict(node, where="FaceDetector arguments")
        self.info = info
        self.img_size = int(img_size or info.img_size)
        if self.img_size <= 0 or self.img_size % 32:
            raise ValueError(f"img_size must be a positive multiple of 32, got {self.img_size}")
        self.num_landmarks = info.num_landmarks
        self.metadata: dict[str, Any] = info.metadata

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, tuple[int, int],
                                                                                        tuple[int, int]]]]:
        """(B, 3, S, S) float32 batch in [0, 1], and per image (ratio, pad, original (h, w))."""
        batch = np.empty((len(images), 3, self.img_size, self.img_size), np.float32)
        metas = []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape} (image {i})")
            boxed, ratio, pad = letterbox_image(image, self.img_size, self.info.pad_value)
            np.divide(boxed.transpose(2, 0, 1), np.float32(255.0), out=batch[i], dtype=np.float32)
            metas.append((ratio, pad, image.shape[:2]))
        return batch, metas

    def __call__(self, images: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        if not len(images):
            return []
        batch, metas = self.preprocess(images)
        outputs = self.backend.run(batch)
        per_image = self._in_graph(outputs, len(images)) if self.info.nms_in_graph else [
            self.postprocess(outputs["boxes"][i], outputs["scores"][i],
                             outputs["landmarks"][i] if "landmarks" in outputs else None)
            for i in range(len(images))]
        results = []
        for pred, (ratio, pad, size) in zip(per_image, metas, strict=True):
            out = {"boxes": boxes_to_original(pred["boxes"], ratio, pad, size), "scores": pred["scores"]}
            if "landmarks" in pred:
                out["landmarks"] = points_to_original(pred["landmarks"], ratio, pad)
            results.append(out)
        return results

    def _in_graph(self, outputs: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
        """Rows ``(M, 6 + 2K)`` of an in-graph NMS split per image: above ``score_thresh`` (the graph
        applied its own; a higher one here filters further), the first ``max_det`` (rows are by
        descending score within an image)."""
        dets = np.asarray(outputs["detections"], np.float32)
        out = []
        for i in range(n):
            rows = dets[(dets[:, 0] == i) & (dets[:, 5] > np.float32(self.postprocess.score_thresh))]
            rows = rows[: self.postprocess.max_det]
            pred = {"boxes": rows[:, 1:5], "scores": rows[:, 5]}
            if self.num_landmarks:
                pred["landmarks"] = rows[:, 6:].reshape(len(rows), self.num_landmarks, 2)
            out.append(pred)
        return out
