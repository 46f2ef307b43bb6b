"""``facedet-eval`` / ``tools/eval.py``: score a checkpoint with COCO mAP on a validation split."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from facedet.cli.common import CONFIG_DIR, user_errors

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint``; model, data and size default to those it was trained with."""
    from facedet.data import build_dataloader
    from facedet.engine.checkpoint import load_checkpoint, load_model_state, model_weights
    from facedet.engine.evaluate import evaluate
    from facedet.engine.run import build_dataset, eval_settings, select_device
    from facedet.models import build_detector

    ckpt = load_checkpoint(cfg.checkpoint)
    train_cfg = OmegaConf.create(ckpt["config"])
    if cfg.get("data") is not None:
        train_cfg.data = cfg.data
    if cfg.img_size is not None:
        train_cfg.data.img_size = cfg.img_size
    for key in ("score_thresh", "iou_thresh", "max_det"):
        if cfg[key] is not None:
            train_cfg.model.postprocess[key] = cfg[key]

    device = select_device(str(cfg.device))
    model = build_detector(train_cfg.model)
    which, state = model_weights(ckpt, use_ema=cfg.use_ema)
    load_model_state(model, state, f"{cfg.checkpoint} ({which} weights)")
    model.to(device).eval()

    d = train_cfg.data
    dataset = build_dataset(d.val, img_size=d.img_size, aug=None, cache_images=False, where="data.val")
    loader = build_dataloader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                              seed=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = eval_settings(train_cfg) | {"checkpoint": str(cfg.checkpoint), "weights": which}
    metrics = evaluate(model, loader, device=device, settings=settings, results_path=out_dir / "predictions.json")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        out_dir = HydraConfig.get().runtime.output_dir
        m = evaluate_checkpoint(cfg, out_dir)
    s = m["settings"]
    print(f"facedet: {s['data']} val at {s['img_size']} px ({s['weights']} weights): AP50 {m['AP50']:.4f} "
          f"AP50:95 {m['AP']:.4f} AP75 {m['AP75']:.4f} AR {m['AR']:.4f}; written to {out_dir}")


if __name__ == "__main__":
    main()
