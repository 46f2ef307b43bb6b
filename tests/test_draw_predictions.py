"""facedet-draw (facedet/cli/draw_predictions.py): a results json drawn against the val ground truth."""

from __future__ import annotations

import json

import cv2
import pytest

from facedet.cli import draw_predictions as tool


def test_predictions_are_drawn_where_they_are_and_low_scores_are_not(tmp_path, capsys):
    data = [f"data.root={tmp_path / 'syn'}", "data.num_train=2", "data.num_val=2", "data.img_size=128"]
    preds = [
        {"image_id": 1, "category_id": 1, "bbox": [10.0, 12.0, 40.0, 30.0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [60.0, 70.0, 30.0, 30.0], "score": 0.1},  # below --score
    ]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    out = tmp_path / "grid.png"
    rc = tool.main([*data, "--predictions", str(tmp_path / "p.json"), "--out", str(out), "--ids", "1",
                    "--boxes-only", "--score", "0.3"])
    assert rc == 0 and "1 predictions with score >= 0.3" in capsys.readouterr().out
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    green = (img[..., 1] == 255) & (img[..., 0] == 0) & (img[..., 2] == 0)
    assert green[12:43, 10].all() and green[12, 10:51].all()  # the left and top edges of the kept box
    assert not green[70:101, 60].any()  # the low-scoring one is not drawn
    # boxes only: a grey canvas, no photo: apart from white (labels, padding) and green (predictions)
    # nearly every pixel is the canvas grey (a few are anti-aliased outline edges)
    rest = ~((img == 255).all(-1) | green)
    assert (img[rest] == tool.CANVAS).all(-1).mean() > 0.95


def test_an_id_outside_the_val_split_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "p.json").write_text("[]")
    data = [f"data.root={tmp_path / 'syn'}", "data.num_train=2", "data.num_val=2", "data.img_size=128"]
    with pytest.raises(SystemExit) as e:
        tool.main([*data, "--predictions", str(tmp_path / "p.json"), "--out", str(tmp_path / "x.png"), "--ids", "3"])
    assert e.value.code == 2 and "--ids [3]: the val split has images 1..2" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
