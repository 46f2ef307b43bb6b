"""The sample grid: drawn with faces and ignored faces in their colours, written by
facedet-show-batch (facedet/cli/show_batch.py), and sent to TensorBoard once at the first training step."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import torch

from facedet.cli import show_batch
from facedet.data.visualize import FACE, IGNORED, batch_grid, draw_sample
from facedet.engine.data_hooks import SampleGridHook


def _batch(n=3):
    images = torch.zeros(n, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0], [36.0, 36.0, 60.0, 60.0]]),
                "ignore": torch.tensor([False, True]), "labels": torch.zeros(2, dtype=torch.long),
                "landmarks": torch.full((2, 5, 2), float("nan"))} for _ in range(n)]
    return {"images": images, "targets": targets, "metas": [{}] * n}


def test_faces_and_ignored_faces_get_their_colours():
    b = _batch(1)
    img = draw_sample(b["images"][0], b["targets"][0])
    assert tuple(img[4, 17]) == FACE and tuple(img[36, 48]) == IGNORED  # top edges of the two boxes
    grid = batch_grid(_batch(5))
    assert grid.shape == (2 * 64 + 2, 3 * 64 + 4, 3) and grid.dtype == np.uint8


class _Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, img, step, dataformats):
        self.images.append((tag, img.shape, step, dataformats))


def test_grid_goes_to_tensorboard_once():
    writer = _Writer()
    hook = SampleGridHook()
    hook.trainer = SimpleNamespace(tb_writer=writer, step=0)
    batch = _batch(4)
    assert hook.preprocess_batch(batch) is batch and hook.preprocess_batch(batch) is batch
    assert writer.images == [("train/batch", (130, 130, 3), 0, "HWC")]


def test_show_batch_tool_writes_the_png(tmp_path, capsys):
    assert show_batch.main([f"data.root={tmp_path / 'syn'}", "data.num_train=6", "data.num_val=2", "data.img_size=96",
                            "aug=mosaic", f"show.out={tmp_path / 'grid.png'}", "show.num_images=4"]) == 0
    img = cv2.imread(str(tmp_path / "grid.png"))
    assert img.shape == (2 * 96 + 2, 2 * 96 + 2, 3)
    assert "4 samples at 96 px" in capsys.readouterr().out
