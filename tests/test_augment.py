"""Augmentations: boxes follow the pixels, rows stay aligned, faces are never silently lost,
randomness is reproducible, and every aug config builds."""

from __future__ import annotations

import numpy as np
import pytest

from facedet.data import (
    HSV,
    Cutout,
    HFlip,
    MinFaceSize,
    RandomAffine,
    RandomScaleCrop,
    build_transforms,
    wrap_train_dataset,
)
from facedet.data.geometry import paste_scaled
from facedet.registry import TRANSFORMS, build
from facedet.structures import empty_sample_arrays

from .conftest import CONFIG_DIR

S = 96


def _faces_sample(boxes, size: int = S, ignore=None) -> dict:
    """Black image with white squares at ``boxes`` (so pixels tell where a face went)."""
    img = np.zeros((size, size, 3), np.uint8)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        img[y1:y2, x1:x2] = 255
    s = {**empty_sample_arrays(len(boxes)), "image": img, "image_id": "x", "orig_size": (size, size)}
    s["boxes"] = boxes
    s["labels"] = np.arange(len(boxes))  # distinct, to follow the rows
    s["landmarks"] = np.repeat(((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None], 5, 1)
    if ignore is not None:
        s["ignore"] = np.asarray(ignore, bool)
    return s


def _white_fraction(img: np.ndarray, box: np.ndarray, shrink: float = 1.5) -> float:
    x1, y1, x2, y2 = np.round(box + [shrink, shrink, -shrink, -shrink]).astype(int)
    inner = img[max(y1, 0) : y2, max(x1, 0) : x2]
    return float((inner.min(2) > 200).mean()) if inner.size else 1.0


BOXES = [[10, 10, 30, 34], [50, 20, 80, 44], [20, 60, 44, 88], [70, 70, 78, 78]]


def test_paste_scaled_maps_boxes_exactly_as_pixels():
    src = _faces_sample(BOXES)
    for f, x0, y0 in [(1.37, -7.3, 5.6), (0.61, 20.2, 11.9), (0.33, 3.0, 40.0), (2.5, -60.0, -30.0)]:
        out = np.full((S, S, 3), 128, np.uint8)
        sx, sy, ox, oy = paste_scaled(out, src["image"], f, f, x0, y0)
        assert abs(sx - f) < 0.05 and abs(sy - f) < 0.05
        for b in np.asarray(BOXES, np.float64) * [sx, sy, sx, sy] + [ox, oy, ox, oy]:
            c = np.clip(b, 0, S)
            if (c[2] - c[0]) * (c[3] - c[1]) > 16 and f > 0.5:
                assert _white_fraction(out, c) > 0.95, (f, b)


@pytest.mark.parametrize("seed", range(6))
def test_random_affine_moves_boxes_with_pixels(seed):
    t = RandomAffine(scale=0.5, translate=0.2, degrees=0.0, min_visible=0.3)
    t.set_seed(seed)
    out = t(_faces_sample(BOXES))
    assert out["image"].shape == (S, S, 3) and out["image"].dtype == np.uint8
    n = len(out["boxes"])
    assert len(out["labels"]) == len(out["ignore"]) == len(out["landmarks"]) == n
    assert ((out["boxes"] >= 0) & (out["boxes"] <= S)).all() and (out["boxes"][:, 2:] > out["boxes"][:, :2]).all()
    for b, ign in zip(out["boxes"], out["ignore"], strict=True):
        if not ign and (b[2] - b[0]) > 6 and (b[3] - b[1]) > 6:
            assert _white_fraction(out["image"], b) > 0.9
    # a face left out of the output is entirely outside: no white pixel is left without a box
    covered = np.zeros((S, S), bool)
    for x1, y1, x2, y2 in out["boxes"]:
        covered[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
    assert not ((out["image"].min(2) > 200) & ~covered).any()


def test_random_affine_with_no_change_is_the_identity():
    s = _faces_sample(BOXES)
    out = RandomAffine(scale=0.0, translate=0.0)(s)
    np.testing.assert_array_equal(out["image"], s["image"])
    np.testing.assert_allclose(out["boxes"], s["boxes"], atol=1e-4)
    assert out["labels"].tolist() == [0, 1, 2, 3]


def test_rotation_keeps_faces_boxed():
    t = RandomAffine(scale=0.0, translate=0.0, degrees=30.0, shear=10.0)
    t.set_seed(3)
    out = t(_faces_sample(BOXES))
    covered = np.zeros((S, S), bool)
    for x1, y1, x2, y2 in out["boxes"]:
        covered[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = True
    assert not ((out["image"].min(2) > 200) & ~covered).any()


@pytest.mark.parametrize("seed", range(8))
def test_scale_crop_keeps_every_face(seed):
    t = RandomScaleCrop(max_scale=3.0, p=1.0)
    t.set_seed(seed)
    s = _faces_sample(BOXES, ignore=[False, False, False, True])
    out = t(s)
    kept = ~s["ignore"]
    assert out["labels"][~out["ignore"]].tolist() == s["labels"][kept].tolist()  # no face lost or cut
    for b in out["boxes"][~out["ignore"]]:
        assert _white_fraction(out["image"], b) > 0.9
    scale = (out["boxes"][0, 2] - out["boxes"][0, 0]) / 20
    assert 1.0 - 1e-3 <= scale <= 3.0 + 1e-3


def test_cutout_marks_mostly_covered_faces_ignore_and_removes_none():
    img = np.full((S, S, 3), 255, np.uint8)
    s = {**empty_sample_arrays(len(BOXES)), "image": img, "image_id": "x", "orig_size": (S, S)}
    s["boxes"] = np.asarray(BOXES, np.float32)
    t = Cutout(max_holes=6, min_size=0.1, max_size=0.5, max_covered=0.6, fill=128, p=1.0)
    seen_ignored = 0
    for seed in range(40):
        t.set_seed(seed)
        out = t(s)
        assert len(out["boxes"]) == len(BOXES) and np.array_equal(out["boxes"], s["boxes"])
        for b, ign in zip(out["boxes"].astype(int), out["ignore"], strict=True):
            frac = float((out["image"][b[1] : b[3], b[0] : b[2], 0] == 128).mean())
            assert ign == (frac > 0.6), (seed, b, frac)
            seen_ignored += int(ign)
    assert seen_ignored > 0


def test_min_face_size_ignores_and_keeps():
    s = _faces_sample([[0, 0, 3, 10], [10, 10, 14, 14], [20, 20, 40, 23.5], [50, 50, 70, 70]])
    out = MinFaceSize(min_size=4)(s)
    assert out["ignore"].tolist() == [True, False, True, False] and len(out["boxes"]) == 4
    t = build_transforms([], S, min_face_size=4)
    assert type(t.transforms[-2]).__name__ == "MinFaceSize"
    assert t(s)["target"]["ignore"].tolist() == [True, False, True, False]


def test_hflip_twice_is_identity_and_hsv_only_changes_colours():
    s = _faces_sample(BOXES)
    f = HFlip(p=1.0)
    twice = f(f(s))
    np.testing.assert_array_equal(twice["image"], s["image"])
    np.testing.assert_allclose(twice["boxes"], s["boxes"], atol=1e-5)
    np.testing.assert_allclose(twice["landmarks"], s["landmarks"], atol=1e-5)
    rng = np.random.default_rng(0)
    s["image"] = rng.integers(0, 255, (S, S, 3), np.uint8)
    h = HSV(hue=0.1, saturation=0.5, value=0.5)
    h.set_seed(1)
    a = h(s)
    h.set_seed(1)
    b = h(s)
    assert np.array_equal(a["image"], b["image"]) and not np.array_equal(a["image"], s["image"])
    assert np.array_equal(a["boxes"], s["boxes"])
    np.testing.assert_array_equal(HSV(hue=0, saturation=0, value=0)(s)["image"], s["image"])


PHOTOMETRIC = [
    {"type": "brightness_contrast", "p": 1.0},
    {"type": "blur", "p": 1.0},
    {"type": "noise", "max_std": 0.1, "p": 1.0},
    {"type": "equalize", "method": "clahe", "p": 1.0},
    {"type": "equalize", "method": "global", "p": 1.0},
    {"type": "hsv", "p": 1.0},
]


@pytest.mark.parametrize("spec", PHOTOMETRIC, ids=lambda s: f"{s['type']}-{s.get('method', '')}")
def test_photometric_changes_pixels_only_and_is_seeded(spec):
    rng = np.random.default_rng(0)
    s = _faces_sample(BOXES)
    s["image"] = (rng.random((S, S, 3)) * 120 + 40).astype(np.uint8)
    t = build(spec, TRANSFORMS)
    outs = []
    for seed in (4, 4, 5):
        t.set_seed(seed)
        outs.append(t(s))
    assert np.array_equal(outs[0]["image"], outs[1]["image"])  # same seed, same result
    assert not np.array_equal(outs[0]["image"], s["image"])
    for o in outs:
        assert o["image"].shape == s["image"].shape and o["image"].dtype == np.uint8
        assert np.array_equal(o["boxes"], s["boxes"]) and np.array_equal(o["ignore"], s["ignore"])


def test_unknown_augmentation_key_names_it():
    from facedet.registry import ConfigError

    with pytest.raises(ConfigError, match=r"aug\[0\]\.max_sigmaa.*Did you mean 'max_sigma'"):
        build_transforms([{"type": "blur", "max_sigmaa": 2}], S)


AUGS = sorted(p.stem for p in (CONFIG_DIR / "aug").glob("*.yaml"))


@pytest.mark.parametrize("aug", AUGS)
def test_every_aug_config_builds(compose_cfg, aug, tmp_path):
    from omegaconf import OmegaConf

    from facedet.data import FaceDataset
    from facedet.data.records import Record

    cfg = compose_cfg([f"aug={aug}"])
    a = OmegaConf.to_container(cfg.aug, resolve=True)
    t = build_transforms(a["train"], 64, min_face_size=a["min_face_size"])
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)
    rec = Record(tmp_path / "x.jpg", "x.jpg", np.float32([[5, 5, 30, 40]]), np.zeros(1, bool),
                 np.full((1, 5, 2), np.nan, np.float32), (50, 70))
    ds = FaceDataset([rec], transform=t)
    ds._cache = [img]
    ds = wrap_train_dataset(ds, a)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["target"]["boxes"].shape[1] == 4
