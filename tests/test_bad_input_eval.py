"""Bad input around evaluation (issue 12): a checkpoint whose data moved (the suggested data.root=
works), NaN/inf in another detector's results, a val set without faces (no -1 "best", null in
json), predictions.json with the val json's own image ids, an unwritable output folder."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from facedet.cli.evaluate import reroot, run
from facedet.config_check import validate_train_config
from facedet.evaluation.base import to_json
from facedet.evaluation.coco import COCOEvaluator
from facedet.evaluation.results import read_wider_results
from facedet.registry import ConfigError

from .conftest import ROOT, GroundTruth, compose_config

VAL_IDS = (101, 205, 307, 412)
TINY = ["data=facemask", "data.img_size=64", "data.cache_images=false", "train.epochs=1", "train.batch_size=4",
        "train.num_workers=0", "train.tensorboard=false", "train.vis_images=0", "model.backbone.width=0.125",
        "model.postprocess.max_det=30", "seed=0"]


def make_coco_set(root: Path, *, val_faces: bool = True) -> Path:
    """The facemask layout (``{train,val}/coco.json``, ``images/``) with 4 noisy images per split,
    one bright square face each; val image ids are ``VAL_IDS`` (not 1, 2, ...)."""
    rng = np.random.default_rng(0)
    for split, ids in (("train", (1, 2, 3, 4)), ("val", VAL_IDS)):
        (root / split / "images").mkdir(parents=True)
        images, anns = [], []
        for k, i in enumerate(ids):
            img = rng.integers(0, 120, (96, 128, 3), np.uint8)
            x = 10 + 20 * k
            img[20:60, x:x + 40] = 230
            Image.fromarray(img).save(root / split / "images" / f"{split}_{k}.jpg")
            images.append({"id": i, "file_name": f"{split}_{k}.jpg", "height": 96, "width": 128})
            if val_faces or split == "train":
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x, 20, 40, 40],
                             "area": 1600, "iscrowd": 0})
        (root / split / "coco.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                            "categories": [{"id": 1, "name": "face"}]}))
    return root


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    """(data root, run dir, result) of a one-step training on the COCO set above."""
    from facedet.engine.run import run_training

    base = tmp_path_factory.mktemp("coco_run")
    root = make_coco_set(base / "faces")
    cfg = compose_config([*TINY, f"data.root={root}"])
    validate_train_config(cfg)
    result = run_training(cfg, base / "run", progress=False)
    return root, base / "run", result


def cli(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity (Python's own accepts them; other tools do not)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} written"))


def test_predictions_carry_the_val_jsons_image_ids_and_pycocotools_reads_them(coco_run):
    root, run_dir, result = coco_run
    preds = strict_json((run_dir / "predictions.json").read_text())
    assert preds and {p["image_id"] for p in preds} <= set(VAL_IDS)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "val" / "coco.json"))
        ev = COCOeval(gt, gt.loadRes(str(run_dir / "predictions.json")), iouType="bbox")
        ev.params.maxDets = [10, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[1] == pytest.approx(result["best"]["AP50"], abs=1e-9)  # the number training reported


def test_own_predictions_score_the_same_when_read_back_as_results(coco_run, tmp_path):
    root, run_dir, result = coco_run
    cfg = compose_config([f"results={run_dir / 'predictions.json'}", "data=facemask", f"data.root={root}",
                          "num_workers=0"], name="eval")
    assert run(cfg, tmp_path)["AP50"] == pytest.approx(result["best"]["AP50"], abs=1e-9)


def test_the_suggested_data_root_override_works_when_the_data_moved(coco_run, tmp_path):
    root, run_dir, result = coco_run
    moved = root.with_name("moved")
    root.rename(moved)
    try:
        args = [f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}", "num_workers=0", "device=cpu"]
        out = cli("eval.py", *args, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
        assert out.returncode == 2 and "data.root=" in out.stderr and "Traceback" not in out.stderr, out.stderr
        for i, override in enumerate((f"data.root={moved}", f"+data.root={moved}")):
            out = cli("eval.py", *args, override, f"hydra.run.dir={tmp_path / str(i)}", cwd=tmp_path)
            assert out.returncode == 0, out.stderr
            m = strict_json((tmp_path / str(i) / "metrics.json").read_text())
            assert m["AP50"] == pytest.approx(result["best"]["AP50"], abs=1e-9)
    finally:
        moved.rename(root)


def test_reroot_moves_only_paths_under_the_old_root():
    data = compose_config(["data=facemask", "data.root=/old/faces"]).data
    moved = reroot(data, "/new")
    assert moved.root == "/new" and moved.val.ann_file == "/new/val/coco.json" and moved.name == "facemask"
    with pytest.raises(ConfigError, match="has no root to move; name its data config too: data=<name>"):
        reroot(compose_config(["data=facemask"]).data.val, "/new")


@pytest.mark.parametrize("entry, what", [
    ({"image_id": 101, "bbox": [1, 2, float("nan"), 4], "score": 0.5}, "nan"),
    ({"image_id": 101, "bbox": [1, 2, 3, 4], "score": float("inf")}, "inf"),
])
def test_nan_or_inf_in_results_is_rejected_naming_the_entry(coco_run, tmp_path, entry, what):
    root = coco_run[0]
    path = tmp_path / "peer.json"
    path.write_text(json.dumps([{"image_id": 205, "bbox": [1, 2, 3, 4], "score": 0.9}, entry]))  # NaN, Infinity
    assert ("NaN" if what == "nan" else "Infinity") in path.read_text()
    cfg = compose_config([f"results={path}", "data=facemask", f"data.root={root}", "num_workers=0"], name="eval")
    with pytest.raises(ConfigError, match=r"peer.json entry 1: .*must be finite numbers"):
        run(cfg, tmp_path)


def test_nan_in_a_wider_submission_txt_is_rejected_naming_the_line(tmp_path):
    (tmp_path / "0--Parade").mkdir()
    (tmp_path / "0--Parade" / "a.txt").write_text("a\n2\n1 2 3 4 0.9\n1 2 nan 4 0.5\n")
    rec = GroundTruth("0--Parade/a.jpg", (50, 50), np.zeros((0, 4), np.float32), np.zeros(0, bool))
    with pytest.raises(ValueError, match=r"a.txt:4: x y w h score must be finite"):
        read_wider_results(tmp_path, [rec])


def test_no_val_faces_warns_never_reports_minus_one_and_writes_null(tmp_path):
    root = make_coco_set(tmp_path / "faces", val_faces=False)
    out = cli("train.py", *TINY, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "nothing to evaluate: the 4 val images have no faces that count" in log
    assert "AP50 could not be measured" in out.stderr and "best AP50 =" not in out.stdout
    assert "-1.0000" not in log + out.stdout + out.stderr
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()  # no epoch is best
    # tools/eval.py on the same set: metrics.json is strict JSON with null for what cannot be measured
    cfg = compose_config([f"checkpoint={tmp_path / 'run' / 'checkpoints' / 'last.pt'}", "num_workers=0",
                          "device=cpu"], name="eval")
    m = run(cfg, tmp_path / "eval")
    assert np.isnan(m["AP50"])
    written = strict_json((tmp_path / "eval" / "metrics.json").read_text())
    assert written["AP50"] is None and written["AP50_tiny"] is None and written["faces_medium"] == 0


def test_metrics_pycocotools_cannot_measure_are_nan_not_minus_one(caplog):
    big = GroundTruth("a.jpg", (300, 300), np.array([[10, 10, 210, 210]], np.float32), np.array([False]))
    ev = COCOEvaluator([big])
    ev.update([{"boxes": torch.tensor([[10.0, 10, 210, 210]]), "scores": torch.tensor([0.9])}], ["a.jpg"])
    m = ev.compute()
    assert m["AP50"] == pytest.approx(1.0) and m["AP_large"] == pytest.approx(1.0)
    assert np.isnan(m["AP_small"]) and np.isnan(m["AP_medium"]) and np.isnan(m["AP50_tiny"])
    empty = COCOEvaluator([GroundTruth("b.jpg", (50, 50), np.zeros((0, 4), np.float32), np.zeros(0, bool))])
    with caplog.at_level(logging.WARNING, logger="facedet"):
        m = empty.compute()
    assert all(np.isnan(m[k]) for k in empty.metric_names) and "nothing to evaluate" in caplog.text


def test_to_json_writes_null_for_every_non_finite_number():
    text = to_json({"a": float("nan"), "b": [1.0, float("inf"), np.float32("nan")], "c": (np.int64(3), "x")})
    assert strict_json(text) == {"a": None, "b": [1.0, None, None], "c": [3, "x"]}


def test_an_unwritable_eval_output_folder_is_one_line(tmp_path):
    out = cli("eval.py", "checkpoint=x.pt", "hydra.run.dir=/proc/x", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "/proc/x (hydra.run.dir)" in out.stderr
