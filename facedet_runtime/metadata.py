"""An exported model's settings, read from its metadata: ONNX ``metadata_props`` (onnxruntime's
``custom_metadata_map``), or in an OpenVINO IR ``rt_info["facedet"][key]`` (OpenVINO reading an
``.onnx`` file puts the ONNX metadata under ``rt_info["framework"]``).

Values are JSON-encoded, except that plain strings are stored as they are (as facedet's
``export_onnx`` writes them). Keys read here (docs/DEPLOY.md lists them all): ``format``
(``facedet/1``), ``producer`` (``facedet``), ``img_size``, ``pad_value``, ``num_landmarks``,
``strides``, ``outputs``, ``postprocess`` (the model config's node, applied to a model exported
without NMS), and for a model with NMS in the graph ``score_thresh``, ``nms_iou``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from facedet_runtime.letterbox import LETTERBOX_PAD
from facedet_runtime.postprocess import PostProcess

FORMAT = "facedet/1"


class ModelError(ValueError):
    """A model file that is missing, unreadable, or not a facedet export; the message names the file."""


def decode(value: str) -> Any:
    """A metadata value: JSON where it parses, else the string itself."""
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an exported model."""

    img_size: int
    num_landmarks: int = 0
    pad_value: int = LETTERBOX_PAD
    nms_in_graph: bool = False
    postprocess: PostProcess = field(default_factory=PostProcess)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, raw: Mapping[str, str], path: str, output_names: list[str]) -> ModelInfo:
        """From the raw key -> string map of the model file at ``path`` whose outputs are
        ``output_names``; ModelError when it is not a facedet export or a key is unusable."""
        meta = {str(k): decode(v) for k, v in raw.items()}
        if meta.get("format") != FORMAT and meta.get("producer") != "facedet":
            raise ModelError(f"{path} is not a facedet export: its metadata has no format={FORMAT!r} or "
                             "producer='facedet' (export it with tools/export.py)")
        if "format" in meta and meta["format"] != FORMAT:
            raise ModelError(f"{path}: metadata format {meta['format']!r} is not {FORMAT!r} (a newer facedet?)")
        try:
            img_size = int(meta["img_size"])
            num_landmarks = int(meta.get("num_landmarks") or 0)
            pad_value = int(meta.get("pad_value", LETTERBOX_PAD))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{path}: metadata img_size / num_landmarks / pad_value unusable ({e!r})") from None
        nms_in_graph = "detections" in output_names
        expected = ["detections"] if nms_in_graph else ["boxes", "scores"] + (["landmarks"] if num_landmarks else [])
        if sorted(output_names) != sorted(expected):
            raise ModelError(f"{path}: outputs {output_names}, expected {expected} for a facedet export")
        node = meta.get("postprocess")
        if node is None:  # an export from before the key: what the graph did, or facedet's defaults
            node = {"type": "nms", "score_thresh": meta.get("score_thresh"), "nms_iou": meta.get("nms_iou")}
            node = {k: v for k, v in node.items() if v is not None} if nms_in_graph else {}
        if not isinstance(node, Mapping):
            raise ModelError(f"{path}: metadata postprocess is not a JSON object: {node!r}")
        if nms_in_graph:  # what the graph applied (plain IoU NMS); the runtime can only raise the threshold
            graph = {k: meta[k] for k in ("score_thresh", "nms_iou", "landmark_vote_iou") if meta.get(k) is not None}
            node = dict(node) | {"type": "nms"} | graph
        try:
            post = PostProcess.from_dict(node, where=f"{path}: metadata postprocess")
        except (TypeError, ValueError) as e:
            raise ModelError(str(e)) from None
        return cls(img_size=img_size, num_landmarks=num_landmarks, pad_value=pad_value, nms_in_graph=nms_in_graph,
                   postprocess=post, metadata=meta)
