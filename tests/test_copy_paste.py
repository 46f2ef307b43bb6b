"""Copy-paste of small faces: the pasted pixels and their targets, no paste over a labelled face,
off means untouched, determinism, the face bank, the config errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from facedet.data import (
    CopyPaste,
    FaceDataset,
    MixUp,
    Mosaic,
    Oversample,
    build_transforms,
    find_wrappers,
    iter_dataset_chain,
    seed_transforms,
    wrap_train_dataset,
)
from facedet.data.face_bank import touches_another
from facedet.data.records import LoadStats, Record
from facedet.engine.data_hooks import CloseMosaicHook
from facedet.registry import ConfigError

S = 128
RED = (255, 0, 0)
BG = 40  # background grey: neither the face colour nor the canvas grey (128)


def _dataset(specs=None, *, n: int = 5, qualifying=None) -> FaceDataset:
    """Dark images with solid red faces: one big face (30 px, landmarks with the nose absent), one
    ignored big face, and a tiny one. ``qualifying``: the images whose big face may be pasted (the
    others' big face touches the ignored one)."""
    records, images = [], []
    for k in range(n):
        h, w = 100 + 10 * k, 140
        img = np.full((h, w, 3), BG, np.uint8)
        touch = qualifying is not None and k not in qualifying
        boxes = np.float32([[10, 10, 40, 40], [38 if touch else 60, 10, 90, 40], [100, 60, 106, 66]])
        for x1, y1, x2, y2 in boxes.astype(int):
            img[y1:y2, x1:x2] = RED
        lm = np.full((3, 5, 2), np.nan, np.float32)
        lm[0] = [[18, 20], [32, 20], [np.nan, np.nan], [20, 32], [30, 32]]
        records.append(Record(Path(f"{k}.png"), f"{k}.png", boxes, np.array([False, True, False]), lm, (h, w)))
        images.append(img)
    stats = LoadStats(source="test", images=n, faces=3 * n)
    ds = FaceDataset(records, transform=build_transforms(specs or [], S), stats=stats)
    ds._cache = images  # as cache_images would hold them
    return ds


def _paster(ds, **kw) -> CopyPaste:
    opts = {"p": 1.0, "num_faces": [3, 3], "paste_size": [8, 12], "min_source_size": 16, "blend": 0.0} | kw
    return CopyPaste(ds, **opts)


@pytest.mark.parametrize("seed", range(6))
def test_pasted_faces_are_in_the_image_and_in_the_targets(seed):
    ds = _dataset()
    cp = _paster(ds)
    cp.set_seed(seed)
    index = seed % len(ds)
    base = ds.transform.letterbox(ds.load_sample(index))
    raw = cp.raw_item(index)
    n0 = len(base["boxes"])
    new = raw["boxes"][n0:]
    assert len(new) == 3 and np.array_equal(raw["boxes"][:n0], base["boxes"])
    assert raw["labels"][n0:].tolist() == [0, 0, 0] and not raw["ignore"][n0:].any()
    changed = np.zeros((S, S), bool)
    for box, lm in zip(new, raw["landmarks"][n0:], strict=True):
        side = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
        assert 8 - 1 <= side <= 12 + 1
        x1, y1, x2, y2 = np.round(box).astype(int)
        assert (raw["image"][y1:y2, x1:x2] == RED).all()  # the face's pixels, where its box says
        # the landmarks moved with it, inside its box; the absent nose stays absent
        assert np.isnan(lm[2]).all() and np.isfinite(lm[[0, 1, 3, 4]]).all()
        assert ((lm[[0, 1, 3, 4]] >= box[:2]) & (lm[[0, 1, 3, 4]] <= box[2:])).all()
        changed[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = True
    # nothing else in the image changed
    assert np.array_equal(raw["image"][~changed], base["image"][~changed])
    # and the post steps carry them into the tensor targets
    item = cp.post(raw)
    assert len(item["target"]["boxes"]) == n0 + 3


@pytest.mark.parametrize("seed", range(20))
def test_no_paste_covers_a_labelled_face_or_another_paste(seed):
    ds = _dataset()
    cp = _paster(ds, num_faces=[4, 8], paste_size=[6, 20], margin=3)
    cp.set_seed(seed)
    index = seed % len(ds)
    n0 = len(ds.records[index].boxes)
    raw = cp.raw_item(index)
    old, new = raw["boxes"][:n0].astype(np.float64), raw["boxes"][n0:].astype(np.float64)
    assert len(new) >= 1
    for k, b in enumerate(new):
        others = np.concatenate([old, np.delete(new, k, 0)])  # the ignored face included
        gap_x = np.maximum(others[:, 0] - b[2], b[0] - others[:, 2])
        gap_y = np.maximum(others[:, 1] - b[3], b[1] - others[:, 3])
        assert (np.maximum(gap_x, gap_y) >= 3 - 1e-3).all()  # a margin of 3 px to every box


def test_off_returns_the_item_bit_identical_over_the_dataset_and_over_mosaic():
    ds = _dataset([{"type": "hsv"}, {"type": "hflip", "p": 0.5}])
    mosaic = Mosaic(ds, size=S, p=1.0)
    for below in (ds, mosaic):
        cp = CopyPaste(below, p=0.0)
        for i in range(len(ds)):
            seed_transforms(cp, 100 + i)
            a = cp[i]
            seed_transforms(below, 100 + i)
            b = below[i]
            assert torch.equal(a["image"], b["image"])
            assert all(torch.equal(a["target"][k], b["target"][k]) for k in ("boxes", "labels", "ignore"))
            assert torch.equal(a["target"]["landmarks"].isnan(), b["target"]["landmarks"].isnan())


def test_deterministic_given_the_seed_whatever_the_cache():
    ds = _dataset([{"type": "hflip", "p": 0.5}])
    first = _paster(Mosaic(ds, size=S, p=1.0), num_faces=[1, 5], blend=0.25)
    second = _paster(Mosaic(ds, size=S, p=1.0), num_faces=[1, 5], blend=0.25, bank_size=1)
    for i in range(6):
        out = []
        for cp in (first, second, first):
            seed_transforms(cp, i)
            out.append(cp[i % len(ds)])
        for other in out[1:]:
            assert torch.equal(out[0]["image"], other["image"])
            assert torch.equal(out[0]["target"]["boxes"], other["target"]["boxes"])
    assert len(second.bank._cache) == 1  # bank_size bounds the crops kept
    seed_transforms(first, 1)
    a = first.raw_item(0)
    seed_transforms(first, 2)
    assert not np.array_equal(a["image"], first.raw_item(0)["image"])


def test_the_bank_keeps_big_lone_unignored_faces_and_never_pastes_a_face_into_its_own_image():
    assert touches_another(np.float32([[0, 0, 10, 10], [9, 9, 20, 20], [30, 30, 40, 40]])).tolist() == [
        True, True, False]
    ds = _dataset(qualifying={0})  # only image 0's big face is alone
    cp = _paster(ds, num_faces=[2, 2])
    assert cp.bank.faces.tolist() == [[0, 0]]  # not the ignored one, not the 6 px one, not touching ones
    for seed in range(5):
        cp.set_seed(seed)
        assert len(cp.raw_item(0)["boxes"]) == 3  # nothing pasted into image 0
        assert len(cp.raw_item(1)["boxes"]) == 5
    with pytest.raises(ConfigError, match=r"aug\.copy_paste\.min_source_size"):
        _paster(ds, min_source_size=31)


def test_the_chain_order_and_close_mosaic_switches_copy_paste_off():
    ds = _dataset()
    aug = {"oversample": {"enabled": True, "small_size": 16, "threshold": 1}, "mosaic": {"p": 1.0},
           "copy_paste": {"p": 0.5, "min_source_size": 16}, "mixup": {"p": 0.5}}
    out = wrap_train_dataset(ds, aug, img_size=S)
    assert [type(d) for d in iter_dataset_chain(out)] == [MixUp, CopyPaste, Mosaic, Oversample, FaceDataset]
    cp = find_wrappers(out)[1]
    assert isinstance(cp, CopyPaste) and cp.pad_value == 128 and out.records is ds.records
    assert out[0]["image"].shape == (3, S, S)
    hook = CloseMosaicHook(find_wrappers(out), epochs=1)
    hook.trainer = SimpleNamespace(epoch=4, max_epochs=5)
    hook.before_epoch()
    assert cp.p.value == 0.0
    assert wrap_train_dataset(ds, {"copy_paste": {"p": 0.0}}) is ds


@pytest.mark.parametrize(("node", "key"), [
    ({"p": 1.5}, r"aug\.copy_paste\.p"),
    ({"num_faces": [3, 1]}, r"aug\.copy_paste\.num_faces"),
    ({"num_faces": 2}, r"aug\.copy_paste\.num_faces"),
    ({"paste_size": [0, 10]}, r"aug\.copy_paste\.paste_size"),
    ({"margin": -1}, r"aug\.copy_paste\.margin"),
    ({"blend": 0.9}, r"aug\.copy_paste\.blend"),
    ({"bank_size": 0}, r"aug\.copy_paste\.bank_size"),
    ({"paste_sise": [4, 8]}, r"Unknown key 'aug\.copy_paste\.paste_sise'.*Did you mean 'paste_size'"),
    ({"pad_value": 0}, r"'aug\.copy_paste\.pad_value' is set by the framework"),
])
def test_bad_keys_are_config_errors_naming_the_key(node, key):
    with pytest.raises(ConfigError, match=key):
        wrap_train_dataset(_dataset(), {"copy_paste": {"p": 0.5, "min_source_size": 16} | node}, img_size=S)
