"""Readers, transforms, data sets and the loader."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facedet.data import (
    HSV,
    HFlip,
    Letterbox,
    build_dataloader,
    build_transforms,
    collate,
    generate_synthetic,
    read_coco_json,
    read_wider_txt,
)
from facedet.registry import DATASETS, ConfigError, build
from facedet.structures import boxes_to_original, empty_sample_arrays

FACEMASK = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "facemask"


def _image(path: Path, h: int, w: int, value: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _sample(img: np.ndarray, boxes, ignore=None) -> dict:
    n = len(boxes)
    s = {**empty_sample_arrays(n), "image": img, "image_id": "x.jpg", "orig_size": img.shape[:2]}
    s["boxes"] = np.asarray(boxes, np.float32).reshape(-1, 4)
    if ignore is not None:
        s["ignore"] = np.asarray(ignore, bool)
    return s


WIDER = """a/one.jpg
4
10 10 20 30 0 0 0 0 0 0
50 5 10 10 0 0 0 1 0 0
30 30 0 12 0 0 0 0 0 0
90 70 40 40 0 0 0 0 0 0
b/empty.jpg
0
0 0 0 0 0 0 0 0 0 0
c/empty_no_zeros.jpg
0
missing.jpg
1
1 1 5 5 0 0 0 0 0 0
d/last.jpg
1
200 200 5 5
"""


def test_read_wider_txt(tmp_path):
    for name in ("a/one.jpg", "b/empty.jpg", "c/empty_no_zeros.jpg", "d/last.jpg"):
        _image(tmp_path / "img" / name, 80, 100)
    (tmp_path / "gt.txt").write_text(WIDER)
    records, stats = read_wider_txt(tmp_path / "gt.txt", tmp_path / "img")
    assert [r.image_id for r in records] == ["a/one.jpg", "b/empty.jpg", "c/empty_no_zeros.jpg", "d/last.jpg"]
    one = records[0]
    assert one.orig_size == (80, 100)
    # zero width dropped; the last box is clipped to the 100x80 image; the invalid face is ignored
    np.testing.assert_allclose(one.boxes, [[10, 10, 30, 40], [50, 5, 60, 15], [90, 70, 100, 80]])
    assert one.ignore.tolist() == [False, True, False]
    assert (
        one.boxes.dtype == np.float32 and one.landmarks.shape == (3, 5, 2) and np.isnan(one.landmarks).all()
    )
    assert len(records[1].boxes) == 0 and len(records[2].boxes) == 0
    assert len(records[3].boxes) == 0  # entirely outside the image
    assert stats.images == 4 and stats.faces == 3 and stats.ignored == 1 and stats.clipped == 1
    assert stats.missing_images == 1
    # the face of the missing image is counted too: nothing is lost without a count
    assert stats.dropped == {"nonpositive_size": 1, "outside_image": 1, "missing_image": 1}
    assert "4 images, 3 faces" in stats.summary() and "missing images: 1" in stats.summary()


@pytest.mark.parametrize(
    "text, line",
    [
        ("x.jpg\n2\n1 2 3 4\n1 2 3\n", 4),  # fewer than 4 numbers
        ("x.jpg\n1\n1 2 three 4\n", 3),  # not a number
        ("x.jpg\ntwo\n1 2 3 4\n", 2),  # bad count
        ("x.jpg\n-1\n", 2),  # negative count
        ("x.jpg\n3\n1 2 3 4\n", 4),  # file ends inside the faces
    ],
)
def test_malformed_wider_names_file_and_line(tmp_path, text, line):
    ann = tmp_path / "bad_labels.txt"
    ann.write_text(text)
    with pytest.raises(ValueError, match=rf"bad_labels\.txt:{line}:"):
        read_wider_txt(ann, tmp_path)


def test_read_coco_json(tmp_path):
    for name in ("p.jpg", "q.jpg"):
        _image(tmp_path / name, 60, 50)
    kp = [5, 6, 2, 15, 6, 2, 10, 10, 0, 6, 14, 1, 14, 14, 1]
    coco = {
        "images": [
            {"id": 1, "file_name": "p.jpg", "width": 50, "height": 60},
            {"id": 2, "file_name": "q.jpg"},  # no size: read from the header
            {"id": 3, "file_name": "gone.jpg", "width": 10, "height": 10},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "iscrowd": 0, "keypoints": kp},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 5, 5], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 4], "iscrowd": 0},
            {"id": 4, "image_id": 3, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0},
            {"id": 5, "image_id": 9, "category_id": 1, "bbox": [1, 1, 4, 4], "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "masked"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    records, stats = read_coco_json(tmp_path / "ann.json", tmp_path)
    assert [r.image_id for r in records] == ["p.jpg", "q.jpg"]
    p, q = records
    np.testing.assert_allclose(p.boxes, [[1, 2, 11, 14], [20, 20, 25, 25]])
    assert p.ignore.tolist() == [False, True] and q.orig_size == (60, 50) and len(q.boxes) == 0
    assert p.landmarks[0, 0].tolist() == [5, 6] and np.isnan(p.landmarks[0, 2]).all()
    assert np.isnan(p.landmarks[1]).all()
    assert stats.images == 2 and stats.faces == 2 and stats.ignored == 1 and stats.missing_images == 1
    assert stats.dropped == {"nonpositive_size": 1, "unknown_image_id": 1, "missing_image": 1}


@pytest.mark.parametrize("hw", [(100, 300), (300, 100), (257, 411), (320, 320), (37, 61), (480, 640)])
def test_letterbox_round_trips_boxes(hw):
    h, w = hw
    rng = np.random.default_rng(h * w)
    xy = rng.uniform(0, [w, h], (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, [w / 3, h / 3], (6, 2))], 1).clip(0, [w, h, w, h])
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = boxes[0].round().astype(int)
    img[y1:y2, x1:x2] = 255
    out = Letterbox(size=320)(_sample(img, boxes))
    assert out["image"].shape == (320, 320, 3) and out["image"].dtype == np.uint8
    back = boxes_to_original(torch.from_numpy(out["boxes"]), out["meta"])
    assert torch.allclose(back, torch.from_numpy(boxes.astype(np.float32)), atol=0.5)
    assert out["meta"]["image_id"] == "x.jpg" and out["meta"]["orig_size"] == (h, w)
    # the image content moved with the boxes: the white box is white at its letterboxed centre
    cx, cy = ((out["boxes"][0, :2] + out["boxes"][0, 2:]) / 2).astype(int)
    assert out["image"][cy, cx].min() > 200
    if h != w:  # padded with grey
        assert (out["image"][0, 0] == 128).all() and (out["image"][-1, -1] == 128).all()


def test_hflip_mirrors_boxes_and_keeps_ignore_aligned():
    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8)
    s = _sample(img, [[0, 0, 10, 20], [30, 5, 70, 25], [60, 40, 80, 64]], ignore=[True, False, True])
    s["labels"] = np.array([0, 1, 2])  # distinct, to check the row order
    s["landmarks"][1] = [[40, 10], [60, 10], [50, 15], [42, 20], [58, 20]]
    out = HFlip(p=1.0)(s)
    assert np.array_equal(out["image"], img[:, ::-1])
    np.testing.assert_allclose(out["boxes"], [[70, 0, 80, 20], [10, 5, 50, 25], [0, 40, 20, 64]], atol=1e-4)
    assert out["ignore"].tolist() == [True, False, True] and out["labels"].tolist() == [0, 1, 2]
    # mirrored, and left/right points swapped so "left eye" is still the left one in the image
    np.testing.assert_allclose(out["landmarks"][1], [[20, 10], [40, 10], [30, 15], [22, 20], [38, 20]])
    assert np.isnan(out["landmarks"][0]).all()
    same = HFlip(p=0.0)(s)
    assert np.array_equal(same["image"], img) and np.array_equal(same["boxes"], s["boxes"])
    empty = HFlip(p=1.0)(_sample(img, np.zeros((0, 4))))
    assert empty["boxes"].shape == (0, 4)


def test_hsv_changes_colours_not_boxes():
    img = np.random.default_rng(1).integers(0, 255, (40, 40, 3), np.uint8)
    s = _sample(img, [[1, 2, 30, 20]])
    t = HSV(hue=0.1, saturation=0.7, value=0.4)
    t.set_seed(0)
    out = t(s)
    assert out["image"].shape == img.shape and out["image"].dtype == np.uint8
    assert not np.array_equal(out["image"], img) and np.array_equal(out["boxes"], s["boxes"])


def test_build_transforms_errors():
    with pytest.raises(ConfigError, match="Did you mean 'hflip'"):
        build_transforms([{"type": "hflp"}], 64)
    with pytest.raises(ConfigError, match="added automatically"):
        build_transforms([{"type": "letterbox", "size": 64}], 64)
    t = build_transforms({"hsv": {"type": "hsv"}, "hflip": None}, 64)  # a mapping; null switches off
    assert [type(x).__name__ for x in t.transforms] == ["Letterbox", "HSV", "ToTensor"]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_synthetic(root, num_train=6, num_val=2, seed=3)
    return root


def _synthetic(root, **kw):
    t = build_transforms([{"type": "hsv"}, {"type": "hflip"}], 96)
    node = {"type": "synthetic", "root": str(root), "num_train": 6, "num_val": 2, "seed": 3}
    return build(node, DATASETS, transform=t, cache_images=kw.get("cache_images", False))


def test_dataset_item(synthetic_root):
    ds = _synthetic(synthetic_root, cache_images=True)
    assert len(ds) == 6 and ds.stats.images == 6 and ds.records[0].image_id == "00000.jpg"
    item = ds[0]
    img, t = item["image"], item["target"]
    assert img.dtype == torch.float32 and img.shape == (3, 96, 96)
    assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.02
    n = len(ds.records[0].boxes)
    assert t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
    assert t["labels"].dtype == torch.int64 and t["ignore"].dtype == torch.bool
    assert t["landmarks"].shape == (n, 5, 2) and t["landmarks"].dtype == torch.float32
    assert (t["boxes"] >= 0).all() and (t["boxes"] <= 96).all()
    assert set(item["meta"]) == {"image_id", "orig_size", "ratio", "pad"}
    before = [r.boxes.copy() for r in ds.records]
    for i in range(len(ds)):
        ds[i]
    assert all(np.array_equal(r.boxes, b) for r, b in zip(ds.records, before, strict=True))  # untouched


def test_dataset_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.txt.*data\.root="):
        build(
            {"type": "wider_txt", "ann_file": "nope.txt", "img_dir": "."},
            DATASETS,
            transform=None,
            cache_images=False,
        )
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "gt.json").write_text(
        json.dumps({"images": [{"id": 1, "file_name": "bad.jpg", "width": 4, "height": 4}]})
    )
    ds = build(
        {"type": "coco_json", "ann_file": str(tmp_path / "gt.json"), "img_dir": str(tmp_path)},
        DATASETS,
        transform=None,
        cache_images=False,
    )
    # a file that is not an image is skipped at load time and counted (see test_readers.py for more)
    assert len(ds) == 0 and ds.stats.skipped == {"unreadable_image": 1} and "bad.jpg" in ds.stats.summary()


def test_collate_and_reproducible_loader(synthetic_root):
    ds = _synthetic(synthetic_root)
    batch = collate([ds[0], ds[1]])
    assert batch["images"].shape == (2, 3, 96, 96) and len(batch["targets"]) == len(batch["metas"]) == 2

    def epoch(workers):
        dl = build_dataloader(ds, batch_size=4, shuffle=True, num_workers=workers, seed=11, drop_last=True)
        return [b["images"] for b in dl]

    a, b = epoch(0), epoch(0)
    assert len(a) == 1 and torch.equal(a[0], b[0])
    c, d = epoch(1), epoch(1)
    assert torch.equal(c[0], d[0])


@pytest.mark.skipif(not FACEMASK.exists(), reason="facemask data set not present")
def test_facemask_train_split_loads():
    d = FACEMASK / "train"
    for records, stats in (
        read_coco_json(d / "coco.json", d / "images"),
        read_wider_txt(d / "wider_format.txt", d / "images"),
    ):
        assert stats.images == len(records) == 683 and stats.faces == 3267, stats.summary()
        assert stats.missing_images == 0 and not stats.dropped
