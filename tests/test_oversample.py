"""Oversampling of images with many small faces: which images repeat and how often, the epoch length,
the loader (shuffled, DDP shards) serving exactly that pool, mosaic drawing from it, config errors."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from facedet.data import (
    FaceDataset,
    Mosaic,
    Oversample,
    build_dataloader,
    build_transforms,
    seed_transforms,
    wrap_train_dataset,
)
from facedet.data.loader import EpochSampler
from facedet.data.oversample import repeat_counts, small_face_counts
from facedet.data.records import LoadStats, Record
from facedet.registry import ConfigError

S = 64
# per image: (small faces, big faces, ignored small faces); originals are 128 px, so at S = 64 a
# 20 px face is 10 px (small, < 16) and a 40 px face 20 px (not small)
LAYOUT = [(0, 2, 0), (1, 1, 0), (2, 0, 3), (3, 0, 0), (4, 1, 0), (5, 0, 0), (7, 0, 1)]
SMALL = [n for n, _, _ in LAYOUT]


def _dataset(layout=LAYOUT, specs=None) -> FaceDataset:
    records, images = [], []
    for k, (small, big, ignored) in enumerate(layout):
        sides = [20] * (small + ignored) + [40] * big
        boxes = np.float32([[4 + (i % 4) * 28, 4 + (i // 4) * 44, 4 + (i % 4) * 28 + s, 4 + (i // 4) * 44 + s]
                            for i, s in enumerate(sides)]).reshape(-1, 4)
        ignore = np.array([False] * small + [True] * ignored + [False] * big)
        records.append(Record(Path(f"{k}.png"), f"{k}.png", boxes, ignore,
                              np.full((len(sides), 5, 2), np.nan, np.float32), (128, 128)))
        images.append(np.full((128, 128, 3), 10 * k, np.uint8))
    stats = LoadStats(source="test", images=len(records), faces=sum(len(r.boxes) for r in records))
    ds = FaceDataset(records, transform=build_transforms(specs or [], S), stats=stats)
    ds._cache = images  # as cache_images would hold them
    return ds


def test_small_faces_are_counted_at_the_input_size_without_the_ignored_ones():
    ds = _dataset()
    assert small_face_counts(ds.records, size=S, small_size=16).tolist() == SMALL
    # at twice the size the 20 px faces are 20 px: none is small
    assert small_face_counts(ds.records, size=128, small_size=16).tolist() == [0] * len(LAYOUT)
    assert repeat_counts(np.array(SMALL), threshold=2, max_repeat=3).tolist() == [1, 1, 1, 1, 2, 2, 3]


def test_the_images_repeat_as_the_rule_says_and_the_epoch_grows(caplog):
    ds = _dataset()
    with caplog.at_level(logging.INFO, logger="facedet.data.oversample"):
        ov = wrap_train_dataset(ds, {"oversample": {"enabled": True, "small_size": 16, "threshold": 2,
                                                    "max_repeat": 3}}, img_size=S)
    assert isinstance(ov, Oversample)
    expected = {i: r for i, r in enumerate([1, 1, 1, 1, 2, 2, 3])}
    assert len(ov) == sum(expected.values()) == 11
    assert Counter(ov.source.tolist()) == expected
    assert ov.records is ds.records  # the unique images: evaluation and the anchor check see each once
    assert "oversampling: 7 images -> 11 per epoch, 3 images repeated" in caplog.text
    for i in range(len(ov)):  # item i is image source[i], transformed as the data set does it
        seed_transforms(ov, i)
        a = ov[i]
        seed_transforms(ds, i)
        assert torch.equal(a["image"], ds[int(ov.source[i])]["image"])
    assert wrap_train_dataset(ds, {"oversample": {"enabled": False, "threshold": 2}}) is ds


@pytest.mark.parametrize("world_size", [1, 2])
def test_an_epoch_of_the_loader_serves_exactly_the_repeated_pool(world_size):
    ov = Oversample(_dataset(), size=S, small_size=16, threshold=2, max_repeat=3)
    seen: Counter = Counter()
    for rank in range(world_size):
        dl = build_dataloader(ov, batch_size=1, shuffle=True, num_workers=0, seed=3, rank=rank,
                              world_size=world_size)
        assert isinstance(dl.sampler, EpochSampler)
        dl.sampler.set_epoch(1)
        seen.update(meta["image_id"] for batch in dl for meta in batch["metas"])
    # 11 items: two ranks pad their shards to 6 + 6 with one repeat (torch's DistributedSampler)
    expected = Counter({f"{i}.png": r for i, r in enumerate([1, 1, 1, 1, 2, 2, 3])})
    assert not expected - seen and sum((seen - expected).values()) == (0 if world_size == 1 else 1)


def test_mosaic_draws_its_other_images_from_the_repeated_pool():
    ds = _dataset()
    ov = Oversample(ds, size=S, small_size=16, threshold=1, max_repeat=5)
    mosaic = Mosaic(ov, size=S, p=1.0)
    assert len(mosaic) == len(ov) == int(np.clip(SMALL, 1, 5).sum()) and mosaic.records is ds.records
    calls: list[int] = []
    ov_load = ov.load_sample
    ov.load_sample = lambda i, copy=True: calls.append(i) or ov_load(i, copy=copy)  # type: ignore[method-assign]
    for seed in range(40):
        mosaic.set_seed(seed)
        mosaic.raw_item(0)
    assert len(calls) == 4 * 40  # item 0 and three drawn per mosaic
    drawn = Counter(int(ov.source[i]) for k, i in enumerate(calls) if k % 4)
    # image 6 (7 small faces, 5 copies) is drawn about 5x as often as image 0 (one copy)
    assert drawn[6] > 2 * drawn[0]


@pytest.mark.parametrize(("node", "key"), [
    ({"threshold": 0}, r"aug\.oversample\.threshold"),
    ({"threshold": 1.5}, r"aug\.oversample\.threshold"),
    ({"max_repeat": 0}, r"aug\.oversample\.max_repeat"),
    ({"small_size": 0}, r"aug\.oversample\.small_size"),
    ({"treshold": 2}, r"Unknown key 'aug\.oversample\.treshold'.*Did you mean 'threshold'"),
    ({"size": 32}, r"'aug\.oversample\.size' is set by the framework"),
])
def test_bad_keys_are_config_errors_naming_the_key(node, key):
    with pytest.raises(ConfigError, match=key):
        wrap_train_dataset(_dataset(), {"oversample": {"enabled": True} | node}, img_size=S)
