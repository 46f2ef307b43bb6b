"""Aligned face crops: a synthetic face whose five points are a known similarity transform of the
ArcFace template comes out with its points on the template; tools/detect.py writes the crops and
the points (through the Predictor's inverse letterbox); video smoothing carries the points."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facedet.cli.detect import detect
from facedet.inference import BoxSmoother, Predictor
from facedet.inference.align import ARCFACE_TEMPLATE, align_face, similarity_to_template, template
from facedet.inference.detect import run_detection
from facedet.registry import ConfigError

from .checkpoint_utils import tiny_run
from .conftest import compose_config

# one pure colour per point (RGB), on a grey face
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]], np.float32)


def similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = scale * np.cos(a), scale * np.sin(a)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def synthetic_face(size=(260, 300), scale=1.7, degrees=25.0, shift=(90.0, 20.0)):
    """(RGB image, its five points): the template moved by a known similarity, each point a disc
    of its own colour on a grey ellipse (the face) on a darker background."""
    h, w = size
    m = similarity(scale, degrees, shift)
    pts = ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2]
    img = np.full((h, w, 3), 60, np.uint8)
    centre = tuple(int(v) for v in pts.mean(0))
    cv2.ellipse(img, centre, (int(45 * scale), int(60 * scale)), degrees, 0, 360, (128, 128, 128), -1)
    for (x, y), c in zip(pts, COLOURS, strict=True):
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 4 * 16, c.tolist(), -1, cv2.LINE_AA, shift=4)
    return img, pts.astype(np.float32)


def find_points(img: np.ndarray) -> np.ndarray:
    """The centroid of each colour's pixels (weighted by closeness to the pure colour), (5, 2)."""
    out = np.full((5, 2), np.nan, np.float32)
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    for i, c in enumerate(COLOURS):
        w = np.clip(1 - np.linalg.norm(img.astype(np.float32) - c, axis=-1) / 120, 0, None) ** 2
        if w.sum() > 0:
            out[i] = [(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()]
    return out


def test_a_known_similarity_of_the_template_comes_out_on_the_template():
    img, pts = synthetic_face()
    assert np.abs(find_points(img) - pts).max() < 0.5  # the detector of dots itself is exact enough
    matrix = similarity_to_template(pts)
    assert np.abs(np.c_[pts, np.ones(5)] @ matrix.T - ARCFACE_TEMPLATE).max() < 1e-2
    crop = align_face(img, pts)
    assert crop.shape == (112, 112, 3)
    assert np.abs(find_points(crop) - ARCFACE_TEMPLATE).max() < 1.0  # within a pixel
    big = align_face(img, pts, 224)
    assert big.shape == (224, 224, 3) and np.abs(find_points(big) - template(224)).max() < 1.0
    assert np.allclose(template(224), ARCFACE_TEMPLATE * 2)


def test_absent_points_and_degenerate_faces():
    img, pts = synthetic_face(degrees=-40.0, scale=0.9, shift=(120.0, 90.0))
    partial = pts.copy()
    partial[[2, 4]] = np.nan  # nose and one mouth corner absent: three points still fix the transform
    assert np.abs(find_points(align_face(img, partial)) - ARCFACE_TEMPLATE).max() < 1.0
    two = np.full((5, 2), np.nan, np.float32)
    two[:2] = pts[:2]
    assert similarity_to_template(two) is not None
    one = np.full((5, 2), np.nan, np.float32)
    one[0] = pts[0]
    assert similarity_to_template(one) is None and align_face(img, one) is None
    with pytest.raises(ValueError, match="positive"):
        template(0)


class DotDetector(nn.Module):
    """A "model" that finds the five coloured dots in each letterboxed input and returns them as
    one face (box around them, score 0.9) in input pixels: its only error is the letterbox's."""

    max_stride = 32

    def predict(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for im in images:
            pts = torch.from_numpy(find_points((im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)))
            box = torch.cat([pts.min(0).values - 20, pts.max(0).values + 20])
            out.append({"boxes": box[None], "scores": torch.tensor([0.9]), "labels": torch.zeros(1),
                        "landmarks": pts[None]})
        return out


def test_detection_writes_points_and_aligned_crops(tmp_path):
    img, pts = synthetic_face()
    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "face.png"), img[..., ::-1])
    r = run_detection(Predictor(DotDetector(), img_size=320), src, tmp_path / "out", crop_size=112)
    det = r["images"]["face.png"]["detections"][0]
    assert np.abs(np.array(det["landmarks"]).reshape(5, 2) - pts).max() < 1.0  # back in the image's pixels
    assert det["crop"] == "crops/face_0.png"
    crop = cv2.imread(str(tmp_path / "out" / det["crop"]))[..., ::-1]
    assert crop.shape == (112, 112, 3) and np.abs(find_points(crop) - ARCFACE_TEMPLATE).max() < 1.0
    drawn = cv2.imread(str(tmp_path / "out" / "face.png"))[..., ::-1]
    assert not np.array_equal(drawn, img)
    plain = run_detection(Predictor(DotDetector(), img_size=320), src, tmp_path / "out2", save_media=False)
    assert "crop" not in plain["images"]["face.png"]["detections"][0] and not (tmp_path / "out2" / "crops").exists()


def test_smoothing_moves_points_with_their_box():
    s = BoxSmoother(alpha=0.5, iou_thresh=0.3)
    box = np.array([[0, 0, 10, 10]], np.float32)
    p0 = np.zeros((1, 5, 2), np.float32)
    p1 = np.full((1, 5, 2), 2.0, np.float32)
    p1[0, 4] = np.nan  # absent now: taken as detected (NaN), never invented from memory
    s.smooth(box, p0)
    boxes, points = s.smooth(box + 2, p1)
    assert np.allclose(boxes, box + 1) and np.allclose(points[0, :4], 1.0) and np.isnan(points[0, 4]).all()
    far_boxes, far = s.smooth(box + 100, p1 + 100)  # no match: as detected
    assert np.allclose(far_boxes, box + 100) and np.allclose(far[0, :4], 102.0)
    assert np.allclose(s(box), box)  # the boxes-only call (no match with the far box: as detected)
    assert s.smooth(box)[1] is None


def test_crops_need_a_model_with_landmarks(tmp_path_factory, tmp_path):
    ckpt = tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"
    img, _ = synthetic_face()
    cv2.imwrite(str(tmp_path / "face.png"), img[..., ::-1])
    cfg = compose_config([f"checkpoint={ckpt}", f"source={tmp_path / 'face.png'}", f"out={tmp_path / 'o'}",
                          "device=cpu", "crops=true"], name="detect")
    with pytest.raises(ConfigError, match="num_landmarks"):
        detect(cfg, tmp_path / "run")
    cfg.crops = False
    r = detect(cfg, tmp_path / "run")  # a box-only model: no landmarks anywhere
    assert "landmarks" not in r["settings"] and all("landmarks" not in d for d in r["images"]["face.png"]["detections"])
    assert json.loads((tmp_path / "o" / "detections.json").read_text())["settings"]["boxes"].startswith("xyxy")
