"""tools/detect.py: folders of images (with a corrupt file), videos, smoothing, drawing, overrides."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facedet.cli.detect import detect
from facedet.data.synthetic import render_synthetic_image
from facedet.inference import BoxSmoother, draw_detections
from facedet.registry import ConfigError

from .checkpoint_utils import tiny_run
from .conftest import compose_config


def detect_cfg(overrides):
    return compose_config(overrides, name="detect")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"


def write_images(folder, n=3):
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        img, _ = render_synthetic_image(3, "val", i)
        cv2.imwrite(str(folder / ("sub" if i == 0 else "") / f"im{i}.jpg"), img[..., ::-1])
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image: ignored")


def test_a_folder_gives_annotated_images_and_a_json(ckpt, tmp_path):
    src = tmp_path / "photos"
    write_images(src)
    out = tmp_path / "out"
    r = detect(detect_cfg([f"checkpoint={ckpt}", f"source={src}", f"out={out}", "score_thresh=0.005",
                           "device=cpu", "nms=nms"]), tmp_path / "run")
    assert sorted(r["images"]) == ["im1.jpg", "im2.jpg", "sub/im0.jpg"]
    assert list(r["skipped"]) == ["broken.jpg"] and "cannot decode" in r["skipped"]["broken.jpg"]
    saved = json.loads((out / "detections.json").read_text())
    assert saved["settings"]["postprocess"]["type"] == "nms" and saved["settings"]["img_size"] == 64
    dets = [d for v in saved["images"].values() for d in v["detections"]]
    assert dets and all(d["score"] > 0.005 for d in dets)
    for name, v in saved["images"].items():
        drawn, orig = cv2.imread(str(out / name)), cv2.imread(str(src / name))
        assert drawn.shape == orig.shape == (v["height"], v["width"], 3)
        for d in v["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= v["width"] and 0 <= y1 <= y2 <= v["height"]
        if v["detections"]:
            assert not np.array_equal(drawn, orig)
    high = detect(detect_cfg([f"checkpoint={ckpt}", f"source={src / 'im1.jpg'}", f"out={tmp_path / 'o2'}",
                              "score_thresh=0.99", "device=cpu"]), tmp_path / "run2")
    assert list(high["images"]) == ["im1.jpg"] and high["images"]["im1.jpg"]["detections"] == []


def test_a_video_gives_an_annotated_video_and_per_frame_boxes(ckpt, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    img, _ = render_synthetic_image(3, "val", 1)
    frame = cv2.resize(img[..., ::-1], (128, 96))
    for k in range(5):
        writer.write(np.roll(frame, 2 * k, axis=1))
    writer.release()
    out = tmp_path / "out"
    r = detect(detect_cfg([f"checkpoint={ckpt}", f"source={video}", f"out={out}", "score_thresh=0.005",
                           "smooth=0.5", "device=cpu", "batch_size=2"]), tmp_path / "run")
    v = r["videos"]["clip.avi"]
    assert len(v["frames"]) == 5 and (v["width"], v["height"]) == (128, 96)
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 5


def test_smoothing_averages_matched_boxes_only():
    s = BoxSmoother(alpha=0.5, iou_thresh=0.3)
    first = np.array([[10, 10, 50, 50]], np.float32)
    assert np.array_equal(s(first), first)
    moved = np.array([[14, 10, 54, 50], [200, 200, 240, 240]], np.float32)  # the face moved; a new face
    out = s(moved)
    assert out[0].tolist() == [12, 10, 52, 50] and out[1].tolist() == moved[1].tolist()
    assert s(np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(ValueError):
        BoxSmoother(alpha=0)


def test_drawing_marks_the_box_and_leaves_the_input_alone():
    img = np.zeros((60, 80, 3), np.uint8)
    out = draw_detections(img, np.array([[10, 20, 50, 40]]), np.array([0.87]), line_width=1)
    assert img.max() == 0 and out[30, 10].tolist() == [0, 255, 0] and out[30, 30].tolist() == [0, 0, 0]


def test_bad_inputs_are_clear_errors(ckpt, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    with pytest.raises(ConfigError, match="cannot decode image .*broken.jpg"):
        detect(detect_cfg([f"checkpoint={ckpt}", f"source={broken}", f"out={tmp_path / 'o'}", "device=cpu"]),
               tmp_path)
    with pytest.raises(ConfigError, match="Did you mean 'soft_nms'"):
        detect(detect_cfg([f"checkpoint={ckpt}", f"source={broken}", "nms=sof_nms", "device=cpu"]), tmp_path)
    with pytest.raises(FileNotFoundError):
        detect(detect_cfg([f"checkpoint={ckpt}", f"source={tmp_path / 'none'}", "device=cpu"]), tmp_path)
