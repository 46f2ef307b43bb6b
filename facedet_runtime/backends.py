"""Inference backends for an exported model: onnxruntime (the default) and OpenVINO (optional,
imported only when asked for). Each reads the model file's metadata and runs a batch of
letterboxed images (``images``: float32 (B, 3, S, S) RGB in [0, 1]) to its named outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from facedet_runtime.metadata import ModelError

BACKENDS = ("onnxruntime", "openvino")


class BackendUnavailable(ImportError):
    """The backend's package is not installed; the message says how to install it."""


class Backend(Protocol):
    metadata: dict[str, str]
    output_names: list[str]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]: ...


class OnnxRuntimeBackend:
    """An onnxruntime CPU session; ``threads`` sets its intra-op threads (None: onnxruntime's choice)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"backend onnxruntime is not installed: pip install onnxruntime ({e})") from e
        if path.suffix.lower() != ".onnx":
            raise ModelError(f"{path}: the onnxruntime backend reads .onnx files (an OpenVINO .xml needs "
                             "backend openvino)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ModelError(f"{path}: onnxruntime cannot load it: {e}") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: images}), strict=True))


class OpenVINOBackend:
    """An OpenVINO model compiled for the CPU, from an ``.onnx`` file or an IR ``.xml`` (with its ``.bin``)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise BackendUnavailable(f"backend openvino is not installed: pip install openvino ({e})") from e
        if path.suffix.lower() not in (".onnx", ".xml"):
            raise ModelError(f"{path}: the openvino backend reads .onnx or .xml (IR) files")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"{path}: OpenVINO cannot read it: {e}") from None
        self.metadata = _rt_metadata(model)
        self.output_names = [o.get_any_name() for o in model.outputs]
        # f32: on CPUs with bf16 units OpenVINO would otherwise run a float model in bf16, and lose
        # the parity with onnxruntime and PyTorch (an int8 model's quantized layers stay int8)
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        result = self.request.infer({0: images})
        return {name: np.asarray(result[out]) for name, out in zip(self.output_names, self.compiled.outputs,
                                                                       strict=True)}


def _rt_metadata(model: object) -> dict[str, str]:
    """The facedet keys of an OpenVINO model: ``rt_info["facedet"]`` (IR written by facedet), else
    ``rt_info["framework"]`` (an ONNX file's metadata_props as OpenVINO reads them)."""
    info = model.get_rt_info()  # type: ignore[attr-defined]
    for section in ("facedet", "framework"):
        if section in info.keys():
            node = info[section]
            values = node.items() if isinstance(node, dict) else []
            return {str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in values}
    return {}


def open_backend(path: str | Path, backend: str = "onnxruntime", threads: int | None = None) -> Backend:
    """The backend named ``backend`` running the model file at ``path``."""
    path = Path(path).expanduser()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be a positive number, got {threads}")
    return OnnxRuntimeBackend(path, threads) if backend == "onnxruntime" else OpenVINOBackend(path, threads)
