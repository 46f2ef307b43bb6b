"""Parity of a rewritten model file (folded, slimmed, int8, OpenVINO) against the fp32 ONNX export,
on the same letterboxed images.

Both models are run without NMS (``boxes``, ``scores`` of every candidate). Reported:

- ``max_abs_score``: the largest score difference over all candidates; ``score_corr``: Pearson
  correlation of the scores (int8 moves every score a little, the ranking is what detection needs);
- ``max_abs_box``: the largest box difference (pixels) over the candidates the reference scores
  above ``score_thresh`` (a background candidate's box is meaningless, and int8 may move it far);
- detections after NMS at ``score_thresh`` / ``nms_iou`` on both sides: how many the reference has,
  how many the other has, and how many of the reference's are matched one to one by the other's at
  IoU >= ``match_iou`` (``detections_matched`` / ``detections_ref``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou, nms

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def make_runner(path: str | Path, threads: int | None = None) -> Runner:
    """A function ``batch -> (boxes, scores)`` running ``path``: an .onnx file in onnxruntime (CPU),
    an OpenVINO IR .xml in OpenVINO (CPU)."""
    path = Path(path)
    if path.suffix == ".xml":
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        config["INFERENCE_PRECISION_HINT"] = "f32"  # parity of the file's own precision, not bf16 on new CPUs
        compiled = ov.Core().compile_model(str(path), "CPU", config)

        def run_ov(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = compiled(batch)
            return np.asarray(out[0]), np.asarray(out[1])

        return run_ov
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run_ort(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = session.run(None, {"images": batch})[:2]
        return boxes, scores

    return run_ort


def _detections(boxes: np.ndarray, scores: np.ndarray, score_thresh: float, nms_iou: float) -> torch.Tensor:
    keep = scores > score_thresh
    b, s = torch.from_numpy(boxes[keep]).float(), torch.from_numpy(scores[keep]).float()
    return b[nms(b, s, nms_iou)]


def _matched(ref: torch.Tensor, got: torch.Tensor, match_iou: float) -> int:
    """How many of ``ref``'s boxes get a distinct ``got`` box at IoU >= ``match_iou`` (greedy, by IoU)."""
    if not len(ref) or not len(got):
        return 0
    iou = box_iou(ref, got)
    n = 0
    while True:
        best = iou.max()
        if best < match_iou:
            return n
        i, j = divmod(int(iou.argmax()), iou.shape[1])
        iou[i, :], iou[:, j] = -1, -1
        n += 1


def compare_models(reference: Runner, other: Runner, images: Sequence[np.ndarray], *, score_thresh: float = 0.25,
                   nms_iou: float = 0.5, match_iou: float = 0.5) -> dict[str, Any]:
    """Run both on each ``(1, 3, S, S)`` image batch; the figures of the module docstring."""
    report: dict[str, Any] = {"images": len(images), "max_abs_score": 0.0, "max_abs_box": 0.0,
                              "detections_ref": 0, "detections_other": 0, "detections_matched": 0}
    all_ref, all_got = [], []
    for x in images:
        rb, rs = reference(x)
        gb, gs = other(x)
        if rb.shape != gb.shape or rs.shape != gs.shape:
            raise ValueError(f"output shapes differ: {rb.shape}, {rs.shape} vs {gb.shape}, {gs.shape}")
        report["max_abs_score"] = max(report["max_abs_score"], float(np.abs(rs - gs).max()))
        confident = rs > score_thresh
        if confident.any():
            report["max_abs_box"] = max(report["max_abs_box"], float(np.abs(rb - gb)[confident].max()))
        all_ref.append(rs.ravel())
        all_got.append(gs.ravel())
        for i in range(len(rs)):
            ref_det = _detections(rb[i], rs[i], score_thresh, nms_iou)
            got_det = _detections(gb[i], gs[i], score_thresh, nms_iou)
            report["detections_ref"] += len(ref_det)
            report["detections_other"] += len(got_det)
            report["detections_matched"] += _matched(ref_det, got_det, match_iou)
    ref_all, got_all = np.concatenate(all_ref), np.concatenate(all_got)
    report["score_corr"] = float(np.corrcoef(ref_all, got_all)[0, 1]) if ref_all.std() and got_all.std() else 1.0
    return report


def describe(report: dict[str, Any]) -> str:
    """One line of a parity report."""
    return (f"max |d score| {report['max_abs_score']:.3g} (corr {report['score_corr']:.4f}), "
            f"max |d box| {report['max_abs_box']:.3g} px on confident boxes, detections matched "
            f"{report['detections_matched']}/{report['detections_ref']} (other has {report['detections_other']})"
            f" on {report['images']} images")
