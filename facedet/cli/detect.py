"""``facedet-detect`` / ``tools/detect.py``: detect faces in images, folders and videos with a
trained checkpoint (``backend=torch``) or an exported model (``backend=onnxruntime|openvino``,
``model_file=``, through the torch-free ``facedet_runtime``); writes annotated media (boxes, scores and,
for a model with landmarks, the five points), ``detections.json`` and, with ``crops=true``, aligned
face crops of the images' faces."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from facedet.cli.common import CONFIG_DIR, hydra_argv, model_argv, preflight, user_errors
from facedet.evaluation.base import to_json
from facedet.registry import ConfigError

log = logging.getLogger(__name__)


RUNTIME_BACKENDS = ("onnxruntime", "openvino")


def _runtime_detector(cfg: DictConfig) -> tuple[Any, int, int, dict[str, Any]]:
    """(facedet_runtime.FaceDetector for ``cfg.model_file``, img_size, num_landmarks, settings) for a
    non-torch backend; ConfigError for options it cannot honour, a missing or foreign model file, a
    backend that is not installed."""
    import dataclasses

    from facedet_runtime import BackendUnavailable, FaceDetector

    if not cfg.model_file:
        raise ConfigError(f"backend={cfg.backend} runs an exported model: give model_file=<path.onnx or .xml> "
                          "(tools/export.py writes one); checkpoint= is for backend=torch")
    if cfg.checkpoint:
        raise ConfigError(f"backend={cfg.backend} reads model_file=, not checkpoint= (give one of them)")
    if cfg.tta != "none":
        raise ConfigError(f"tta={cfg.tta} needs backend=torch (the runtime predicts at one size, unflipped)")
    try:
        det = FaceDetector(cfg.model_file, backend=cfg.backend, threads=cfg.get("threads"),
                           score_thresh=cfg.score_thresh, nms_iou=cfg.nms_iou, max_det=cfg.max_det,
                           img_size=cfg.img_size, nms=cfg.nms, landmark_vote_iou=cfg.landmark_vote_iou)
    except BackendUnavailable as e:
        raise ConfigError(f"backend={cfg.backend}: {e}") from None
    except ValueError as e:  # a missing file, not a facedet export, a bad override: the message names it
        raise ConfigError(f"model_file={cfg.model_file}: {e}") from None
    settings = {"model": str(cfg.model_file), "backend": str(cfg.backend),
                "postprocess": dataclasses.asdict(det.postprocess), "nms_in_graph": det.info.nms_in_graph}
    return det, det.img_size, det.num_landmarks, settings


def _torch_predictor(cfg: DictConfig) -> tuple[Any, int, int, dict[str, Any]]:
    """(Predictor for ``cfg.checkpoint``, img_size, num_landmarks, settings) for backend=torch."""
    from facedet.builders import select_device
    from facedet.inference.predictor import POSTPROCESS_KEYS, Predictor, load_detector
    from facedet.inference.tta import TTA

    if cfg.model_file:
        raise ConfigError(f"model_file={cfg.model_file} is an exported model: run it with backend=onnxruntime or "
                          "backend=openvino (backend=torch reads checkpoint=)")
    if not cfg.checkpoint:
        raise ConfigError("give checkpoint=<training checkpoint> (or model_file=<exported .onnx> with "
                          "backend=onnxruntime)")
    device = select_device(str(cfg.device))
    model, train_cfg, which = load_detector(
        cfg.checkpoint, use_ema=cfg.use_ema, device=device, nms=cfg.nms,
        **{k: cfg.get(k) for k in POSTPROCESS_KEYS},
    )
    num_landmarks = int(train_cfg.model.head.get("num_landmarks", 0) or 0)
    img_size = int(cfg.img_size or train_cfg.data.img_size)
    tta = TTA.from_mode(cfg.tta, cfg.tta_scales)
    settings = {"checkpoint": str(cfg.checkpoint), "weights": which, "backend": "torch",
                "postprocess": OmegaConf.to_container(train_cfg.model.postprocess, resolve=True),
                "tta": tta.describe()}
    return Predictor(model, img_size=img_size, device=device, tta=tta), img_size, num_landmarks, settings


def detect(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run ``cfg`` (see configs/detect.yaml); returns what ``detections.json`` holds."""
    from facedet.inference.detect import run_detection
    from facedet.inference.smoothing import BoxSmoother

    if not 0 <= cfg.smooth < 1:
        raise ConfigError(f"smooth must lie in [0, 1) (the previous frame's weight), got {cfg.smooth}")
    if cfg.crops and not int(cfg.crop_size) > 0:
        raise ConfigError(f"crop_size must be a positive number of pixels, got {cfg.crop_size}")
    backend = str(cfg.get("backend", "torch"))
    if backend not in ("torch", *RUNTIME_BACKENDS):
        raise ConfigError(f"Unknown backend '{backend}'. Known: torch, {', '.join(RUNTIME_BACKENDS)}.")
    build = _torch_predictor if backend == "torch" else _runtime_detector
    predictor, img_size, num_landmarks, model_settings = build(cfg)
    if cfg.crops and not num_landmarks:
        raise ConfigError(f"crops=true needs a model that predicts landmarks; {cfg.checkpoint or cfg.model_file} "
                          "has none (train with model.head.num_landmarks=5)")
    smoother = BoxSmoother(alpha=1 - cfg.smooth, iou_thresh=cfg.smooth_iou) if cfg.smooth > 0 else None
    out_dir = Path(cfg.out or out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_detection(predictor, cfg.source, out_dir, save_media=cfg.save_media, smoother=smoother,
                               batch_size=cfg.batch_size, line_width=cfg.line_width,
                               crop_size=int(cfg.crop_size) if cfg.crops else None)
    except ValueError as e:  # an unreadable source: the message names it
        raise ConfigError(str(e)) from e
    settings = {**model_settings, "source": str(cfg.source), "img_size": img_size,
                "smooth": cfg.smooth, "boxes": "xyxy in original image pixels"}
    if num_landmarks:
        settings["landmarks"] = ("x1, y1, ..., x5, y5 in original image pixels: left eye, right eye, nose tip, "
                                 "left and right mouth corner (left = the image's left)")
    if cfg.crops:
        settings["crops"] = f"{cfg.crop_size}x{cfg.crop_size}, aligned to the ArcFace template, under crops/"
    result = {"settings": settings} | result
    (out_dir / "detections.json").write_text(to_json(result, indent=1))
    return result | {"out_dir": str(out_dir)}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="detect")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        r = detect(cfg, HydraConfig.get().runtime.output_dir)
    faces = sum(len(v["detections"]) for v in r["images"].values())
    frames = sum(len(v["frames"]) for v in r["videos"].values())
    crops = sum("crop" in d for v in r["images"].values() for d in v["detections"])
    print(f"facedet: {len(r['images'])} images ({faces} faces), {len(r['videos'])} videos ({frames} frames), "
          f"{len(r['skipped'])} skipped" + (f", {crops} aligned crops" if "crops" in r["settings"] else "")
          + f"; written to {r['out_dir']}")


def main(argv: list[str] | None = None) -> None:
    args = model_argv(hydra_argv(argv))
    hydra_argv(args)  # Hydra reads the flags as overrides
    preflight(args, "detect")
    _main()


if __name__ == "__main__":
    main()
