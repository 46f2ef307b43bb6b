"""The five points through every augmentation: they stay on the image features they label (a
coloured dot per point, so the pixels say where each point went), a flip swaps the left/right
pairs, points cut off by the border become absent, and carrying points changes no random draw,
pixel or box (a model without landmarks trains as before)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from facedet.data import FaceDataset, MixUp, Mosaic, build_transforms, seed_transforms, wrap_train_dataset
from facedet.data.geometry import apply_rotation_shear, finish_targets
from facedet.data.records import LoadStats, Record
from facedet.data.transforms import FLIP_ORDER

S = 160
GREY = 128  # background and letterbox pad: no point's colour
# one colour per point: left eye, right eye, nose, left and right mouth corner
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]], np.float64)
# a frontal face's points relative to its centre; 17+ px apart, dots of radius 6
FACE = np.array([[-18, -12], [18, -12], [0, 4], [-14, 20], [14, 20]], np.float64)


def _image_and_record(k: int, h: int, w: int, centres: list[tuple[float, float]], absent=()) -> tuple:
    """A grey image with a dot of each point's colour at each point; ``absent``: (face, point)
    pairs labelled absent (NaN, and no dot drawn)."""
    img = np.full((h, w, 3), GREY, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    lm = np.array([FACE + c for c in centres], np.float32)
    for f, p in absent:
        lm[f, p] = np.nan
    for pts in lm:
        for j, (x, y) in enumerate(pts):
            if np.isfinite(x):
                img[(xx - x) ** 2 + (yy - y) ** 2 <= 36] = COLOURS[j]
    boxes = np.array([[x - 30, y - 30, x + 30, y + 36] for x, y in centres], np.float32)
    rec = Record(f"{k}.png", f"{k}.png", boxes, np.zeros(len(boxes), bool), lm, (h, w))  # type: ignore[arg-type]
    return img, rec


def _dataset(specs, *, landmarks: bool = True) -> FaceDataset:
    """Four images of two or three faces (sizes differ: letterbox and mosaic rescale them)."""
    parts = [
        _image_and_record(0, 150, 200, [(60, 60), (140, 95)], absent=[(1, 2)]),
        _image_and_record(1, 220, 180, [(50, 50), (120, 150)]),
        _image_and_record(2, 120, 240, [(50, 60), (130, 60), (200, 70)], absent=[(0, 0), (2, 3), (2, 4)]),
        _image_and_record(3, 200, 200, [(100, 100)]),
    ]
    records = [r for _, r in parts]
    if not landmarks:
        records = [Record(r.image_path, r.image_id, r.boxes, r.ignore, np.full_like(r.landmarks, np.nan),
                          r.orig_size) for r in records]
    stats = LoadStats(source="test", images=len(records), faces=sum(len(r.boxes) for r in records))
    ds = FaceDataset(records, transform=build_transforms(specs, S), stats=stats)
    ds._cache = [img for img, _ in parts]  # as cache_images holds them
    return ds


def _pixels(item) -> np.ndarray:
    return (item["image"].permute(1, 2, 0).numpy() * 255).round()


def _nearest(palette: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour of each pixel (..., 3)."""
    return np.argmin(((pixels[..., None, :] - palette) ** 2).sum(-1), -1)


def _check_points(item, flipped: bool) -> int:
    """Every present point lies on a dot of its own colour (of its mirror partner's before a flip):
    its pixel shows no other point's colour, and its colour is within a pixel of it (where a dot is
    cut by the border, interpolation blends its last pixels with the pad). Left points stay left of
    right ones. Returns the number of points checked."""
    img, lm = _pixels(item), item["target"]["landmarks"].numpy()
    expected = FLIP_ORDER if flipped else np.arange(5)
    palette = np.vstack([COLOURS, [GREY] * 3])  # index 5: grey
    n = 0
    for face in lm:
        for k, (x, y) in enumerate(face):
            if np.isnan(x) or np.isnan(y):
                continue
            assert 0 <= x <= S and 0 <= y <= S, "a point outside the image must be absent"
            c, r = min(int(x), S - 1), min(int(y), S - 1)
            here = _nearest(palette, img[r, c])
            around = _nearest(palette, img[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2])
            assert here in (expected[k], 5) and expected[k] in around, (k, (x, y), img[r, c])
            n += 1
        if np.isfinite(face[[0, 1], 0]).all():
            assert face[0, 0] < face[1, 0]  # the left eye is on the image's left, flipped or not
        if np.isfinite(face[[3, 4], 0]).all():
            assert face[3, 0] < face[4, 0]
    return n


GEOMETRIC = {
    "letterbox": ([], False),
    "hflip": ([{"type": "hflip", "p": 1.0}], True),
    "affine": ([{"type": "affine", "scale": 0.5, "translate": 0.2, "degrees": 10.0, "shear": 5.0}], False),
    "scale_crop": ([{"type": "scale_crop", "max_scale": 3.0, "p": 1.0}], False),
    "affine+hflip": ([{"type": "affine", "scale": 0.3, "degrees": 8.0}, {"type": "hflip", "p": 1.0}], True),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_points_stay_on_their_features(name):
    specs, flipped = GEOMETRIC[name]
    ds, checked = _dataset(specs), 0
    for seed in range(6):
        seed_transforms(ds, seed)
        for i in range(len(ds)):
            checked += _check_points(ds[i], flipped)
    assert checked > 6 * 20


@pytest.mark.parametrize("p,flip", [(1.0, False), (1.0, True), (0.0, True)])
def test_mosaic_points_stay_on_their_features(p, flip):
    specs = [{"type": "hflip", "p": 1.0}] if flip else []
    mosaic = Mosaic(_dataset(specs), size=S, pad_value=GREY, p=p, scale=0.5, translate=0.2, degrees=8.0)
    checked = 0
    for seed in range(8):
        seed_transforms(mosaic, seed)
        for i in range(len(mosaic)):
            checked += _check_points(mosaic[i], flip)
    assert checked > 8 * 20


def test_points_without_pixels_become_absent_and_records_keep_them():
    """A point outside the image (as labelled, or cut by a crop) has no pixels to learn from: absent
    in training; one outside the canvas before a rotation too (the warp would carry it onto the
    pad in a corner). The record keeps the label as written (conversion stays lossless)."""
    img, rec = _image_and_record(0, 150, 200, [(60, 60), (180, 95)])
    rec.landmarks[1, 1] = [203, 80]  # right of the image
    stats = LoadStats(source="test", images=1, faces=2)
    ds = FaceDataset([rec], transform=None, stats=stats)
    ds._cache = [img]
    sample = ds.load_sample(0)
    assert np.isnan(sample["landmarks"][1, 1]).all() and np.isfinite(sample["landmarks"][1, [0, 2, 3, 4]]).all()
    assert rec.landmarks[1, 1].tolist() == [203, 80]
    targets = {"boxes": np.float32([[0, 0, 50, 50]]), "labels": np.zeros(1, np.int64), "ignore": np.zeros(1, bool),
               "landmarks": np.float64([[[10, 10], [55, 20], [20, -1], [30, 40], [49, 49]]])}
    _, out = apply_rotation_shear(np.full((50, 50, 3), GREY, np.uint8), targets, 8.0, 0.0, GREY)
    assert np.isnan(out["landmarks"][0, [1, 2]]).all() and np.isfinite(out["landmarks"][0, [0, 3, 4]]).all()
    assert np.isnan(finish_targets(targets, (40, 40), min_visible=0.0)["landmarks"][0, [1, 2, 4]]).all()


def test_mixup_keeps_both_sets_of_points():
    ds = _dataset([])
    mixed = MixUp(ds, p=1.0)
    plain = [ds[i]["target"]["landmarks"] for i in range(len(ds))]
    for seed in range(4):
        seed_transforms(mixed, seed)
        lm = mixed[0]["target"]["landmarks"]
        n = len(plain[0])
        torch.testing.assert_close(lm[:n], plain[0], equal_nan=True)
        assert any(torch.equal(lm[n:].nan_to_num(-7), other.nan_to_num(-7)) for other in plain)


@pytest.mark.parametrize("spec", [
    {"type": "hsv"}, {"type": "brightness_contrast", "p": 1.0}, {"type": "blur", "p": 1.0},
    {"type": "noise", "p": 1.0}, {"type": "equalize", "p": 1.0},
    {"type": "cutout", "max_holes": 4, "min_size": 0.1, "max_size": 0.3, "p": 1.0},
])
def test_pixel_only_steps_leave_points_where_they_were(spec):
    base, other = _dataset([]), _dataset([spec])
    for seed in range(3):
        seed_transforms(other, seed)
        for i in range(len(base)):
            a, b = base[i]["target"], other[i]["target"]
            torch.testing.assert_close(b["landmarks"], a["landmarks"], equal_nan=True)


@pytest.mark.parametrize("aug", ["default", "mosaic", "all"])
def test_carrying_points_changes_no_draw_pixel_or_box(compose_cfg, aug):
    """The same seeds give the same images, boxes, labels and ignore flags whether the faces have
    points or not: the targets gained landmarks, nothing else moved (models without landmarks
    train bit for bit as before)."""
    cfg = OmegaConf.to_container(compose_cfg([f"aug={aug}"]).aug, resolve=True)
    if aug == "all":  # and the steps no shipped config uses, mixup more often
        cfg["train"] += [{"type": "affine", "degrees": 5.0, "p": 0.5}, {"type": "scale_crop", "p": 0.5}]
        cfg["mixup"]["p"] = 0.5

    def chain(landmarks: bool):
        ds = _dataset(cfg["train"], landmarks=landmarks)
        ds.transform = build_transforms(cfg["train"], S, min_face_size=cfg.get("min_face_size", 0.0))
        return wrap_train_dataset(ds, cfg)

    with_points, without = chain(True), chain(False)
    points = 0
    for seed in range(6):
        seed_transforms(with_points, seed)
        seed_transforms(without, seed)
        for i in range(len(with_points)):
            a, b = with_points[i], without[i]
            assert torch.equal(a["image"], b["image"])
            for key in ("boxes", "labels", "ignore"):
                assert torch.equal(a["target"][key], b["target"][key]), key
            assert torch.isnan(b["target"]["landmarks"]).all()
            points += int(torch.isfinite(a["target"]["landmarks"]).all(2).sum())
    assert points > 6 * 10
