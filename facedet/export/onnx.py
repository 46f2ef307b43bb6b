"""ONNX export of a Detector, with dynamic batch and image size, with or without NMS in the graph.

The exported graph takes ``images``: float32 ``(B, 3, H, W)`` RGB in [0, 1], letterboxed with pad
value 128 as facedet's data pipeline does (H and W multiples of 32, any size). Outputs:

- without NMS (``nms_in_graph=False``): ``boxes`` ``(B, N, 4)`` xyxy in input pixels and ``scores``
  ``(B, N)`` objectness probabilities, every candidate (``Detector.candidates``, the decoding
  ``Detector.predict`` uses); a landmark model (``num_landmarks`` K = 5) adds a third output
  ``landmarks`` ``(B, N, K, 2)``: the points ``x, y`` in input pixels, in the order left eye, right
  eye, nose tip, left mouth corner, right mouth corner;
- with NMS (``nms_in_graph=True``): ``detections`` ``(M, 6)``: ``batch_index, x1, y1, x2, y2, score``
  for the candidates scoring above ``score_thresh`` that survive plain IoU NMS at ``nms_iou`` (the
  IoU above which the lower-scoring of two boxes is suppressed), per image, sorted by
  descending score; a landmark model's rows have ``2K`` more columns, ``(M, 6 + 2K)``: the kept
  box's points ``x1, y1, ..., xK, yK`` after the score (one output, so rows cannot be misaligned);
  with ``landmark_vote_iou`` > 0 (the model config's ``postprocess.landmark_vote_iou`` by default)
  they are voted in the graph as ``facedet.postprocess.vote_landmarks`` votes them, over the
  candidates above ``score_thresh``.
  The in-graph NMS is ``torchvision.ops.nms``, which becomes ONNX's ``NonMaxSuppression``; images
  of a batch are kept apart by offsetting their boxes (as ``torchvision.ops.batched_nms`` does).
  DIoU-NMS and soft-NMS are loops over kept boxes with no ONNX operator, and ``pre_nms_topk`` /
  ``max_det`` are left to the caller (take the first ``max_det`` rows of each image).

The exporter is ``torch.onnx.export(dynamo=True)`` (``torch.export``), which traces the grid
computation with symbolic sizes; the older TorchScript exporter bakes the export size into the
grid. Settings are written into the model's metadata (``metadata_props``, JSON values, strings as
they are): ``format`` (``facedet/1``), ``producer``, ``img_size``, ``pad_value``, ``num_landmarks``,
``strides``, ``postprocess`` (the model's NMS settings, which ``facedet_runtime`` applies to an
export without NMS), ``outputs``, ``nms`` and the in-graph thresholds (docs/DEPLOY.md).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import nms

from facedet.data.transforms import check_img_size
from facedet.postprocess.nms import vote_landmarks
from facedet.registry import POSTPROCESSORS, ConfigError
from facedet_runtime.letterbox import LETTERBOX_PAD
from facedet_runtime.metadata import FORMAT as RUNTIME_FORMAT

log = logging.getLogger(__name__)

OPSET = 18
LANDMARK_ORDER = "left eye, right eye, nose tip, left mouth corner, right mouth corner (image left)"


class ExportWrapper(nn.Module):
    """The detector as exported: its candidates (and optionally NMS) inside ``forward``."""

    def __init__(self, model: nn.Module, *, nms_in_graph: bool = False, score_thresh: float = 0.25,
                 nms_iou: float = 0.5, landmark_vote_iou: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.nms_in_graph = nms_in_graph
        self.score_thresh = float(score_thresh)
        self.nms_iou = float(nms_iou)
        self.landmark_vote_iou = float(landmark_vote_iou)

    def forward(self, images: Tensor) -> tuple[Tensor, ...] | Tensor:
        boxes, scores, landmarks = self.model.candidates(images)
        if not self.nms_in_graph:
            return (boxes, scores) if landmarks is None else (boxes, scores, landmarks)
        b, n = scores.shape
        batch_index = torch.arange(b, device=images.device).view(b, 1).expand(b, n).reshape(-1)
        flat_boxes, flat_scores = boxes.reshape(-1, 4), scores.reshape(-1)
        # separate the images: shift each by more than the extent of all boxes (N > 0, so max is defined)
        offset = (flat_boxes.abs().max() * 2 + 1) * batch_index.to(flat_boxes.dtype)
        keep = flat_scores > self.score_thresh
        flat_boxes, flat_scores, batch_index, offset = (
            flat_boxes[keep], flat_scores[keep], batch_index[keep], offset[keep]
        )
        kept = nms(flat_boxes + offset[:, None], flat_scores, self.nms_iou)
        # group by image keeping NMS's descending-score order: sort on (image, rank), unique keys
        # (ONNX has no stable sort)
        rank = torch.arange(kept.numel(), device=kept.device)
        kept = kept[torch.argsort(batch_index[kept] * kept.numel() + rank)]
        columns = [batch_index[kept, None].to(flat_boxes.dtype), flat_boxes[kept], flat_scores[kept, None]]
        if landmarks is not None:  # each kept box's 2K point coordinates ride along after its score
            points = landmarks.reshape(b * n, -1)[keep]
            if self.landmark_vote_iou > 0:  # the offsets keep other images' boxes at IoU 0
                shifted = flat_boxes + offset[:, None]
                voted = vote_landmarks(shifted[kept], shifted, flat_scores, points.unflatten(1, (-1, 2)),
                                       self.landmark_vote_iou)
                columns.append(voted.flatten(1))
            else:
                columns.append(points[kept])
        return torch.cat(columns, 1)


def postprocess_node(post: Any) -> dict[str, Any]:
    """The ``postprocess`` metadata of a model: its post-processor (``Detector.postprocess``, built
    from the model config's ``postprocess`` node) as that node, which the runtime applies to the
    candidates of an export without NMS (``facedet_runtime.PostProcess``)."""
    import facedet.postprocess  # noqa: F401  (registers the NMS family)

    name = next((n for n in POSTPROCESSORS.names() if POSTPROCESSORS.get(n) is type(post)), None)
    if name is None:
        raise ConfigError(f"the model's post-processor {type(post).__name__} is not a registered NMS")
    node = {"type": name, **{k: getattr(post, k) for k in ("score_thresh", "nms_iou", "max_det", "pre_nms_topk",
                                                            "landmark_vote_iou")}}
    if name == "soft_nms":
        node |= {"method": post.method, "sigma": post.sigma}
    return node


def check_writable(path: str | Path) -> Path:
    """Make sure ``path`` can be written (folder created, a probe file written and removed) before
    a long export; ConfigError naming the path and the reason otherwise. Returns it as a Path."""
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder; give a file name such as model.onnx")
        existing = next(p for p in path.parents if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "the file exists and is read-only")
    except OSError as e:
        raise ConfigError(f"Cannot write the ONNX model to {path}: {e.strerror or e}") from None
    return path


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    img_size: int = 640,
    nms_in_graph: bool = False,
    score_thresh: float = 0.25,
    nms_iou: float = 0.5,
    landmark_vote_iou: float = 0.0,
    metadata: Mapping[str, Any] | None = None,
    optimize: bool = True,
) -> Path:
    """Write ``model`` (a Detector) as ONNX to ``path`` (one file); returns the path."""
    import onnx  # the [export] extra

    path = check_writable(path)
    check_img_size(img_size)
    wrapper = ExportWrapper(model, nms_in_graph=nms_in_graph, score_thresh=score_thresh, nms_iou=nms_iou,
                            landmark_vote_iou=landmark_vote_iou).eval()
    example = torch.rand(2, 3, img_size, img_size)
    dim = torch.export.Dim
    dynamic = {"images": {0: dim("batch", min=1, max=4096), 2: dim.DYNAMIC, 3: dim.DYNAMIC}}
    outputs = ["detections"] if nms_in_graph else ["boxes", "scores"] + (["landmarks"] if model.num_landmarks else [])
    start = time.perf_counter()
    with torch.no_grad():
        program = torch.onnx.export(wrapper, (example,), dynamo=True, input_names=["images"], output_names=outputs,
                                    dynamic_shapes=dynamic, opset_version=OPSET, optimize=optimize,
                                    verbose=False)  # the exporter's progress lines; failures still raise
    proto = program.model_proto
    meta = {"format": RUNTIME_FORMAT, "producer": "facedet",
            "input": f"images: float32 (B, 3, H, W) RGB in [0, 1], letterboxed, pad {LETTERBOX_PAD}",
            "pad_value": LETTERBOX_PAD, "postprocess": postprocess_node(model.postprocess),
            "strides": [int(s) for s in model.strides], "outputs": ", ".join(outputs), "img_size": img_size,
            "nms": "onnx NonMaxSuppression (IoU)" if nms_in_graph else "none",
            "score_thresh": score_thresh if nms_in_graph else None, "nms_iou": nms_iou if nms_in_graph else None,
            "num_landmarks": model.num_landmarks}
    if nms_in_graph and model.num_landmarks:
        meta["landmark_vote_iou"] = landmark_vote_iou
    if model.num_landmarks:
        meta["landmark_order"] = LANDMARK_ORDER
    meta |= dict(metadata or {})
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    tmp = path.with_name(f".{path.name}.tmp")  # a failed write leaves no half model under the real name
    try:
        onnx.save_model(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s in %.1f s (%s)", path, time.perf_counter() - start, "with NMS" if nms_in_graph else "no NMS")
    return path


def _paired(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of two ``(K, 6)`` detection sets paired one to one, image by image, so that paired
    rows differ least (an assignment on each pair's largest box or score difference); None when an
    image has a different number of detections. Rows are paired by content, not by position: the
    order of equal or nearly equal scores is float noise, and sorting on rounded scores splits two
    near-equal scores that straddle a rounding boundary."""
    from scipy.optimize import linear_sum_assignment

    ref_rows, got_rows = [], []
    for b in np.union1d(ref[:, 0], got[:, 0]):
        r, g = np.flatnonzero(ref[:, 0] == b), np.flatnonzero(got[:, 0] == b)
        if len(r) != len(g):
            return None
        cost = np.abs(ref[r, 1:, None].astype(np.float64) - got[g, 1:].T[None]).max(1)
        i, j = linear_sum_assignment(cost)
        ref_rows.append(r[i])
        got_rows.append(g[j])
    if not ref_rows:
        return ref, got
    return ref[np.concatenate(ref_rows)], got[np.concatenate(got_rows)]


def verification_images(shapes: Sequence[tuple[int, int, int]], seed: int = 0) -> list[Tensor]:
    """Batches of synthetic face images (so a trained model detects something) at each
    ``(batch, height, width)``, as float ``(B, 3, H, W)`` in [0, 1]."""
    import cv2

    from facedet.data.synthetic import render_synthetic_image

    out, k = [], 0
    for b, h, w in shapes:
        batch = []
        for _ in range(b):
            img, _ = render_synthetic_image(seed, "val", k)
            k += 1
            batch.append(torch.from_numpy(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)).permute(2, 0, 1))
        out.append(torch.stack(batch).float() / 255)
    return out


def compare_with_onnxruntime(
    model: nn.Module,
    path: str | Path,
    shapes: Sequence[tuple[int, int, int]],
    *,
    nms_in_graph: bool = False,
    score_thresh: float = 0.25,
    nms_iou: float = 0.5,
    landmark_vote_iou: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the ONNX file in onnxruntime and the PyTorch model on the same synthetic face images of
    each ``(batch, height, width)``; returns the max absolute differences (boxes and, for a landmark
    model, points in pixels; scores), whether the outputs have equal shapes, and how many boxes were
    compared."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = ExportWrapper(model, nms_in_graph=nms_in_graph, score_thresh=score_thresh, nms_iou=nms_iou,
                            landmark_vote_iou=landmark_vote_iou).eval()
    report: dict[str, Any] = {"shapes": [list(s) for s in shapes], "max_abs_box": 0.0, "max_abs_score": 0.0,
                              "same_shapes": True, "boxes_compared": 0}
    if model.num_landmarks:
        report["max_abs_landmark"] = 0.0
    for x in verification_images(shapes, seed):
        with torch.no_grad():
            ref = wrapper(x)
        got = session.run(None, {"images": x.numpy()})
        parts = _nms_parts(ref.numpy(), got[0]) if nms_in_graph else _candidate_parts(ref, got)
        if parts is None:
            report["same_shapes"] = False
            continue
        (ref_boxes, ref_scores, ref_points), (got_boxes, got_scores, got_points) = parts
        if ref_boxes.size:
            report["max_abs_box"] = max(report["max_abs_box"], float(np.abs(ref_boxes - got_boxes).max()))
            report["max_abs_score"] = max(report["max_abs_score"], float(np.abs(ref_scores - got_scores).max()))
            report["boxes_compared"] += len(ref_scores.reshape(-1))
            if ref_points is not None:
                d = float(np.abs(ref_points - got_points).max())
                report["max_abs_landmark"] = max(report["max_abs_landmark"], d)
    return report


_Parts = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _nms_parts(ref: np.ndarray, got: np.ndarray) -> tuple[_Parts, _Parts] | None:
    """In-graph NMS rows of PyTorch and onnxruntime, paired by content (equal scores may come out
    of NMS in either order), split into (boxes with batch index, scores, points or None); None
    when they differ in shape."""
    if ref.shape[1:] != got.shape[1:]:
        return None
    pairs = _paired(ref, got)
    if pairs is None:
        return None
    return tuple((d[:, :5], d[:, 5], d[:, 6:] if d.shape[1] > 6 else None) for d in pairs)  # type: ignore[return-value]


def _candidate_parts(ref: tuple[Tensor, ...], got: list[np.ndarray]) -> tuple[_Parts, _Parts] | None:
    """The outputs without NMS as (boxes, scores, points or None) of both; None when they differ
    in number or shape."""
    ref_np = [r.numpy() for r in ref]
    if len(ref_np) != len(got) or any(r.shape != g.shape for r, g in zip(ref_np, got, strict=True)):
        return None
    return tuple((d[0], d[1], d[2] if len(d) > 2 else None) for d in (ref_np, got))  # type: ignore[return-value]
