"""One FaceDataset for every reader, wrappers built from their registry, the one walk down the
wrapper chain, the uint8 worker transport and the input-size check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

from facedet.data import (
    FaceDataset,
    MixUp,
    Mosaic,
    ReaderDataset,
    build_transforms,
    check_img_size,
    find_wrappers,
    innermost_dataset,
    iter_dataset_chain,
    seed_transforms,
    wrap_train_dataset,
)
from facedet.data.loader import BatchSeeded
from facedet.data.records import LoadStats, Record
from facedet.registry import DATASETS, READERS, ConfigError, accepted_arguments, build

S = 64
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"


def _dataset(n: int = 4, specs=None) -> FaceDataset:
    rng = np.random.default_rng(0)
    records, images = [], []
    for k in range(n):
        h, w = 40 + 8 * k, 60
        records.append(Record(Path(f"{k}.png"), f"{k}.png", np.float32([[5, 5, 25, 30]]), np.zeros(1, bool),
                              np.full((1, 5, 2), np.nan, np.float32), (h, w)))
        images.append(rng.integers(0, 255, (h, w, 3), np.uint8))
    specs = [{"type": "hflip", "p": 0.5}] if specs is None else specs
    stats = LoadStats(source="test", images=n, faces=n)
    ds = FaceDataset(records, transform=build_transforms(specs, S), stats=stats)
    ds._cache = images  # as cache_images would hold them
    return ds


def test_every_reader_builds_the_one_face_dataset(tmp_path):
    assert DATASETS.names() == READERS.names()
    assert all(isinstance(DATASETS.get(name), ReaderDataset) for name in READERS)
    node = {"type": "synthetic", "root": str(tmp_path / "syn"), "split": "val", "num_train": 1, "num_val": 2}
    ds = build(node, DATASETS, where="data.val", transform=None, cache_images=False)
    assert type(ds) is FaceDataset and len(ds) == 2 and ds.records[0].image_id == "00000.jpg"


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_data_config_node_has_the_keys_its_dataset_takes(config):
    """Every configs/data file (and so a dataset config stored in a checkpoint) still builds: its
    keys are the ones the DATASETS entry accepts, the required ones included."""
    cfg = OmegaConf.load(CONFIGS / config)
    for split in ("train", "val"):
        node = OmegaConf.to_container(cfg[split], resolve=False)
        names, required, _ = accepted_arguments(DATASETS.get(node.pop("type")))
        assert set(node) <= set(names) - {"transform", "cache_images"}, (config, split)
        assert set(required) <= set(node), (config, split)


def test_a_wrong_dataset_key_is_named_with_a_suggestion(tmp_path):
    node = {"type": "wider_txt", "ann_file": str(tmp_path), "img_dirr": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"'data\.train\.img_dirr'.*Did you mean 'img_dir'"):
        build(node, DATASETS, where="data.train", transform=None, cache_images=False)
    with pytest.raises(ConfigError, match=r"Missing key\(s\) data\.train\.img_dir"):
        build({"type": "coco_json", "ann_file": "x"}, DATASETS, where="data.train", transform=None,
              cache_images=False)


def test_wrappers_come_from_their_registry_with_the_size_given():
    ds = _dataset()
    out = wrap_train_dataset(ds, {"mosaic": {"p": 1.0, "degrees": 3.0}, "mixup": {"p": 0.5}}, img_size=96)
    assert [type(d) for d in iter_dataset_chain(out)] == [MixUp, Mosaic, FaceDataset]
    mosaic = find_wrappers(out)[1]
    assert (mosaic.size, mosaic.pad_value, mosaic.degrees) == (96, 128, 3.0)
    assert out[0]["image"].shape == (3, 96, 96)  # mosaic's size, not the letterbox's 64
    assert out.records is ds.records and len(out) == len(ds) and innermost_dataset(out) is ds
    # without img_size (older callers) the letterbox's size is used
    assert find_wrappers(wrap_train_dataset(ds, {"mosaic": {"p": 1.0}}))[0].size == S
    assert wrap_train_dataset(ds, {"mosaic": {"p": 0.0}, "mixup": {"p": 0.0}}) is ds


def test_wrapper_keys_are_checked_by_build():
    ds = _dataset()
    with pytest.raises(ConfigError, match=r"Unknown key 'aug\.mosaic\.scael'.*Did you mean 'scale'"):
        wrap_train_dataset(ds, {"mosaic": {"p": 1.0, "scael": 0.2}}, img_size=S)
    with pytest.raises(ConfigError, match=r"'aug\.mosaic\.size' is set by the framework"):
        wrap_train_dataset(ds, {"mosaic": {"p": 1.0, "size": 32}}, img_size=S)
    with pytest.raises(ConfigError, match=r"Unknown key 'aug\.mixup\.beta'"):
        wrap_train_dataset(ds, {"mixup": {"p": 1.0, "beta": 2}})
    bare = FaceDataset(ds.records, transform=None)
    with pytest.raises(ConfigError, match="build_transforms"):
        Mosaic(bare, size=S)


def test_one_walk_down_the_chain_through_the_loader_wrapper_and_subset():
    ds = _dataset()
    mosaic = Mosaic(ds, size=S)
    mixup = MixUp(mosaic, p=0.5)
    chain = list(iter_dataset_chain(BatchSeeded(Subset(mixup, [0, 1]))))
    assert [type(d) for d in chain[:2]] == [BatchSeeded, Subset] and chain[2:] == [mixup, mosaic, ds]
    assert find_wrappers(chain[0]) == [mixup, mosaic]


def test_seed_transforms_reseeds_wrappers_and_the_readers_transform():
    ds = _dataset(specs=[{"type": "hflip", "p": 0.5}])
    wrapped = MixUp(Mosaic(ds, size=S), p=0.5)
    flip = ds.transform.transforms[1]
    seed_transforms(BatchSeeded(wrapped), 11)
    draws = (wrapped.rng.random(), wrapped.dataset.rng.random(), flip.rng.random())
    seed_transforms(wrapped, 11)
    assert (wrapped.rng.random(), wrapped.dataset.rng.random(), flip.rng.random()) == draws
    expected = np.random.default_rng(11).random()
    assert draws[0] == draws[1] == expected and draws[2] == np.random.default_rng((11 * 1000003 + 1) % 2**32).random()


def _items(batch):
    return batch


def test_uint8_images_only_leave_worker_processes():
    """ToTensor(worker_uint8) sends uint8 out of a worker; in the main process items stay float."""
    ds = _dataset(specs=[])
    direct = ds[1]["image"]
    assert direct.dtype == torch.float32
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=_items)
    from_worker = next(iter(loader))[1]["image"]
    assert from_worker.dtype == torch.uint8
    torch.testing.assert_close(from_worker.float() / 255, direct)


def test_one_input_size_check():
    assert check_img_size(416) == 416
    for bad in (0, 100, -32):
        with pytest.raises(ConfigError, match=r"data\.img_size must be a multiple of 32"):
            check_img_size(bad, where="data.img_size")
