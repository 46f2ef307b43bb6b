"""The files an export writes beside the fp32 ONNX model: the int8 ONNX (ORT QDQ), the OpenVINO IRs
(fp32 and NNCF int8), each with its size and its parity against the fp32 ONNX on letterboxed
verification images.

Names follow the fp32 file's: ``model.onnx`` -> ``model.int8.onnx``, ``model.xml`` (+ ``.bin``),
``model.int8.xml`` (+ ``.bin``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facedet.export.parity import compare_models, describe, make_runner
from facedet.export.slim import metadata_of
from facedet.registry import ConfigError

log = logging.getLogger(__name__)

INT8_CHOICES = ("none", "ort", "openvino", "both")


@dataclass(frozen=True)
class VariantOptions:
    """What to write: ``int8`` one of INT8_CHOICES, ``openvino`` the fp32 IR; the ORT calibration
    ``method``, ``exclude`` (facedet.export.quantize_ort; NNCF keeps the same nodes in float),
    ``preprocess``, ``activations``; NNCF's ``preset``; the
    parity thresholds."""

    int8: str = "none"
    openvino: bool = False
    method: str = "minmax"
    exclude: str = "decode"
    preprocess: bool = True
    activations: str = "uint8"
    preset: str = "mixed"
    score_thresh: float = 0.25
    nms_iou: float = 0.5

    def __post_init__(self) -> None:
        if self.int8 not in INT8_CHOICES:
            raise ConfigError(f"int8 must be one of {', '.join(INT8_CHOICES)}, got {self.int8!r}")

    @property
    def needs_calibration(self) -> bool:
        return self.int8 != "none"

    def check_installed(self) -> None:
        """ConfigError naming the missing package and the extra, before the slow export."""
        needed = {"onnxruntime": self.int8 in ("ort", "both"),
                  "openvino": self.openvino or self.int8 in ("openvino", "both"),
                  "nncf": self.int8 in ("openvino", "both")}
        missing = [m for m, need in needed.items() if need and importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"int8={self.int8} openvino={str(self.openvino).lower()} needs "
                              f"{', '.join(missing)} (pip install -e '.[export,deploy]')")


def file_entry(path: Path, precision: str, runtime: str) -> dict[str, Any]:
    """A file of the report: path, bytes (an IR counts its .bin too), precision, runtime."""
    size = path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)
    return {"path": str(path), "bytes": size, "precision": precision, "runtime": runtime}


def write_variants(fp32: str | Path, opts: VariantOptions, *, calibration: Sequence[np.ndarray],
                   verification: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Write the variants ``opts`` asks for next to ``fp32`` (an exported ONNX file without NMS);
    returns one report entry per file written, with ``parity`` against ``fp32`` on ``verification``
    (``(1, 3, S, S)`` float32 letterboxed images) when there are any."""
    import onnx

    fp32 = Path(fp32)
    meta = metadata_of(onnx.load(str(fp32), load_external_data=False))
    if meta.get("nms", "none") not in ("none", '"none"'):
        raise ConfigError("int8 and OpenVINO variants need an export without NMS in the graph (nms_in_graph=false)")
    if opts.needs_calibration and not calibration:
        raise ConfigError("int8 needs calibration images (calib.images > 0)")
    written: list[tuple[Path, str, str]] = []
    stem = fp32.with_suffix("")
    if opts.int8 in ("ort", "both"):
        from facedet.export.quantize_ort import quantize_onnx_int8

        out = quantize_onnx_int8(fp32, stem.with_suffix(".int8.onnx"), calibration, method=opts.method,
                                 exclude=opts.exclude, preprocess=opts.preprocess, activations=opts.activations)
        written.append((out, "int8-qdq", "onnxruntime"))
    if opts.openvino or opts.int8 in ("openvino", "both"):
        from facedet.export.to_openvino import convert_to_openvino, quantize_openvino_int8

        if opts.openvino:
            convert_to_openvino(fp32, stem.with_suffix(".xml"), meta)
            written.append((stem.with_suffix(".xml"), "fp32", "openvino"))
        if opts.int8 in ("openvino", "both"):
            from facedet.export.quantize_ort import nodes_to_exclude

            ignored = nodes_to_exclude(onnx.load(str(fp32), load_external_data=False), opts.exclude)
            out = quantize_openvino_int8(fp32, stem.with_suffix(".int8.xml"), calibration, meta, preset=opts.preset,
                                         ignored=ignored)
            written.append((out, "int8-nncf", "openvino"))
    entries = []
    reference = make_runner(fp32) if verification and written else None
    for path, precision, runtime in written:
        entry = file_entry(path, precision, runtime)
        if reference is not None:
            entry["parity"] = compare_models(reference, make_runner(path), verification,
                                             score_thresh=opts.score_thresh, nms_iou=opts.nms_iou)
            log.info("%s vs %s: %s", path.name, fp32.name, describe(entry["parity"]))
        entries.append(entry)
    return entries

