"""Shared fixtures: config composition and paths."""

from __future__ import annotations

from collections.abc import Callable
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


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose_cfg(overrides=[...], name="train") -> the composed config, as tools/train.py sees it."""

    return compose_config
