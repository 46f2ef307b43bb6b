"""``tools/eval.py model=<file.onnx|.xml> backend=onnxruntime|openvino data=<name>``: score an exported
model through the torch-free runtime (``facedet_runtime.FaceDetector``) with the evaluators, metrics
and files of ``checkpoint=``, so an fp32, slimmed or int8 export is compared with its checkpoint on
the same footing.

The runtime is fed the val set's original images and letterboxes them itself (what a user of the
file gets); the post-processing is the one stored in the file (the model config's, ``score_thresh``
0.001 for mAP) unless ``score_thresh`` / ``nms_iou`` / ``max_det`` / ``nms`` / ``landmark_vote_iou``
override it, as with a checkpoint.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from facedet.evaluation.base import to_json
from facedet.registry import ConfigError

BACKENDS = ("onnxruntime", "openvino")
# eval.yaml keys handed to the runtime when set; null keeps the file's (the model config's post-processing)
RUNTIME_KEYS = ("score_thresh", "nms_iou", "max_det", "landmark_vote_iou", "nms", "img_size")


def open_runtime(path: str | Path, backend: str, **kwargs: Any) -> Any:
    """``facedet_runtime.FaceDetector(path, backend=..., **kwargs)`` with the keywords that are not None;
    ConfigError when the runtime is missing, lacks one of them or refuses the file. Tests replace
    ``facedet_runtime`` with a stand-in of the same contract."""
    try:
        from facedet_runtime import FaceDetector
    except ImportError as e:
        raise ConfigError(f"model={path}: evaluating an exported model needs the runtime package "
                          f"facedet_runtime ({e}); pip install -e . (or ./facedet_runtime)") from e
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    accepted = inspect.signature(FaceDetector).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ConfigError(f"model={path}: this facedet_runtime cannot set {', '.join(unknown)}; leave "
                          f"{' and '.join(f'{k}=null' for k in unknown)}")
    try:
        return FaceDetector(path, backend=backend, **kwargs)
    except ValueError as e:  # the runtime's errors name the file and what it refused
        raise ConfigError(f"model={path}: {e}") from None


def decoded(value: Any) -> Any:
    """A metadata value: the JSON it encodes when it is a JSON string, else the value itself."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def applied_postprocess(det: Any, cfg: DictConfig) -> dict[str, Any]:
    """The post-processing the runtime applies: its ``postprocess`` (a dataclass) when it shows it,
    else the file's metadata with the overrides of ``cfg``."""
    post = getattr(det, "postprocess", None)
    if dataclasses.is_dataclass(post):
        return dataclasses.asdict(post)
    node = dict(decoded(det.metadata.get("postprocess")) or {})
    node |= {k: cfg.get(k) for k in RUNTIME_KEYS[:-2] if k != "nms" and cfg.get(k) is not None}
    return node | ({"type": cfg.nms} if cfg.get("nms") is not None else {})


def check_request(cfg: DictConfig) -> tuple[Path, str]:
    """(model path, backend) of a ``model=`` evaluation; ConfigError for what it cannot do."""
    path = Path(str(cfg.model_file))
    if not path.is_file():
        raise ConfigError(f"model={path}: no such file (an exported .onnx, or an OpenVINO .xml)")
    backend = str(cfg.get("backend") or "onnxruntime")
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend}: not a runtime backend; known: {', '.join(BACKENDS)} "
                          f"(a checkpoint is evaluated with checkpoint=, in PyTorch)")
    if cfg.get("checkpoint"):
        raise ConfigError("give either checkpoint= (PyTorch) or model= (an exported file), not both")
    d = cfg.get("data")
    if d is None or d.get("val") is None:
        raise ConfigError(f"model={path}: an exported file stores no data config; name the val set: data=<name>")
    return path, backend


def evaluate_exported(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Evaluate ``cfg.model_file`` (an exported file, ``model=`` on the command line) with ``cfg.backend``
    on ``cfg.data``'s val split. The test size is ``img_size`` when given, else the one stored in the
    file (the training size), never the data config's ``img_size`` (every data config has one, so it
    would always win)."""
    from facedet.builders import build_dataset, build_eval_spec, eval_settings
    from facedet.engine.evaluate import evaluate_images

    path, backend = check_request(cfg)
    det = open_runtime(path, backend, **{k: cfg.get(k) for k in RUNTIME_KEYS})
    size = int(det.img_size)
    d = cfg.data
    dataset = build_dataset(d.val, img_size=size, aug=None, cache_images=False, where="data.val")
    spec = build_eval_spec(cfg.get("eval"), dataset.records)
    if spec.tta.describe().get("mode") != "none":
        raise ConfigError("eval.tta: test-time augmentation is not available with model= (the runtime predicts "
                          "the image as given); use eval.tta=none")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = eval_settings(img_size=size, postprocess=applied_postprocess(det, cfg), data_name=str(d.name)) | {
        "model": str(path), "backend": backend, "weights": f"{backend} {path.name}",
        "precision": decoded(det.metadata.get("precision", "fp32"))}
    metrics = evaluate_images(det, dataset.records, evaluators=spec.evaluators, batch_size=int(cfg.batch_size),
                              settings=settings, results_path=out_dir / "predictions.json",
                              pr_curve_path=out_dir / "pr_curves.png" if spec.pr_curve else None)
    (out_dir / "metrics.json").write_text(to_json(metrics, indent=2))
    return metrics
