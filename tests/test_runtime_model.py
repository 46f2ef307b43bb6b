"""The torch-free runtime on an exported model: ``python -m facedet_runtime`` in a subprocess where
torch (and hydra, omegaconf, facedet) cannot be imported finds the boxes, scores and points that the
PyTorch ``Predictor`` finds on the same images; OpenVINO runs it like onnxruntime; ``tools/detect.py
backend=onnxruntime`` writes what ``backend=torch`` writes; errors name the file.

The model is yolov4_nano (width 0.25) with 5 landmarks, untrained, with its BatchNorm statistics
measured on synthetic faces so that its scores spread (0.001-0.07) and the score threshold can sit in
a gap between them, far from float noise. One export (about 35-80 s on 2 busy cores) serves the file;
a model with NMS in the graph is exported by the slow test.
"""

from __future__ import annotations

import importlib.util
import json

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from facedet.cli.detect import detect
from facedet.cli.export import export
from facedet.data.synthetic import render_synthetic_image
from facedet.inference import Predictor, load_detector
from facedet.models import build_detector
from facedet_runtime import FaceDetector, load_image

from .conftest import compose_config
from .runtime_utils import CLI, ROOT, run_without_torch

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")),
                                reason="the [export] extra is not installed")

SIZE = 64
SHAPES = [(96, 128), (64, 64), (150, 100), (40, 72), (200, 90)]  # (h, w): shrunk, equal, enlarged
# ONNX Runtime and PyTorch differ by float noise, about 1e-5 of a value: up to ~5e-3 px on this
# random model's large boxes (up to 230 px at 64 px input). In the model's input pixels, so an
# image shrunk by the letterbox gets the tolerance times its magnification (assert_same).
BOX_TOL = 1e-2
# The random landmark head's points reach 400 px, and its ONNX graph differs from PyTorch by up to
# 0.18 px on them before any post-processing (4.6e-4 relative; measured on the candidates): the
# runtime can be no closer than the graph it runs. Kept faces' points differed by up to 0.1 px.
POINT_TOL = 0.25
ROUNDING = 0.005  # detections.json rounds boxes and points to 0.01 px


def calibrated_model(cfg):
    """The model of ``cfg`` with seeded random weights and BatchNorm statistics measured on
    synthetic faces (an untrained model's features would fade through the default statistics, and
    every score would be the same)."""
    torch.manual_seed(0)
    model = build_detector(OmegaConf.to_container(cfg.model, resolve=True))
    faces = [cv2.resize(render_synthetic_image(0, "val", k)[0], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
             for k in range(8)]
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batch
    with torch.no_grad():
        model.train()(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255)
    return model.eval()


def gap_threshold(scores: np.ndarray, q: float = 0.9) -> float:
    """A threshold near the ``q``-quantile in the widest gap between neighbouring scores there."""
    s = np.unique(scores)
    lo, hi = int(len(s) * (q - 0.04)), int(len(s) * (q + 0.04))
    i = lo + int(np.argmax(s[lo + 1 : hi + 1] - s[lo:hi]))
    return float((s[i] + s[i + 1]) / 2)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of synthetic face images at several sizes (PNG: read back exactly), and a broken one."""
    folder = tmp_path_factory.mktemp("runtime_images")
    for k, (h, w) in enumerate(SHAPES):
        img = cv2.resize(render_synthetic_image(1, "val", k)[0], (w, h), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"face_{k}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.jpg").write_bytes(b"not an image")
    return folder


@pytest.fixture(scope="module")
def checkpoint(images, tmp_path_factory):
    """A training-checkpoint-like file of the landmark model, its score threshold in a score gap."""
    cfg = compose_config(["model=yolov4_nano", f"data.img_size={SIZE}", "model.head.num_landmarks=5",
                          "model.loss.landmark_loss={type: wing}"])
    model = calibrated_model(cfg)
    predictor = Predictor(model, img_size=SIZE)
    batch = torch.stack([predictor.preprocess(load_image(p))[0] for p in sorted(images.glob("*.png"))])
    with torch.no_grad():
        scores = model.candidates(batch)[1].numpy()
    container = OmegaConf.to_container(cfg, resolve=True)
    container["model"]["postprocess"] |= {"score_thresh": gap_threshold(scores), "max_det": 300}
    path = tmp_path_factory.mktemp("runtime_model") / "best.pt"
    torch.save({"config": container, "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint):
    out = checkpoint.parent
    cfg = compose_config([f"checkpoint={checkpoint}", f"out={out / 'model.onnx'}", "verify=false"], name="export")
    export(cfg, out)
    return out / "model.onnx"


@pytest.fixture(scope="module")
def reference(checkpoint, images):
    """The PyTorch Predictor's detections per image name."""
    model, _, _ = load_detector(checkpoint)
    predictor = Predictor(model, img_size=SIZE)
    return {p.name: predictor([load_image(p)])[0] for p in sorted(images.glob("*.png"))}


def assert_same(got: dict, want: dict, *, scale: float = 1.0, rounded: int = 0) -> None:
    """The same detections: count, boxes within BOX_TOL and points within POINT_TOL input pixels
    (times ``scale``, the letterbox's magnification back to the image: its long side over SIZE), plus
    the rounding of detections.json for each of the ``rounded`` sides read from one; scores within 1e-3."""
    magnification, rounding = max(scale, 1.0), ROUNDING * rounded
    assert len(got["scores"]) == len(want["scores"])
    d_box = np.abs(np.reshape(got["boxes"], (-1, 4)) - np.reshape(want["boxes"], (-1, 4))).max(initial=0)
    assert d_box <= BOX_TOL * magnification + rounding
    assert np.abs(np.asarray(got["scores"]) - want["scores"]).max(initial=0) <= 1e-3
    points = [np.reshape(d["landmarks"], (-1, 5, 2)) for d in (got, want)]
    d_point = np.abs(points[0] - points[1]).max(initial=0)
    assert d_point <= POINT_TOL * magnification + rounding


def scale_of(image: np.ndarray) -> float:
    return max(image.shape[:2]) / SIZE


def from_json(dets: list[dict]) -> dict:
    return {"boxes": [d["box"] for d in dets], "scores": [d["score"] for d in dets],
            "landmarks": [d["landmarks"] for d in dets]}


def test_export_writes_the_runtime_metadata(exported, checkpoint):
    import onnxruntime as ort

    meta = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"]).get_modelmeta()
    meta = meta.custom_metadata_map
    post = torch.load(checkpoint, weights_only=True)["config"]["model"]["postprocess"]
    assert meta["format"] == "facedet/1" and meta["producer"] == "facedet" and json.loads(meta["pad_value"]) == 128
    assert json.loads(meta["postprocess"]) == post and json.loads(meta["img_size"]) == SIZE
    assert json.loads(meta["num_landmarks"]) == 5 and json.loads(meta["strides"]) == [8, 16, 32]


def test_cli_without_torch_finds_the_predictors_faces(exported, images, reference, tmp_path):
    proc = run_without_torch(CLI, str(exported), str(images), "--out", str(tmp_path), "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "5 images" in proc.stdout and "1 skipped" in proc.stdout
    result = json.loads((tmp_path / "detections.json").read_text())
    assert list(result["skipped"]) == ["sub/broken.jpg"]
    assert "cannot decode image" in result["skipped"]["sub/broken.jpg"]
    assert sorted(result["images"]) == sorted(reference) and result["settings"]["postprocess"]["type"] == "diou_nms"
    total = 0
    for name, want in reference.items():
        entry = result["images"][name]
        image = load_image(images / name)
        assert (entry["height"], entry["width"]) == image.shape[:2]
        assert_same(from_json(entry["detections"]), want, scale=scale_of(image), rounded=1)
        total += len(entry["detections"])
    assert total >= 10  # the comparison compared something


def test_bench_adapter_without_torch_writes_the_predictors_faces(exported, checkpoint, images, reference, tmp_path):
    """bench/peers/facedet_exported.py (the deploy bench's runtime rows) on the PNGs, torch blocked:
    OUT.json holds the Predictor's detections and points, best first."""
    pngs = sorted(images.glob("*.png"))
    (tmp_path / "list.txt").write_text("\n".join(str(p) for p in pngs) + "\n")
    thresh = torch.load(checkpoint, weights_only=False)["config"]["model"]["postprocess"]["score_thresh"]
    adapter = ROOT / "bench" / "peers" / "facedet_exported.py"
    code = f"sys.path.insert(0, {str(adapter.parent)!r})\nsys.argv[0] = {str(adapter)!r}\n" + \
        "import runpy\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    proc = run_without_torch(code, "--model", str(exported), "--images", str(tmp_path / "list.txt"), "--size",
                             str(SIZE), "--threads", "1", "--out", str(tmp_path / "OUT.json"), "--warmup", "1",
                             "--latency-repeats", "2", "--score-thresh", str(thresh))
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "OUT.json").read_text())
    assert out["images"] == len(pngs) and len(out["latency_ms"]) == 2 and out["variant"] == "onnxruntime"
    total = 0
    for p in pngs:
        rows = np.asarray(out["detections"][str(p)], np.float64).reshape(-1, 5)
        assert np.all(np.diff(rows[:, 4]) <= 0)
        got = {"boxes": rows[:, :4], "scores": rows[:, 4], "landmarks": out["points"].get(str(p), [])}
        assert_same(got, reference[p.name], scale=scale_of(load_image(p)))
        total += len(rows)
    assert total >= 10


def test_face_detector_matches_the_predictor_in_process(exported, images, reference):
    det = FaceDetector(exported, threads=1)
    assert det.img_size == SIZE and det.num_landmarks == 5
    names = sorted(reference)
    loaded = [load_image(images / n) for n in names]
    for name, image, got in zip(names, loaded, det(loaded), strict=True):
        assert_same(got, reference[name], scale=scale_of(image))
        assert got["boxes"].dtype == got["scores"].dtype == got["landmarks"].dtype == np.float32
    # a threshold override keeps fewer faces, all of them above it
    raised = FaceDetector(exported, score_thresh=0.03)([load_image(images / n) for n in names])
    assert sum(map(len, (r["scores"] for r in raised))) < sum(len(r["scores"]) for r in reference.values())
    assert all((r["scores"] > 0.03).all() for r in raised)


@pytest.mark.slow  # OpenVINO in the test process beside torch crashed the full suite (SIGSEGV) later on
def test_openvino_runs_the_onnx_file_and_an_ir_like_onnxruntime(exported, images, reference, tmp_path):
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    model = core.read_model(str(exported))
    for key, value in FaceDetector(exported).backend.metadata.items():  # as an IR export stores them
        model.set_rt_info(value, ["facedet", key])
    ov.save_model(model, str(tmp_path / "model.xml"), compress_to_fp16=False)  # fp32, as exported
    names = sorted(reference)
    for path in (exported, tmp_path / "model.xml"):
        det = FaceDetector(path, backend="openvino", threads=1)
        assert det.num_landmarks == 5 and det.postprocess == FaceDetector(exported).postprocess
        loaded = [load_image(images / n) for n in names]
        for name, image, got in zip(names, loaded, det(loaded), strict=True):
            assert_same(got, reference[name], scale=scale_of(image))


def test_detect_tool_with_backend_onnxruntime_writes_what_torch_writes(exported, checkpoint, images, tmp_path):
    common = [f"source={images}", "save_media=false", "score_thresh=null", "crops=true"]
    torch_run = detect(compose_config([f"checkpoint={checkpoint}", f"out={tmp_path / 't'}", "device=cpu", *common],
                                      name="detect"), tmp_path)
    ort_run = detect(compose_config(["backend=onnxruntime", f"model_file={exported}", f"out={tmp_path / 'o'}",
                                     "threads=1", *common], name="detect"), tmp_path)
    assert ort_run["settings"]["backend"] == "onnxruntime" and ort_run["settings"]["model"] == str(exported)
    assert ort_run["skipped"].keys() == torch_run["skipped"].keys() == {"sub/broken.jpg"}
    assert ort_run["images"].keys() == torch_run["images"].keys()
    crops = 0
    for name, want in torch_run["images"].items():
        got = ort_run["images"][name]
        scale = max(got["width"], got["height"]) / SIZE
        assert_same(from_json(got["detections"]), {k: np.asarray(v) for k, v in from_json(want["detections"]).items()},
                    scale=scale, rounded=2)  # both sides read from detections.json
        crops += sum("crop" in d for d in got["detections"])
    assert crops > 0 and (tmp_path / "o" / "crops").is_dir()


@pytest.mark.parametrize("overrides, message", [
    (["backend=onnxruntime"], "give model_file="),
    (["backend=onnxruntime", "model_file={missing}"], "model file not found: {missing}"),
    (["backend=onnxruntime", "model_file={foreign}"], "is not a facedet export"),
    (["backend=onnxruntime", "model_file={exported}", "tta=flip"], "tta=flip needs backend=torch"),
    (["model_file={exported}"], "run it with backend=onnxruntime"),
    (["backend=tflite", "model_file={exported}"], "Unknown backend 'tflite'"),
])
def test_detect_tool_errors_name_the_problem(overrides, message, exported, images, tmp_path):
    from facedet.registry import ConfigError

    foreign = tmp_path / "foreign.onnx"
    write_foreign_onnx(foreign)
    paths = {"missing": tmp_path / "nope.onnx", "foreign": foreign, "exported": exported}
    cfg = compose_config([o.format(**paths) for o in overrides] + [f"source={images}", f"out={tmp_path / 'o'}"],
                         name="detect")
    with pytest.raises(ConfigError, match=message.format(**paths).replace("(", r"\(")):
        detect(cfg, tmp_path)


def write_foreign_onnx(path):
    """A valid ONNX model that facedet did not write (no facedet metadata)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["scores"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))


def test_cli_errors_name_the_file_and_the_missing_backend(exported, images, tmp_path):
    broken = images / "sub" / "broken.jpg"
    proc = run_without_torch(CLI, str(exported), str(broken), "--out", str(tmp_path))
    assert proc.returncode == 2 and f"cannot decode image {broken}" in proc.stderr  # a single source: an error
    proc = run_without_torch(CLI, str(tmp_path / "nope.onnx"), str(images))
    assert proc.returncode == 2 and f"model file not found: {tmp_path / 'nope.onnx'}" in proc.stderr
    proc = run_without_torch(CLI, str(exported), str(images), "--backend", "openvino", also_block=("openvino",))
    assert proc.returncode == 2 and "backend openvino is not installed: pip install openvino" in proc.stderr
    proc = run_without_torch(CLI, str(exported), str(tmp_path / "nothing_here"))
    assert proc.returncode == 2 and f"source not found: {tmp_path / 'nothing_here'}" in proc.stderr
    assert not (tmp_path / "detections.json").exists()


class GraphNMSBackend:
    """Stands in for onnxruntime running a model exported with ``nms_in_graph=true``: the exported
    module itself (``ExportWrapper``) in PyTorch, so the runtime's handling of its rows is checked
    without a second export (the slow test below exports one)."""

    def __init__(self, model, score_thresh: float, nms_iou: float, vote: float) -> None:
        from facedet.export.onnx import ExportWrapper

        self.wrapper = ExportWrapper(model, nms_in_graph=True, score_thresh=score_thresh, nms_iou=nms_iou,
                                     landmark_vote_iou=vote).eval()
        self.output_names = ["detections"]
        self.metadata = {"format": "facedet/1", "img_size": str(SIZE), "num_landmarks": "5",
                         "score_thresh": str(score_thresh), "nms_iou": str(nms_iou), "landmark_vote_iou": str(vote)}

    def run(self, images):
        with torch.no_grad():
            return {"detections": self.wrapper(torch.from_numpy(images)).numpy()}


IN_GRAPH = {"nms_iou": 0.5, "landmark_vote_iou": 0.6}


def in_graph_reference(checkpoint, images):
    """Predictor detections with the in-graph NMS's settings (plain NMS, no top-k or max_det)."""
    model, train_cfg, _ = load_detector(checkpoint, nms="nms", max_det=10**6, **IN_GRAPH)
    predictor = Predictor(model, img_size=SIZE)
    names = sorted(p.name for p in images.glob("*.png"))
    return names, [predictor([load_image(images / n)])[0] for n in names], train_cfg.model.postprocess.score_thresh


def test_rows_of_an_in_graph_nms_are_split_per_image(checkpoint, images, monkeypatch):
    import facedet_runtime.detector

    names, want, thresh = in_graph_reference(checkpoint, images)
    model = load_detector(checkpoint)[0]
    backend = GraphNMSBackend(model, thresh, IN_GRAPH["nms_iou"], IN_GRAPH["landmark_vote_iou"])
    monkeypatch.setattr(facedet_runtime.detector, "open_backend", lambda *a: backend)
    det = FaceDetector("graph.onnx", max_det=3)
    assert det.info.nms_in_graph and det.postprocess.type == "nms" and det.postprocess.score_thresh == thresh
    loaded = [load_image(images / n) for n in names]
    got = FaceDetector("graph.onnx")(loaded)  # one batch: the rows of 5 images
    assert sum(len(g["scores"]) for g in got) >= 10
    for image, g, w in zip(loaded, got, want, strict=True):
        assert_same(g, w, scale=scale_of(image))
    for image, c, w in zip(loaded, det(loaded), want, strict=True):
        assert_same(c, {k: v[:3] for k, v in w.items()}, scale=scale_of(image))
    with pytest.raises(ValueError, match="has NMS in its graph: nms_iou cannot be changed"):
        FaceDetector("graph.onnx", nms_iou=0.3)


@pytest.mark.slow
def test_in_graph_nms_export_runs_without_torch_like_the_predictor(checkpoint, images, tmp_path):
    names, want, thresh = in_graph_reference(checkpoint, images)
    cfg = compose_config([f"checkpoint={checkpoint}", f"out={tmp_path / 'nms.onnx'}", "verify=false",
                          "nms_in_graph=true", f"score_thresh={thresh}", f"nms_iou={IN_GRAPH['nms_iou']}",
                          f"landmark_vote_iou={IN_GRAPH['landmark_vote_iou']}"], name="export")
    export(cfg, tmp_path)
    proc = run_without_torch(CLI, str(tmp_path / "nms.onnx"), str(images), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "detections.json").read_text())
    assert result["settings"]["nms_in_graph"] and result["settings"]["postprocess"]["type"] == "nms"
    for name, w in zip(names, want, strict=True):
        assert_same(from_json(result["images"][name]["detections"]), w, scale=scale_of(load_image(images / name)),
                    rounded=1)


def test_video_frames_are_detected_as_the_decoded_frames_are(exported, tmp_path):
    # the video path (reading, BGR -> RGB, batches across frames, the json entries) against the
    # detector on the frames as OpenCV decodes them (mp4v is lossy); the detector itself is compared
    # with PyTorch on the images above
    from facedet_runtime import detect_source

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 72))
    if not writer.isOpened():
        pytest.skip("no mp4v encoder in this OpenCV build")
    for k in range(5):
        frame = cv2.resize(render_synthetic_image(2, "val", k)[0], (96, 72), interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    cap, frames = cv2.VideoCapture(str(path)), []
    while (read := cap.read())[0]:
        frames.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    cap.release()
    det = FaceDetector(exported)
    result = detect_source(det, path, batch_size=2)  # batches of 2, 2, 1 frames
    video = result["videos"]["clip.mp4"]
    assert (video["width"], video["height"], len(video["frames"])) == (96, 72, 5) and not result["images"]
    for dets, frame in zip(video["frames"], frames, strict=True):
        assert_same(from_json(dets), det([frame])[0], rounded=1)
    assert sum(map(len, video["frames"])) > 0
