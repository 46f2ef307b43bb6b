"""bench/peers: the shared adapter half writes the protocol's OUT.json, and every peer adapter loads without
its detector package (the package is imported only when a run starts, in the peer's own environment).

None of these tests needs a peer environment (bench/peers/setup_envs.sh); they run in facedet's venv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / "peers"
ADAPTERS = ["retinaface_mnet025", "yunet", "blazeface", "centerface"]

sys.path.insert(0, str(PEERS))
import peer_adapter  # noqa: E402  (a sibling module of the adapter scripts, not a package)


def _images(tmp_path: Path) -> Path:
    paths = []
    for i, (h, w) in enumerate([(40, 60), (50, 30)]):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.full((h, w, 3), 100 + i, np.uint8))
        paths.append(str(p))
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(paths) + "\n\n")
    return lst


def _args(tmp_path: Path, *extra: str):
    return peer_adapter.parse_args(
        "t", ["--images", str(_images(tmp_path)), "--size", "32", "--threads", "1", "--out",
              str(tmp_path / "out.json"), "--warmup", "1", "--latency-repeats", "3", *extra])


def test_run_writes_protocol_json_in_original_pixels_sorted_by_score(tmp_path: Path) -> None:
    seen = []

    def detect(img: np.ndarray) -> peer_adapter.Detections:
        seen.append(img.shape)
        h, w = img.shape[:2]
        boxes = np.array([[0, 0, w / 2, h / 2], [1, 2, w, h]], np.float32)
        pts = np.arange(20, dtype=np.float32).reshape(2, 5, 2)
        return peer_adapter.Detections(boxes, np.array([0.2, 0.9], np.float32), pts)

    info = peer_adapter.AdapterInfo("fake", "longer side 32", "none", ["numpy", "no-such-dist"], {"score_thresh": 0.1})
    out = peer_adapter.run(_args(tmp_path), info, detect)
    assert json.loads((tmp_path / "out.json").read_text()) == out
    assert len(seen) == 1 + 3 + 2  # warmup, latency repeats (first image), then one pass over the list
    assert seen[:4] == [(40, 60, 3)] * 4
    assert out["images"] == 2 and len(out["latency_ms"]) == 3 and out["seconds_total"] > 0
    assert out["threads"] == 1 and out["score_thresh"] == 0.1
    assert out["versions"]["numpy"] == np.__version__ and out["versions"]["no-such-dist"] == "not installed"
    second = sorted(out["detections"])[1]
    # Highest score first, boxes as the detector gave them (original pixels), points reordered alike.
    assert out["detections"][second] == [[1.0, 2.0, 30.0, 50.0, pytest.approx(0.9)], [0.0, 0.0, 15.0, 25.0,
                                                                                      pytest.approx(0.2)]]
    assert out["points"][second][0][0] == [10.0, 11.0]


def test_no_points_key_when_the_detector_has_none(tmp_path: Path) -> None:
    info = peer_adapter.AdapterInfo("fake", "x", "none", [])
    empty = peer_adapter.Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    out = peer_adapter.run(_args(tmp_path), info, lambda img: empty)
    assert "points" not in out and all(v == [] for v in out["detections"].values())


def test_missing_image_is_named_with_its_line(tmp_path: Path) -> None:
    lst = _images(tmp_path)
    lst.write_text(lst.read_text() + str(tmp_path / "gone.jpg") + "\n")
    with pytest.raises(SystemExit, match=r"list\.txt:4: no such image .*gone\.jpg"):
        peer_adapter.read_list(lst)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _args(tmp_path, "--model", str(tmp_path / "missing.onnx"))
    with pytest.raises(SystemExit):
        peer_adapter.parse_args("t", ["--images", "x", "--size", "0", "--threads", "1", "--out", "o"])


def test_resize_longer_keeps_aspect() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    small, scale = peer_adapter.resize_longer(img, 320)
    assert small.shape == (240, 320, 3) and scale == pytest.approx(0.8)


@pytest.fixture(scope="module")
def loaded_adapters() -> dict:
    """One subprocess (facedet's venv, no peer package there) imports every adapter and runs its `--help`."""
    code = f"""
import contextlib, io, json, sys
sys.path.insert(0, {str(PEERS)!r})
res = {{}}
for name in {ADAPTERS!r}:
    mod = __import__(name)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            mod.main(["--help"])
            code = None
        except SystemExit as e:
            code = e.code
    res[name] = [code, buf.getvalue()]
res["heavy"] = sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "torchvision", "facedet"}})
print(json.dumps(res))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_loads_without_its_package_or_facedet(loaded_adapters: dict, name: str) -> None:
    """`--help` works without the detector's package, and loading the adapters imports no torch/facedet."""
    code, usage = loaded_adapters[name]
    assert code == 0
    assert "--images" in usage and "--latency-repeats" in usage and "--score-thresh" in usage
    assert loaded_adapters["heavy"] == []
