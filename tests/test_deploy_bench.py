"""bench/deploy.py: AP50 from an adapter's OUT.json, the protocol's checks, the facedet adapters.

No timing is asserted: the numbers of a row come from the adapters; here what could be wrong is the
mapping of an adapter's image paths to the ground truth, the AP computation and the validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.deploy import main as deploy_main
from bench.deploy import parse_args, peer_pythons, plan
from bench.deploy_out import ap50, data_config, load_out, timing
from facedet.data.records import Record
from facedet.registry import ConfigError

from .conftest import ROOT


def make_records(tmp_path: Path, n: int = 4) -> list[Record]:
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        xy = rng.uniform(20, 200, size=(3, 2))
        wh = rng.uniform(15, 60, size=(3, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        records.append(Record(image_path=tmp_path / f"img{i}.jpg", image_id=f"img{i}.jpg", boxes=boxes,
                              ignore=np.zeros(3, bool), landmarks=np.full((3, 5, 2), np.nan, np.float32),
                              orig_size=(300, 300), coco_id=i + 1))
    return records


def fake_out(records: list[Record], shift: float = 0.0) -> dict:
    """What an adapter would write for detections equal to the ground truth moved by ``shift`` px."""
    dets = {str(Path(r.image_path).resolve()): [[*(b + shift).tolist(), 0.9 - 0.1 * k] for k, b in enumerate(r.boxes)]
            for r in records}
    return {"name": "fake", "versions": {"fake": "1"}, "input": "letterbox 320x320", "threads": 2,
            "detections": dets, "latency_ms": [3.0, 1.0, 2.0, 10.0], "seconds_total": 2.0, "images": len(records)}


def test_ap50_of_the_ground_truth_is_one_and_shifted_boxes_score_lower(tmp_path):
    records = make_records(tmp_path)
    assert ap50(fake_out(records), records) == pytest.approx(1.0)
    shifted = ap50(fake_out(records, shift=12.0), records)
    assert shifted < 0.9
    # an image the adapter left out counts as one without detections: recall, so AP, drops
    partial = fake_out(records)
    del partial["detections"][str(Path(records[0].image_path).resolve())]
    assert ap50(partial, records) < 0.9


def test_timing_is_median_p90_and_images_per_second(tmp_path):
    t = timing(fake_out(make_records(tmp_path)))
    assert t["median_ms"] == pytest.approx(2.5) and t["images_per_s"] == pytest.approx(2.0)
    assert 3.0 < t["p90_ms"] <= 10.0


def write(tmp_path: Path, out: dict) -> Path:
    p = tmp_path / "OUT.json"
    p.write_text(json.dumps(out))
    return p


@pytest.mark.parametrize("change, message", [
    (lambda o: o.pop("latency_ms"), r"missing key\(s\) latency_ms"),
    (lambda o: o.update(threads="2"), "'threads' must be int"),
    (lambda o: o.update(images=99), "'images' is 99 but the list had 4"),
    (lambda o: o["detections"].update({"/elsewhere/x.jpg": []}), r"detections\['/elsewhere/x.jpg'\]: not an image"),
    (lambda o: next(iter(o["detections"].values())).append([1, 2, 3, 4]), r"\[3\]: expected 5 finite numbers"),
    (lambda o: next(iter(o["detections"].values())).append([1, 2, 3, 4, float("nan")]), "expected 5 finite"),
    (lambda o: o.update(latency_ms=[1.0, "fast"]), "'latency_ms' must be a list of finite numbers"),
])
def test_protocol_errors_name_the_file_and_the_key(tmp_path, change, message):
    records = make_records(tmp_path)
    out = fake_out(records)
    change(out)
    path = write(tmp_path, out)
    with pytest.raises(ConfigError, match=message) as e:
        load_out(path, [str(Path(r.image_path).resolve()) for r in records])
    assert str(path) in str(e.value)


def test_no_or_broken_out_json_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="wrote no OUT.json"):
        load_out(tmp_path / "none.json", [])
    (tmp_path / "bad.json").write_text("{\n  'name': 1}")
    with pytest.raises(ConfigError, match=r"bad.json:2: not valid JSON"):
        load_out(tmp_path / "bad.json", [])


def test_peer_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="expected NAME=/path/to/venv/bin/python"):
        peer_pythons(["yunet"])
    with pytest.raises(ConfigError, match="no adapter bench/peers/nosuch.py"):
        peer_pythons([f"nosuch={sys.executable}"])
    with pytest.raises(ConfigError, match="no Python at"):
        peer_pythons([f"facedet_torch={tmp_path / 'python'}"])
    assert peer_pythons([f"facedet_torch={sys.executable}"]) == {"facedet_torch": sys.executable}


def test_a_row_file_that_does_not_exist_is_refused(tmp_path, capsys):
    assert deploy_main(["--onnx", str(tmp_path / "none.onnx")]) == 2
    assert f"--onnx {tmp_path / 'none.onnx'}: no such file" in capsys.readouterr().err


def test_rows_without_a_file_or_a_peer_python_are_skipped_with_the_reason(tmp_path, monkeypatch):
    import bench.deploy

    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "yunet.py").write_text("")  # the peers' adapters live in bench/peers/ beside facedet's
    monkeypatch.setattr(bench.deploy, "PEERS_DIR", tmp_path)
    rows, skipped = plan(parse_args(["--onnx-int8", str(tmp_path / "m.onnx"), "--peer", f"yunet={sys.executable}"]))
    assert [(r["label"], r["adapter"], r["variant"]) for r in rows] == [
        ("facedet int8 ORT", "facedet_exported", "onnxruntime"), ("yunet", "yunet", None)]
    assert "facedet fp32 eager torch: skipped, no --torch file given" in skipped
    assert "facedet OpenVINO int8: skipped, no --openvino-int8 file given" in skipped
    assert "centerface: skipped, no --peer centerface=PYTHON given" in skipped and len(skipped) == 5 + 3


def test_data_configs_resolve_to_the_val_split_under_the_root(tmp_path):
    d = data_config("facemask", tmp_path)
    assert d["val"]["ann_file"] == f"{tmp_path}/val/coco.json" and d["val"]["img_dir"] == f"{tmp_path}/val/images"
    assert Path(data_config("faces5pt")["root"]).is_absolute()


def test_torch_adapter_writes_the_protocol_for_its_detections(tmp_path_factory, tmp_path):
    """The eager adapter on two synthetic val images: a valid OUT.json whose detections are the
    Predictor's at that size (same image decoding, same letterbox)."""
    from facedet.data.dataset import load_image
    from facedet.inference.predictor import Predictor, load_detector

    from .checkpoint_utils import tiny_run

    run_dir = tiny_run(tmp_path_factory)
    ckpt = run_dir / "checkpoints" / "best.pt"
    images = sorted(str(p.resolve()) for p in (run_dir.parent / "synthetic").rglob("val/**/*.jpg"))[:2]
    assert images, "the tiny run's synthetic val images"
    (tmp_path / "list.txt").write_text("\n".join(images) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "bench" / "peers" / "facedet_torch.py"), "--model", str(ckpt), "--images",
           str(tmp_path / "list.txt"), "--size", "96", "--threads", "1", "--out", str(tmp_path / "OUT.json"),
           "--warmup", "1", "--latency-repeats", "3", "--score-thresh", "0.01"]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=900)
    out = load_out(tmp_path / "OUT.json", images)
    assert len(out["latency_ms"]) == 3 and out["input"] == "letterbox 96x96" and out["threads"] == 1
    model, _, _ = load_detector(ckpt, score_thresh=0.01)
    want = Predictor(model, img_size=96)([load_image(images[0])])[0]
    got = np.asarray(out["detections"][images[0]], np.float32).reshape(-1, 5)
    assert len(got) == len(want["scores"])
    np.testing.assert_allclose(got[:, :4], want["boxes"], atol=1e-3)
    np.testing.assert_allclose(got[:, 4], want["scores"], atol=1e-5)
