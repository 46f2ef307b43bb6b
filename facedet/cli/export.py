"""``facedet-export`` / ``tools/export.py``: a training checkpoint as an ONNX model, checked against
PyTorch in onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from facedet.cli.common import CONFIG_DIR, hydra_argv, preflight, user_errors
from facedet.evaluation.base import to_json
from facedet.registry import ConfigError

log = logging.getLogger(__name__)


def export(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Export ``cfg.checkpoint`` per configs/export.yaml; returns the report (also ``export.json``)."""
    try:
        from facedet.export.onnx import check_writable, compare_with_onnxruntime, export_onnx
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError(f"ONNX export needs the [export] extra: pip install -e '.[export]' ({e})") from e
    from facedet.inference.predictor import load_detector

    path = check_writable(Path(cfg.out) if cfg.out else Path(out_dir) / "model.onnx")  # before the slow part
    model, train_cfg, which = load_detector(cfg.checkpoint, use_ema=cfg.use_ema, device="cpu")
    img_size = int(cfg.img_size or train_cfg.data.img_size)
    vote = cfg.get("landmark_vote_iou")
    if vote is None:  # the model config's (0 for a config from before voting)
        vote = train_cfg.model.postprocess.get("landmark_vote_iou", 0.0)
    kw = {"nms_in_graph": bool(cfg.nms_in_graph), "score_thresh": float(cfg.score_thresh),
          "nms_iou": float(cfg.nms_iou), "landmark_vote_iou": float(vote) if model.num_landmarks else 0.0}
    # the model config's post-processing, applied by facedet_runtime to an export without NMS
    post = OmegaConf.to_container(train_cfg.model.postprocess, resolve=True)
    meta = {"checkpoint": str(cfg.checkpoint), "weights": which, "model": train_cfg.model.get("name", ""),
            "strides": model.strides, "postprocess": post}
    export_onnx(model, path, img_size=img_size, metadata=meta, optimize=bool(cfg.optimize), **kw)
    report: dict[str, Any] = {"onnx": str(path), "img_size": img_size, "weights": which,
                              "num_landmarks": model.num_landmarks, **kw}
    if cfg.verify:
        try:
            shapes = [(1, img_size, img_size), (2, img_size - 32 if img_size > 32 else 64, img_size + 32)]
            report["parity"] = compare_with_onnxruntime(model, path, shapes, **kw)
        except ImportError as e:
            raise ConfigError(f"verify=true needs onnxruntime (the [export] extra), or set verify=false ({e})") from e
        p = report["parity"]
        tol = float(cfg.verify_tolerance)
        report["parity_ok"] = (p["same_shapes"] and p["max_abs_box"] <= tol and p["max_abs_score"] <= tol
                               and p.get("max_abs_landmark", 0.0) <= tol)
    (Path(out_dir) / "export.json").write_text(to_json(report, indent=2))
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        r = export(cfg, HydraConfig.get().runtime.output_dir)
    points = f", {r['num_landmarks']} landmarks" if r["num_landmarks"] else ""
    line = (f"facedet: wrote {r['onnx']} ({'NMS inside' if r['nms_in_graph'] else 'no NMS'}{points}, "
            "dynamic batch and size)")
    if "parity" in r:
        p = r["parity"]
        line += (f"; onnxruntime vs PyTorch on {p['shapes']}: max |d box| {p['max_abs_box']:.2e} px, "
                 f"max |d score| {p['max_abs_score']:.2e}"
                 + (f", max |d point| {p['max_abs_landmark']:.2e} px" if "max_abs_landmark" in p else "")
                 + f" over {p['boxes_compared']} boxes, "
                 f"shapes {'equal' if p['same_shapes'] else 'DIFFER'}")
    print(line)
    if "parity_ok" in r and not r["parity_ok"]:
        raise SystemExit("facedet: error: the ONNX outputs differ from PyTorch beyond verify_tolerance")


def main(argv: list[str] | None = None) -> None:
    preflight(hydra_argv(argv), "export")
    _main()


if __name__ == "__main__":
    main()
