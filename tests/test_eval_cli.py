"""tools/eval.py end to end: a checkpoint on a WIDER-layout folder with eval=widerface (COCO and
WIDER E/M/H in one go, settings recorded), and another detector's results json or WIDER txt folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from facedet.cli.evaluate import format_metrics, results_argv, run
from facedet.registry import ConfigError

from .checkpoint_utils import tiny_run
from .conftest import CONFIG_DIR, ROOT
from .wider_utils import make_wider_layout


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    root, gt_dir, gts = make_wider_layout(tmp_path_factory.mktemp("wider"), n_images=6)
    return root, gt_dir, gts


def eval_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="eval", overrides=overrides)


def wider_overrides(wider):
    root, gt_dir, _ = wider
    return ["eval=widerface", f"data.root={root}", f"eval.evaluators.widerface.gt_dir={gt_dir}", "num_workers=0",
            "batch_size=4", "device=cpu"]


def test_the_training_run_recorded_its_evaluation(tmp_path_factory):
    run_dir = tiny_run(tmp_path_factory)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["best_metric"] == "coco_ap50" and m["best"]["coco_ap50"] == m["best"]["AP50"]  # an alias works
    assert {"AP50_tiny", "AP50_small", "AP50_medium", "AP50_large"} <= set(m["best"])
    assert m["best"]["settings"]["tta"]["mode"] == "none" and m["best"]["settings"]["img_size"] == 64
    assert (run_dir / "pr_curves" / "epoch_001.png").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()


def test_checkpoint_with_eval_widerface_reports_coco_and_wider_with_the_settings(wider, tmp_path, tmp_path_factory):
    ckpt = tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"
    cfg = eval_cfg([f"checkpoint={ckpt}", *wider_overrides(wider), "img_size=96", "eval.tta=flip",
                    "score_thresh=0.002", "nms=soft_nms"])
    m = run(cfg, tmp_path)
    for key in ("AP50", "AP", "wider_easy", "wider_medium", "wider_hard", "AP50_tiny"):
        assert key in m and (np.isnan(m[key]) or 0.0 <= m[key] <= 1.0)
    assert m["wider_images"] == 6
    s = m["settings"]
    assert s["img_size"] == 96 and s["tta"]["mode"] == "flip" and s["data"] == "widerface"
    assert s["postprocess"]["type"] == "soft_nms" and s["postprocess"]["score_thresh"] == 0.002
    assert s["evaluators"] == ["COCOEvaluator", "LandmarkEvaluator", "WiderFaceEvaluator"] and s["weights"] == "ema"
    assert json.loads((tmp_path / "metrics.json").read_text())["settings"] == s
    assert (tmp_path / "pr_curves.png").is_file() and (tmp_path / "predictions.json").is_file()
    text = format_metrics(m)
    assert "WIDER FACE  Easy" in text and "Hard" in text and "COCO  AP50" in text and "96 px" in text
    assert "TTA flip" in text and "soft_nms score>0.002" in text


def test_another_detectors_results_are_scored_on_the_same_protocol(wider, tmp_path):
    root, gt_dir, gts = wider
    # perfect detections, named the way other tools name images: path, event/name without extension, integer
    results = []
    for k, g in enumerate(gts):
        names = [f"{g.event}/{g.name}.jpg", f"{g.event}/{g.name}", k + 1]
        for j, box in enumerate(g.boxes):
            results.append({"image_id": names[k % 3], "bbox": box.tolist(), "score": 0.9 - 0.01 * j,
                            "category_id": 1})
    path = tmp_path / "peer.json"
    path.write_text(json.dumps(results))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "eval.py"), "--results", str(path),
                          *wider_overrides(wider), f"hydra.run.dir={tmp_path / 'out'}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Easy 1.0000  Medium 1.0000  Hard 1.0000" in out.stdout and "AP50 1.0000" in out.stdout
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["settings"]["results"] == str(path)
    # the same detections as a WIDER submission folder: one txt per image
    folder = tmp_path / "wider_txt"
    for g in gts:
        f = folder / g.event / f"{g.name}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("\n".join([g.name, str(len(g.boxes))] + [" ".join(map(str, [*b, 0.5])) for b in g.boxes]))
    m2 = run(eval_cfg([f"results={folder}", *wider_overrides(wider)]), tmp_path / "out2")
    assert m2["wider_hard"] == 1.0 and m2["AP50"] == pytest.approx(1.0)


def test_results_errors_name_the_problem(wider, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": "0--Parade/nope.jpg", "bbox": [0, 0, 5, 5], "score": 0.5}]))
    with pytest.raises(ConfigError, match=r"bad.json entry 0: image '0--Parade/nope.jpg' is not in"):
        run(eval_cfg([f"results={bad}", *wider_overrides(wider)]), tmp_path)
    bad.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 5], "score": 0.5}]))
    with pytest.raises(ConfigError, match="bbox needs 4 numbers"):
        run(eval_cfg([f"results={bad}", *wider_overrides(wider)]), tmp_path)
    with pytest.raises(ConfigError, match="needs the val set"):
        run(eval_cfg([f"results={bad}"]), tmp_path)
    with pytest.raises(ConfigError, match="Nothing to evaluate"):
        run(eval_cfg([]), tmp_path)


def test_results_flag_becomes_a_hydra_override():
    assert results_argv(["--results", "a.json", "data=x"]) == ["results=a.json", "data=x"]
    assert results_argv(["--results=b.json"]) == ["results=b.json"]


def test_naming_a_data_config_keeps_the_training_size_unless_img_size_is_given(tmp_path, tmp_path_factory):
    # data=<name> brings that config's own img_size (synthetic: 256); the model was trained at 64, and
    # img_size=null promises the training size
    run_dir = tiny_run(tmp_path_factory)
    root = json.loads(json.dumps(__import__("yaml").safe_load((run_dir / "config.yaml").read_text())["data"]["root"]))
    base = [f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}", "data=synthetic", f"data.root={root}",
            "data.num_val=6", "num_workers=0", "batch_size=4", "device=cpu"]
    assert run(eval_cfg(base), tmp_path / "a")["settings"]["img_size"] == 64
    assert run(eval_cfg([*base, "img_size=96"]), tmp_path / "b")["settings"]["img_size"] == 96
