"""OpenVINO IR of an exported ONNX model: fp32 (``ov.convert_model`` + ``ov.save_model`` without
fp16 compression) and int8 by NNCF post-training quantization on the same calibration images as
ONNX Runtime's. The ONNX ``metadata_props`` go into ``rt_info["facedet"][key]`` (as strings, the
same values), which the runtime reads back from the IR's .xml.

OpenVINO and NNCF are optional (the ``deploy`` extra) and imported here only.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from facedet.registry import ConfigError

log = logging.getLogger(__name__)

RT_INFO_KEY = "facedet"


def _openvino():
    try:
        import openvino as ov
    except ImportError as e:
        raise ConfigError(f"openvino=true needs OpenVINO (the [deploy] extra: pip install -e '.[deploy]'), "
                          f"or set openvino=false ({e})") from e
    return ov


def set_facedet_rt_info(model, meta: Mapping[str, str]) -> None:
    """Write ``meta`` into ``model.rt_info["facedet"]`` (values as strings)."""
    for k, v in meta.items():
        model.set_rt_info(str(v), [RT_INFO_KEY, k])


def facedet_rt_info(model) -> dict[str, str]:
    """The ``rt_info["facedet"]`` entries of an OpenVINO model as a dict of strings."""
    if not model.has_rt_info([RT_INFO_KEY]):
        return {}
    return {k: v.astype(str) for k, v in model.get_rt_info()[RT_INFO_KEY].items()}


def convert_to_openvino(onnx_path: str | Path, xml_path: str | Path, meta: Mapping[str, str]):
    """Convert ``onnx_path`` to an fp32 OpenVINO IR (``xml_path`` + .bin) carrying ``meta``;
    returns the in-memory ``ov.Model`` (before saving, for NNCF)."""
    ov = _openvino()
    model = ov.convert_model(str(onnx_path))
    set_facedet_rt_info(model, {**meta, "precision": "fp32"})
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    log.info("OpenVINO fp32 IR: %s", Path(xml_path).name)
    return model


def quantize_openvino_int8(onnx_path: str | Path, xml_path: str | Path, batches: Sequence[np.ndarray],
                           meta: Mapping[str, str], *, preset: str = "mixed", ignored: Sequence[str] = ()) -> Path:
    """NNCF post-training int8 quantization of ``onnx_path`` (converted to OpenVINO) calibrated on
    ``batches``; saved as IR at ``xml_path`` with ``meta`` and ``precision`` = ``int8-nncf``.
    ``preset`` ``mixed``: asymmetric activations (most of this detector's activations are leaky or
    sigmoid outputs, far from symmetric about 0), symmetric weights; ``performance``: both symmetric.
    ``ignored``: ONNX node names kept in float (NNCF's ignored scope; the OpenVINO frontend keeps most
    ONNX node names as friendly names, and the few it renames are skipped rather than an error)."""
    ov = _openvino()
    try:
        import nncf
    except ImportError as e:
        raise ConfigError(f"int8=openvino needs NNCF (the [deploy] extra: pip install -e '.[deploy]') ({e})") from e
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    if preset not in presets:
        raise ConfigError(f"openvino_preset must be one of {', '.join(presets)}, got {preset!r}")
    model = ov.convert_model(str(onnx_path))
    dataset = nncf.Dataset(list(batches))
    with contextlib.redirect_stdout(io.StringIO()) as bars:  # NNCF's progress bars (rich, on stdout)
        quantized = nncf.quantize(model, dataset, preset=presets[preset], subset_size=len(batches),
                                  ignored_scope=nncf.IgnoredScope(names=list(ignored), validate=False))
    log.debug("NNCF: %s", bars.getvalue().strip())
    set_facedet_rt_info(quantized, {**meta, "precision": "int8-nncf",
                                    "calibration": json.dumps({"method": f"nncf-{preset}", "images": len(batches),
                                                                    "ignored_nodes": len(ignored)})})
    ov.save_model(quantized, str(xml_path), compress_to_fp16=False)
    log.info("OpenVINO int8 IR (NNCF, %s preset, %d images): %s", preset, len(batches), Path(xml_path).name)
    return Path(xml_path)
