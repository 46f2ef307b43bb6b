"""Shared fixtures: config composition and paths."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SHARED = ROOT.parent / "shared"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def compose_config(overrides: list[str] | None = None, name: str = "train") -> DictConfig:
    """The config ``configs/<name>.yaml`` composed with ``overrides``, as the tools see it."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [])


@dataclass
class GroundTruth:
    """The record fields the evaluators read (a light stand-in for ``facedet.data.records.Record``)."""

    image_id: str
    orig_size: tuple[int, int]
    boxes: np.ndarray
    ignore: np.ndarray


DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def no_leaked_distributed_env() -> Iterator[None]:
    """Fail the test that leaves torch.distributed variables changed: every later in-process training
    would take them for a multi-process job and wait for a rendezvous that never comes."""
    before = {k: os.environ.get(k) for k in DIST_VARS}
    yield
    after = {k: os.environ.get(k) for k in DIST_VARS}
    assert after == before, f"the test changed torch.distributed variables: {before} -> {after}"


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg(overrides=[...], name="train") -> the composed config, as tools/train.py sees it."""

    return compose_config
