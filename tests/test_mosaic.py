"""Mosaic and mixup wrappers, the minimum face size on mosaic output, close-mosaic under persistent
workers, multi-scale batches."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facedet.data import FaceDataset, MixUp, Mosaic, build_dataloader, build_transforms, find_wrappers
from facedet.data.records import LoadStats, Record
from facedet.engine.data_hooks import CloseMosaicHook, MultiScaleHook, resize_batch

S = 128


def _face_images(tmp_path, n: int = 6, seed: int = 0) -> tuple[list[Record], list[np.ndarray]]:
    """Black images of several sizes with white square faces, many of them tiny: a face's pixels
    show where it went, so a face dropped from the labels shows as white pixels with no box."""
    rng = np.random.default_rng(seed)
    records, images = [], []
    for k in range(n):
        h, w = (int(v) for v in rng.integers(60, 260, 2))
        img = np.zeros((h, w, 3), np.uint8)
        boxes = []
        for _ in range(int(rng.integers(3, 12))):
            side = float(np.exp(rng.uniform(np.log(3), np.log(min(h, w) / 3))))
            x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
            b = np.round([x, y, x + side, y + side])
            prev = np.array(boxes).reshape(-1, 4)
            if (np.minimum(prev[:, 2:], b[2:]) > np.maximum(prev[:, :2], b[:2]) - 2).all(1).any():
                continue  # keep faces apart
            boxes.append(b)
            img[int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] = 255
        records.append(Record(tmp_path / f"{k}.png", f"{k}.png", np.array(boxes, np.float32),
                              np.zeros(len(boxes), bool), np.full((len(boxes), 5, 2), np.nan, np.float32), (h, w)))
        images.append(img)
    return records, images


def _dataset(tmp_path, *, min_face_size: float = 0.0, specs=None) -> FaceDataset:
    records, images = _face_images(tmp_path)
    stats = LoadStats(source="test", images=len(records), faces=sum(len(r.boxes) for r in records))
    ds = FaceDataset(records, transform=build_transforms(specs or [], S, min_face_size=min_face_size), stats=stats)
    ds._cache = images  # as cache_images would hold them
    return ds


def _white_outside_boxes(img: np.ndarray, boxes: np.ndarray) -> int:
    covered = np.zeros(img.shape[:2], bool)
    for x1, y1, x2, y2 in boxes:  # a pixel of margin for the interpolated edges
        covered[max(int(y1) - 1, 0) : int(np.ceil(y2)) + 1, max(int(x1) - 1, 0) : int(np.ceil(x2)) + 1] = True
    return int(((img.min(2) > 128) & ~covered).sum())


@pytest.mark.parametrize("seed", range(10))
def test_mosaic_boxes_follow_pixels_and_tiny_faces_become_ignore(tmp_path, seed):
    ds = _dataset(tmp_path, min_face_size=6)
    m = Mosaic(ds, size=S, p=1.0, scale=0.5, translate=0.1, min_visible=0.3)
    m.set_seed(seed)
    raw = m.raw_item(seed % len(ds))
    img, boxes, ignore = raw["image"], raw["boxes"], raw["ignore"]
    assert img.shape == (S, S, 3) and len(boxes) == len(ignore) == len(raw["labels"]) == len(raw["landmarks"])
    assert ((boxes >= 0) & (boxes <= S)).all() and (boxes[:, 2:] > boxes[:, :2]).all()
    # never silently removed: every visible face pixel is inside a labelled (maybe ignored) box
    assert _white_outside_boxes(img, boxes) == 0
    for b, ign in zip(boxes, ignore, strict=True):  # and every face that is learnt from shows a face
        if not ign and (b[2:] - b[:2]).min() > 4:
            x1, y1, x2, y2 = np.round(b + [1, 1, -1, -1]).astype(int)
            assert (img[y1:y2, x1:x2].min(2) > 128).mean() > 0.85
    # the minimum face size applies to the mosaic output (after the random scale), as ignore
    item = m.post(raw)
    t = item["target"]
    wh = t["boxes"][:, 2:] - t["boxes"][:, :2]
    small = wh.min(1).values < 6
    assert len(t["boxes"]) == len(boxes) and bool(t["ignore"][small].all())
    assert not t["ignore"][~small & ~torch.from_numpy(ignore)].any()


def test_mosaic_makes_faces_smaller_and_they_are_counted(tmp_path):
    ds = _dataset(tmp_path, min_face_size=6)
    m = Mosaic(ds, size=S, p=1.0, scale=0.5)
    total, ignored = 0, 0
    for seed in range(20):
        m.set_seed(seed)
        t = m[seed % len(ds)]["target"]
        total, ignored = total + len(t["boxes"]), ignored + int(t["ignore"].sum())
    assert total > 50 and 0 < ignored < total  # tiny faces are there, labelled ignore


def test_mosaic_probability_and_reproducibility(tmp_path):
    ds = _dataset(tmp_path)
    m = Mosaic(ds, size=S, p=0.0, scale=0.0, translate=0.0)
    for i in range(len(ds)):  # p = 0: single images; with scale 0 and translate 0 the plain letterbox
        item, plain = m[i], ds[i]  # (placed to the nearest pixel, resized in one step: not bit-equal)
        assert (item["image"] - plain["image"]).abs().mean() < 0.03
        torch.testing.assert_close(item["target"]["boxes"], plain["target"]["boxes"], atol=1.5, rtol=0)
        assert item["meta"]["orig_size"] == plain["meta"]["orig_size"]
        assert abs(item["meta"]["ratio"] - plain["meta"]["ratio"]) < 0.02
    m.p.value = 1.0

    def epoch(workers):
        dl = build_dataloader(m, batch_size=3, shuffle=True, num_workers=workers, seed=5, drop_last=True)
        return [b["images"] for b in dl]

    a, b = epoch(0), epoch(0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_mixup_blends_and_keeps_both_sets_of_faces(tmp_path):
    ds = _dataset(tmp_path)
    mx = MixUp(ds, p=1.0, alpha=8.0)
    mx.set_seed(0)
    item = mx[0]
    rng = np.random.default_rng(0)
    rng.random()
    j = int(rng.integers(0, len(ds)))
    r = float(rng.beta(8.0, 8.0))
    torch.testing.assert_close(item["image"], ds[0]["image"] * r + ds[j]["image"] * (1 - r))
    assert len(item["target"]["boxes"]) == len(ds[0]["target"]["boxes"]) + len(ds[j]["target"]["boxes"])
    assert find_wrappers(MixUp(Mosaic(ds, size=S), p=0.5))[1].__class__ is Mosaic


def test_close_mosaic_reaches_persistent_workers(tmp_path):
    ds = _dataset(tmp_path)
    m = Mosaic(ds, size=S, p=1.0, scale=0.0, translate=0.0)
    dl = build_dataloader(m, batch_size=2, shuffle=False, num_workers=1, seed=0)
    hook = CloseMosaicHook([m], epochs=2)
    hook.trainer = SimpleNamespace(epoch=0, max_epochs=4)

    def sizes():  # mosaic items say (S, S) in meta; single images their original size
        return {tuple(meta["orig_size"]) for b in dl for meta in b["metas"]}

    hook.before_epoch()
    assert sizes() == {(S, S)}
    hook.trainer.epoch = 2  # the last 2 of 4 epochs
    hook.before_epoch()
    assert m.p.value == 0.0 and (S, S) not in sizes()  # the worker process saw the change
    hook.trainer.epoch = 0  # e.g. a resumed run: the state follows the epoch
    hook.before_epoch()
    assert m.p.value == 1.0 and sizes() == {(S, S)}
    one = CloseMosaicHook([m], epochs=5)
    one.trainer = SimpleNamespace(epoch=0, max_epochs=1)
    one.before_epoch()
    assert m.p.value == 1.0  # the first epoch always keeps mosaic


def test_multi_scale_sizes_and_targets(tmp_path):
    ds = _dataset(tmp_path)
    dl = build_dataloader(ds, batch_size=4, shuffle=False, num_workers=0, seed=0)
    batch = next(iter(dl))
    hook = MultiScaleHook(img_size=S, min_scale=0.5, max_scale=1.5, seed=3, min_face_size=4)
    assert hook.sizes == [64, 96, 128, 160, 192]
    hook.trainer = SimpleNamespace(step=0)
    seen = set()
    for step in range(30):
        hook.trainer.step = step
        out = hook.preprocess_batch(batch)
        size = out["images"].shape[-1]
        seen.add(size)
        hook.trainer.step = step
        assert hook.preprocess_batch(batch)["images"].shape[-1] == size  # a function of (seed, step)
        f = size / S
        for t0, t1 in zip(batch["targets"], out["targets"], strict=True):
            torch.testing.assert_close(t1["boxes"], t0["boxes"] * f)
            wh = t1["boxes"][:, 2:] - t1["boxes"][:, :2]
            assert bool(t1["ignore"][wh.min(1).values < 4].all())
    assert len(seen) >= 3
    # content follows: a white face stays white at its scaled box
    small = resize_batch(batch, 64)
    b = small["targets"][0]["boxes"]
    big = b[(b[:, 2:] - b[:, :2]).min(1).values > 8]
    for x1, y1, x2, y2 in big.round().int().tolist():
        assert small["images"][0, :, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].min(0).values.mean() > 0.8


def test_worker_transport_gives_the_same_batches(tmp_path):
    """Workers send uint8 images and packed targets; the loader's batches equal in-process ones."""
    ds = _dataset(tmp_path, min_face_size=6)

    def batches(workers):
        dl = build_dataloader(ds, batch_size=4, shuffle=False, num_workers=workers, seed=0)
        return list(dl)

    for a, b in zip(batches(0), batches(2), strict=True):
        assert b["images"].dtype == torch.float32 and torch.equal(a["images"], b["images"])
        assert len(a["targets"]) == len(b["targets"]) == len(a["images"]) and a["metas"] == b["metas"]
        for ta, tb in zip(a["targets"], b["targets"], strict=True):
            assert ta.keys() == tb.keys()
            for k in ta:
                torch.testing.assert_close(ta[k], tb[k], equal_nan=True)
    assert isinstance(ds[0]["image"], torch.Tensor) and ds[0]["image"].dtype == torch.float32  # direct use
