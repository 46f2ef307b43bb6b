"""What every evaluator offers, their registry, and building several from an ``eval.evaluators`` node.

An evaluator takes predictions in original image pixels and returns named metrics:

- ``update(predictions, image_ids)``: per-image dicts ``{boxes (K, 4) xyxy, scores (K,)}`` (plus
  ``landmarks (K, 5, 2)`` when the model predicts them) and the matching data-set ``image_id``
  strings;
- ``compute() -> dict`` of metrics (floats, plus counts);
- ``reset()`` empties it for the next evaluation;
- ``metric_names``: the metric keys ``compute`` returns (``train.best_metric`` is checked against
  them before training starts; the landmark evaluator returns none of them when there is nothing
  to measure); optionally ``lower_is_better``: those of them that cannot pick the best epoch;
- optionally ``pr_curves() -> {label: (recall, precision)}`` after ``compute`` (for the PNG) and
  ``write_results(path)`` (the COCO results json).

A metric that cannot be measured (no faces to score) is NaN in memory and ``null`` in every json
facedet writes (``to_json``): NaN is not JSON, and other tools' parsers reject it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from facedet.registry import EVALUATORS, ConfigError, build


class Evaluator(Protocol):
    metric_names: tuple[str, ...]

    def reset(self) -> None: ...
    def update(self, predictions: Sequence[dict[str, torch.Tensor]], image_ids: Sequence[str]) -> None: ...
    def compute(self) -> dict[str, Any]: ...


def build_evaluators(node: Mapping[str, Any] | None, records: Sequence[Any]) -> list[Any]:
    """Build ``{name: {type: coco, ...}, ...}`` (entries set to null are skipped) for a data set's
    ``records``; no node means COCO only."""
    import facedet.evaluation  # noqa: F401  (registers the evaluators)

    if node is None:
        node = {"coco": {"type": "coco"}}
    if not isinstance(node, Mapping):
        raise ConfigError(f"'eval.evaluators' must be a mapping of name -> {{type: ...}}, got {node!r}")
    evaluators = [
        build(spec, EVALUATORS, where=f"eval.evaluators.{name}", records=records)
        for name, spec in node.items()
        if spec is not None
    ]
    if not evaluators:
        raise ConfigError("'eval.evaluators' is empty: keep at least one (e.g. coco).")
    return evaluators


def to_numpy_prediction(pred: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``{boxes, scores}`` (tensors or arrays) -> (boxes (K, 4) float64, scores (K,) float64)."""
    boxes, scores = pred["boxes"], pred["scores"]
    if isinstance(boxes, torch.Tensor):
        boxes, scores = boxes.detach().cpu().numpy(), scores.detach().cpu().numpy()
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (also numpy's, also nested in dicts, lists and tuples) as
    None, and numpy scalars as Python numbers: what ``json.dumps(allow_nan=False)`` accepts."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``obj``: NaN/inf become ``null`` (never the non-JSON ``NaN``)."""
    return json.dumps(nan_to_none(obj), allow_nan=False, **kwargs)
