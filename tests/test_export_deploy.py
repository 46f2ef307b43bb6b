"""Deployment exports: BatchNorm folding, onnxslim, quiet export, int8 (ONNX Runtime QDQ, OpenVINO NNCF)
and the OpenVINO IR, on the one-step test model.

One facedet-export run (module fixture: folded, slimmed, int8 for each installed backend, OpenVINO
fp32) is shared by the tests; it costs one ONNX export (half a minute on 2 idle cores) plus a few
seconds of calibration on 8 images. Tests needing onnxslim, OpenVINO or NNCF skip without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facedet.cli.export import export, summary_lines
from facedet.export.calibration import evenly_spaced, letterboxed
from facedet.export.fold import fold_batchnorm
from facedet.export.onnx import verification_images
from facedet.export.quiet import LIBRARY_LOGGERS, ROOT_LOGGING_PACKAGES
from facedet.inference import load_detector
from facedet.models.layers import ConvBNAct
from facedet.registry import ConfigError

from .checkpoint_utils import tiny_run
from .conftest import compose_config


def has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


EXPORT = has("onnx", "onnxscript", "onnxruntime")
SLIM, OPENVINO = has("onnxslim"), has("openvino", "nncf")
needs_export = pytest.mark.skipif(not EXPORT, reason="the [export] extra is not installed")
needs_openvino = pytest.mark.skipif(not (EXPORT and OPENVINO), reason="openvino / nncf are not installed")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_run(tmp_path_factory) / "checkpoints" / "best.pt"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def deployed(ckpt, tmp_path_factory):
    """facedet-export with ONNX Runtime int8, root logging at INFO as under Hydra: (report, folder,
    the log records that reached a handler, stdout)."""
    return _deploy(ckpt, tmp_path_factory, openvino=False)


@pytest.fixture(scope="module")
def deployed_openvino(ckpt, tmp_path_factory):
    """The same with the OpenVINO IRs (fp32 and NNCF int8) too. Slow tests only: OpenVINO/NNCF loaded
    in the test process beside torch crashed it (SIGSEGV) several tests later in the full suite."""
    return _deploy(ckpt, tmp_path_factory, openvino=True)


def _deploy(ckpt, tmp_path_factory, *, openvino: bool):
    if not EXPORT:
        pytest.skip("the [export] extra is not installed")
    out = tmp_path_factory.mktemp("deploy")
    overrides = [f"checkpoint={ckpt}", f"out={out / 'm.onnx'}", f"slim={str(SLIM).lower()}",
                 f"int8={'both' if openvino else 'ort'}", f"openvino={str(openvino).lower()}",
                 "calib.images=8", "calib.verify_images=4"]
    root, handler = logging.getLogger(), _Records()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as stdout:
            report = export(compose_config(overrides, name="export"), out)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return report, out, handler.records, stdout.getvalue()


def _file(report, precision):
    return next(f for f in report["files"] if f["precision"] == precision)


# --- folding


def test_folding_keeps_outputs_within_1e4_and_removes_every_batchnorm(ckpt):
    model = load_detector(ckpt)[0]
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded, n = fold_batchnorm(model)
    assert n == bns > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == bns  # the original is untouched
    x = verification_images([(2, 64, 96)])[0]
    with torch.no_grad():
        ref, got = model.candidates(x)[:2], folded.candidates(x)[:2]
    d_box, d_score = (float((r - g).abs().max()) for r, g in zip(ref, got, strict=True))
    print(f"folded vs unfolded: max |d box| {d_box:.3g} px, max |d score| {d_score:.3g}")
    assert d_box <= 1e-4 and d_score <= 1e-4


def test_folding_finds_the_conv_bn_pairs_of_sequentials():
    # torchvision's Conv2dNormActivation (MobileNet backbones) is a Sequential(conv, bn, act)
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))
    for bn in (seq[1], seq[4]):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    seq.eval()
    folded, n = fold_batchnorm(seq)
    x = torch.rand(2, 3, 16, 16)
    assert n == 2 and torch.allclose(folded(x), seq(x), atol=1e-5)


@needs_export
def test_folded_graph_has_no_batchnormalization_node(deployed, tmp_path):
    import onnx

    block = nn.Sequential(ConvBNAct(3, 8, 3, act="leaky"), ConvBNAct(8, 8, 1, act="leaky")).eval()
    x = torch.rand(1, 3, 32, 32)

    def bn_nodes(module, name):  # the exporter's own optimizer folds BN too: off, to see ours alone
        torch.onnx.export(module, (x,), str(tmp_path / name), dynamo=True, verbose=False, optimize=False)
        return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(tmp_path / name)).graph.node)

    assert bn_nodes(block, "plain.onnx") > 0 and bn_nodes(fold_batchnorm(block)[0], "folded.onnx") == 0
    report = deployed[0]
    assert not any(n.op_type == "BatchNormalization" for n in onnx.load(report["onnx"]).graph.node)
    assert report["parity_ok"]  # the folded export checked against the unfolded PyTorch model


# --- slim


@pytest.mark.skipif(not (EXPORT and SLIM), reason="onnxslim is not installed")
def test_slim_keeps_the_metadata(deployed, tmp_path):
    import onnx

    from facedet.export.slim import metadata_of, save_atomic, slim_onnx

    proto = onnx.load(deployed[0]["onnx"])
    entry = proto.metadata_props.add()
    entry.key, entry.value = "postprocess", json.dumps({"type": "diou_nms", "score_thresh": 0.3})
    src = save_atomic(proto, tmp_path / "a.onnx")
    out = slim_onnx(src, tmp_path / "b.onnx")
    assert metadata_of(onnx.load(str(out))) == metadata_of(proto) and "producer" in metadata_of(proto)


# --- quiet export


def _is_library(record: logging.LogRecord) -> bool:
    return any(record.name == n or record.name.startswith(n + ".") for n in LIBRARY_LOGGERS) or (
        record.name == "root" and any(f"/{p}/" in record.pathname for p in ROOT_LOGGING_PACKAGES))


@needs_export
def test_export_logs_no_library_internals_at_info(deployed):
    report, _, records, stdout = deployed
    loud = [f"{r.name}: {r.getMessage()}" for r in records if _is_library(r) and r.levelno <= logging.INFO]
    assert not loud, loud[:5]
    text = "\n".join(r.getMessage() for r in records) + stdout
    assert "Replaced initializer" not in text and "Statistics collection" not in text
    ours = [r.getMessage() for r in records if r.name.startswith("facedet.")]
    assert any(m.startswith("exported ") for m in ours)  # our progress lines stay
    assert any(" vs m.onnx: " in m for m in ours)  # and the variants' parity
    lines = summary_lines(report)
    assert lines[0].startswith("facedet: wrote") and "onnxruntime vs PyTorch" in lines[0]
    assert len(lines) == len(report["files"]) and "corr" in lines[1]


# --- int8 with ONNX Runtime


@needs_export
def test_ort_int8_is_qdq_per_channel_with_the_metadata_and_tracks_fp32(deployed):
    import onnx
    from onnx import numpy_helper

    report, out, _, _ = deployed
    entry = _file(report, "int8-qdq")
    assert entry["path"] == str(out / "m.int8.onnx") and entry["bytes"] > 0
    proto = onnx.load(entry["path"])
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in conv_weights]
    assert weight_dq and all(inits[n.input[1]].size > 1 for n in weight_dq)  # a scale per output channel
    meta = {p.key: p.value for p in proto.metadata_props}
    fp32 = {p.key: p.value for p in onnx.load(report["onnx"]).metadata_props}
    assert meta.pop("precision") == "int8-qdq" and json.loads(meta.pop("calibration"))["images"] == 8
    assert meta == fp32
    p = entry["parity"]
    print(p)
    # the one-step model scores ~0.01 everywhere; int8 moves a score by a few percent of its logit
    # range, far less than the spread of scores over positions, so the ranking survives
    # the one-step model's scores hardly vary, so their correlation says nothing: the difference does
    assert p["images"] == 4 and p["max_abs_score"] < 0.05


@needs_export
def test_ort_int8_activations_are_uint8_so_every_conv_runs_as_an_int8_kernel(deployed, tmp_path):
    """With int8 (S8S8) activations ORT left a third of the nano model's convs in float between
    Dequantize/Quantize pairs; uint8 ones are fused into QLinearConv everywhere."""
    import onnx
    import onnxruntime as ort

    report, _, _, _ = deployed
    path = _file(report, "int8-qdq")["path"]
    proto = onnx.load(path)
    activation_q = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    inits = {i.name: i for i in proto.graph.initializer}
    assert {inits[n.input[2]].data_type for n in activation_q} == {onnx.TensorProto.UINT8}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") > 0 and "Conv" not in ops and "FusedConv" not in ops


@needs_export
def test_ort_int8_boxes_follow_fp32_when_run_larger_than_calibrated(deployed):
    """The anchor grids are computed from the input's shape and stay in float: calibrated at S and run
    at 3S, the int8 boxes of the cells beyond S are where fp32 puts them, not clipped at about S (as
    they were when the grid's nodes were quantized with ranges seen at S)."""
    import onnxruntime as ort

    report, _, _, _ = deployed
    files = {"fp32": report["onnx"], "int8": _file(report, "int8-qdq")["path"]}
    sess = {k: ort.InferenceSession(str(v), providers=["CPUExecutionProvider"]) for k, v in files.items()}
    meta_size = int(sess["fp32"].get_modelmeta().custom_metadata_map["img_size"].strip('"'))
    big = 3 * meta_size  # the export (and calibration) size is the training size
    x = np.random.default_rng(0).random((1, 3, big, big), dtype=np.float32)
    boxes = {k: s.run(None, {"images": x})[0][0] for k, s in sess.items()}
    centre = (boxes["fp32"][:, :2] + boxes["fp32"][:, 2:]) / 2
    beyond = (centre > 1.5 * meta_size).any(axis=1)
    assert beyond.sum() > 10
    error = np.abs(boxes["int8"] - boxes["fp32"])[beyond].max(axis=1)
    assert np.median(error) < 0.1 * meta_size


@needs_export
def test_unknown_int8_activation_type_is_a_config_error(tmp_path):
    from facedet.export.quantize_ort import quantize_onnx_int8

    with pytest.raises(ConfigError, match="activations must be one of uint8, int8"):
        quantize_onnx_int8(tmp_path / "m.onnx", tmp_path / "q.onnx", [], activations="fp8")


# --- OpenVINO


@needs_openvino
@pytest.mark.slow
def test_openvino_irs_exist_with_the_metadata_in_rt_info(deployed_openvino):
    import onnx
    import openvino as ov

    from facedet.export.to_openvino import facedet_rt_info

    report, out, _, _ = deployed_openvino
    fp32 = {p.key: p.value for p in onnx.load(report["onnx"]).metadata_props}
    for name, precision in (("m.xml", "fp32"), ("m.int8.xml", "int8-nncf")):
        assert (out / name).exists() and (out / name).with_suffix(".bin").exists()
        info = facedet_rt_info(ov.Core().read_model(str(out / name)))
        assert info.pop("precision") == precision
        calibration = info.pop("calibration", None)
        if precision == "int8-nncf":  # the box decoding is NNCF's ignored scope, as it is ORT's excluded nodes
            assert json.loads(calibration)["ignored_nodes"] > 10
        assert info == fp32
        p = next(f for f in report["files"] if Path(f["path"]).name == name)["parity"]
        assert p["max_abs_score"] < (1e-4 if precision == "fp32" else 0.05)


def test_calibration_images_are_spread_and_letterboxed():
    assert evenly_spaced(10, 4) == [0, 3, 6, 9] and evenly_spaced(3, 300) == [0, 1, 2] and evenly_spaced(0, 5) == []
    img = np.zeros((20, 40, 3), np.uint8)
    x = letterboxed(img, 64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert np.allclose(x[0, :, :16], 128 / 255) and np.allclose(x[0, :, 16:48], 0)  # pad 128 above and below


def test_slim_without_onnxslim_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    from facedet.export.slim import slim_onnx
    from facedet.registry import ConfigError

    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import onnxslim raises ImportError
    with pytest.raises(ConfigError, match=r"slim=true needs onnxslim .*\[deploy\].*slim=false"):
        slim_onnx(tmp_path / "m.onnx")
