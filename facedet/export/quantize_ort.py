"""int8 static quantization of an exported ONNX model with ONNX Runtime: QDQ format, per-channel
weight scales, activation ranges calibrated on letterboxed training images.

QDQ (QuantizeLinear/DequantizeLinear pairs around each quantized op) is the format ORT's CPU
provider fuses into int8 kernels and other runtimes (OpenVINO, TensorRT) read too. Per-channel
weights matter for detectors: one scale per output channel keeps the small-range channels of
folded convolutions from rounding to zero.

``exclude`` keeps parts in float:

- ``decode``: every node outside the network that computes the head's prediction convs (sigmoid,
  grid offsets and the grids themselves, anchor scaling, concatenation). These carry box coordinates
  in input pixels: an int8 tensor over [0, 320] has steps of more than a pixel, which moves every
  box, while their cost is a few elementwise ops on small tensors.
- ``head``: the prediction convs themselves as well (their outputs are logits whose range spans
  both confident faces and background).
- ``none``: quantize everything ORT can.

``activations`` is the activation type: ``uint8`` (U8S8, the default) or ``int8`` (S8S8). Profiled on
the facemask nano model on an AVX-512 VNNI CPU (ORT 1.x, batch 1, 320 px), ORT's CPU provider fused all
82 QDQ convolutions into QLinearConv with uint8 activations, but only 52 with int8 ones: the other 30
ran as float convs between DequantizeLinear/QuantizeLinear pairs, which made S8S8 slower than fp32.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facedet.export.slim import metadata_of, save_atomic, set_metadata
from facedet.registry import ConfigError

log = logging.getLogger(__name__)

METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}  # CalibrationMethod's names
CALIBRATION_METHODS = tuple(METHODS)
EXCLUDE = ("none", "decode", "head")
ACTIVATIONS = ("uint8", "int8")
PREDICTION_WEIGHTS = "head.preds."  # the head's last convs' parameters, by their module path


def prediction_convs(proto) -> list[str]:
    """Names of the Conv nodes whose weight is a head prediction conv's (``head.preds.<i>.weight``)."""
    return [n.name for n in proto.graph.node
            if n.op_type == "Conv" and len(n.input) > 1 and PREDICTION_WEIGHTS in n.input[1]]


def upstream_nodes(proto, targets: Sequence[str]) -> set[str]:
    """Names of the nodes in ``targets`` and of every node they read from, directly or through
    others: the network that computes them. The graph is topologically sorted, as ONNX requires."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    wanted = set(targets)
    needed: set[str] = set()
    for node in reversed(proto.graph.node):
        if node.name in wanted or any(out in needed for out in node.output):
            needed.update(i for i in node.input if i in producer)
            wanted.add(node.name)
    return wanted


def nodes_to_exclude(proto, exclude: str) -> list[str]:
    """The node names kept in float for ``exclude`` (see the module docstring). ``decode`` keeps every
    node that no prediction conv depends on: the decoding after the head *and* the anchor grids it
    adds, which are computed from the input's shape. Calibrated at one size, a quantized grid would
    clip every box to that size when the model runs larger (at 640, boxes stopped at about 330 px)."""
    if exclude not in EXCLUDE:
        raise ConfigError(f"int8 exclude must be one of {', '.join(EXCLUDE)}, got {exclude!r}")
    if exclude == "none":
        return []
    preds = prediction_convs(proto)
    if not preds:
        raise RuntimeError(f"no Conv node reads a '{PREDICTION_WEIGHTS}*' weight: cannot find the head to exclude")
    network = upstream_nodes(proto, preds)
    kept = [n.name for n in proto.graph.node if n.name not in network]
    return kept + (preds if exclude == "head" else [])


def quantize_onnx_int8(src: str | Path, dst: str | Path, batches: Sequence[np.ndarray], *, method: str = "minmax",
                       exclude: str = "decode", per_channel: bool = True, preprocess: bool = True,
                       activations: str = "uint8") -> Path:
    """Quantize the fp32 ONNX file ``src`` into ``dst`` (QDQ, int8 weights, 8-bit activations of type
    ``activations``: see the module docstring), calibrating on ``batches`` (float32 ``(1, 3, S, S)``
    letterboxed images) with ``method``; ``src``'s metadata is carried over with ``precision`` =
    ``int8-qdq`` and ``calibration``.
    ``preprocess`` runs ORT's ``quant_pre_process`` first (shape inference and ORT's graph
    optimizations, which the quantizer's op matching relies on)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from facedet.export.calibration import OrtCalibrationReader

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"int8 calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if activations not in ACTIVATIONS:
        raise ConfigError(f"int8 activations must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    src, dst = Path(src), Path(dst)
    meta = metadata_of(onnx.load(str(src), load_external_data=False))
    with tempfile.TemporaryDirectory(prefix="facedet-int8-") as tmp:
        model_in = src
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            try:  # symbolic shape inference cannot always follow dynamic shapes; ONNX's own still runs
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
                model_in = pre
            except Exception as e:  # noqa: BLE001 - a pre-processing failure only costs speed, not correctness
                log.warning("quant_pre_process failed (%s); quantizing the model as exported", e)
        proto = onnx.load(str(model_in))
        excluded = nodes_to_exclude(proto, exclude)
        out = Path(tmp) / "int8.onnx"
        quantize_static(str(model_in), str(out), OrtCalibrationReader(batches), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=CalibrationMethod[METHODS[method]],
                        # MinMax folds ranges every 16 images instead of holding every activation of all of them
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "CalibMaxIntermediateOutputs": 16})
        quantized = onnx.load(str(out))
    calibration = {"method": method, "images": len(batches), "exclude": exclude, "per_channel": per_channel,
                   "activations": activations}
    meta |= {"precision": "int8-qdq", "calibration": json.dumps(calibration)}
    set_metadata(quantized, meta)
    save_atomic(quantized, dst)
    qdq = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    log.info("int8 (ORT QDQ, %s calibration on %d images, %d nodes kept in float): %s, %d QuantizeLinear",
             method, len(batches), len(excluded), dst.name, qdq)
    return dst
