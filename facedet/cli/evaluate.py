"""``facedet-eval`` / ``tools/eval.py``: score a checkpoint, an exported model (facedet/cli/eval_exported.py),
or another detector's results, with
COCO mAP (and WIDER FACE Easy/Medium/Hard with ``eval=widerface``) on a validation split."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from facedet.cli.common import CONFIG_DIR, hydra_argv, model_argv, preflight, user_errors
from facedet.config_check import validate_eval_config
from facedet.evaluation.base import to_json
from facedet.registry import ConfigError

log = logging.getLogger(__name__)


def val_data(cfg: DictConfig, stored: DictConfig | None) -> DictConfig | None:
    """The data config to evaluate on: the one chosen with ``data=<name>`` (it has a ``val`` node),
    else ``stored`` (the checkpoint's) moved to ``data.root`` when that is given."""
    d = cfg.get("data")
    if d is not None and d.get("val") is not None:
        return d
    root = d.get("root") if d is not None else None
    if stored is None or root is None:
        return stored
    return reroot(stored, str(root))


def reroot(data: DictConfig, root: str) -> DictConfig:
    """``data`` with ``root`` set to ``root`` and every path under its old root moved there. The
    checkpoint stores its config resolved, so ``${data.root}/val/...`` is a literal path by now."""
    old = data.get("root")
    if old is None:
        raise ConfigError(f"data.root={root}: the checkpoint's data config ('{data.get('name')}') has no root to move; "
                          f"name its data config too: data=<name> data.root={root}")
    old = str(old).rstrip("/") or "/"

    def move(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        if isinstance(v, list):
            return [move(x) for x in v]
        if isinstance(v, str) and (v == old or v.startswith(old + "/")):
            return root + v[len(old):]
        return v

    return OmegaConf.create(move(OmegaConf.to_container(data, resolve=True)) | {"root": root})


def evaluate_checkpoint(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint``; model, data and size default to those it was trained with."""
    from facedet.builders import build_dataset, build_eval_spec, eval_settings, select_device
    from facedet.data import build_dataloader
    from facedet.engine.evaluate import evaluate
    from facedet.inference.predictor import POSTPROCESS_KEYS, load_detector

    device = select_device(str(cfg.device))
    model, train_cfg, which = load_detector(
        cfg.checkpoint, use_ema=cfg.use_ema, device=device, nms=cfg.get("nms"),
        **{k: cfg.get(k) for k in POSTPROCESS_KEYS},
    )
    trained_size = train_cfg.data.img_size
    train_cfg.data = val_data(cfg, train_cfg.data)
    # img_size=null means the training size, also when data=<name> brings its own default size: a model
    # trained at 320 and tested at the data config's 416 scores higher than it will where it is deployed
    train_cfg.data.img_size = cfg.img_size if cfg.img_size is not None else trained_size

    d = train_cfg.data
    dataset = build_dataset(d.val, img_size=d.img_size, aug=None, cache_images=False, where="data.val")
    loader = build_dataloader(dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                              seed=0)
    spec = build_eval_spec(cfg.get("eval"), dataset.records)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = eval_settings(img_size=train_cfg.data.img_size, postprocess=train_cfg.model.postprocess,
                             data_name=train_cfg.data.name) | {"checkpoint": str(cfg.checkpoint), "weights": which}
    metrics = evaluate(model, loader, device=device, settings=settings, results_path=out_dir / "predictions.json",
                       evaluators=spec.evaluators, tta=spec.tta,
                       pr_curve_path=out_dir / "pr_curves.png" if spec.pr_curve else None)
    (out_dir / "metrics.json").write_text(to_json(metrics, indent=2))
    return metrics


def evaluate_results(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Score ``cfg.results`` (another detector's COCO results json or WIDER txt folder) on the val
    split of ``cfg.data`` (or of the checkpoint's data when a checkpoint is given too)."""
    from facedet.builders import build_dataset, build_eval_spec
    from facedet.engine.evaluate import finish_evaluation
    from facedet.evaluation.results import read_results

    stored = None
    if cfg.get("checkpoint") and (cfg.get("data") or {}).get("val") is None:
        from facedet.checkpoint import load_checkpoint, require_training_checkpoint

        ckpt = load_checkpoint(cfg.checkpoint)
        require_training_checkpoint(ckpt, cfg.checkpoint, needs=("config",), use="checkpoint=")
        stored = OmegaConf.create(ckpt["config"]).data
    data = val_data(cfg, stored)
    if data is None:
        raise ConfigError("results=... needs the val set the detections are for: add data=<name> "
                          "(or eval=widerface for WIDER FACE val).")
    size = cfg.img_size or data.img_size  # the records are read in original pixels; any valid size will do
    dataset = build_dataset(data.val, img_size=size, aug=None, cache_images=False, where="data.val")
    try:
        preds = read_results(cfg.results, dataset.records, id_map=cfg.get("results_images"))
    except ValueError as e:  # a malformed or mismatched results file: the message names file and entry
        raise ConfigError(str(e)) from e
    spec = build_eval_spec(cfg.get("eval"), dataset.records)
    ids = list(preds)
    for ev in spec.evaluators:
        ev.update([preds[i] for i in ids], ids)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {"results": str(cfg.results), "data": data.name, "split": "val",
                "note": "test size, TTA and thresholds are those of the detector that wrote the results"}
    metrics = finish_evaluation(spec.evaluators, settings=settings,
                                pr_curve_path=out_dir / "pr_curves.png" if spec.pr_curve else None)
    (out_dir / "metrics.json").write_text(to_json(metrics, indent=2))
    return metrics


def run(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Checkpoint, exported model or results mode, whichever ``cfg`` asks for."""
    validate_eval_config(cfg)
    if cfg.get("results"):
        return evaluate_results(cfg, out_dir)
    if cfg.get("model_file"):
        from facedet.cli.eval_exported import evaluate_exported

        return evaluate_exported(cfg, out_dir)
    if not cfg.get("checkpoint"):
        raise ConfigError("Nothing to evaluate: give checkpoint=<path to a .pt>, model=<exported .onnx> "
                          "or --results <detections.json>.")
    return evaluate_checkpoint(cfg, out_dir)


def format_metrics(m: dict[str, Any]) -> str:
    """The numbers and the settings that produced them, for the terminal."""
    def f(v: Any) -> str:
        return "n/a" if not isinstance(v, (int, float)) or math.isnan(v) else f"{v:.4f}"

    s = m.get("settings", {})
    lines = []
    if "results" in s:
        lines.append(f"{s['results']} on {s['data']} val (settings of the detector that wrote it)")
    else:
        post = s.get("postprocess", {})
        tta = s.get("tta", {})
        lines.append(f"{s.get('data')} val at {s.get('img_size')} px, {s.get('weights')} weights, TTA {tta.get('mode')}"
                     f" {tta.get('scales')}, {post.get('type')} score>{post.get('score_thresh')} "
                     f"nms_iou {post.get('nms_iou', post.get('iou_thresh'))} max_det {post.get('max_det')}"
                     + (f" landmark_vote_iou {post['landmark_vote_iou']}" if post.get("landmark_vote_iou") else ""))
    lines.append(f"COCO  AP50 {f(m.get('AP50'))}  AP50:95 {f(m.get('AP'))}  AP75 {f(m.get('AP75'))}  "
                 f"AR {f(m.get('AR'))}")
    if "AP50_tiny" in m:
        sizes = ("tiny", "small", "medium", "large")
        lines.append("AP50 by face size: " + "  ".join(
            f"{b} {f(m.get(f'AP50_{b}'))} ({m.get(f'faces_{b}', 0)} faces)" for b in sizes))
    if "NME_box" in m:
        from facedet.evaluation.landmarks import landmark_summary

        lines.append("Landmarks  " + landmark_summary(m))
    if "wider_hard" in m:
        lines.append(f"WIDER FACE  Easy {f(m['wider_easy'])}  Medium {f(m['wider_medium'])}  "
                     f"Hard {f(m['wider_hard'])}  ({m.get('wider_images')} images)")
    return "\n".join(lines)


def results_argv(argv: list[str]) -> list[str]:
    """``--results PATH`` / ``--results=PATH`` -> the Hydra override ``results=PATH`` (Hydra owns argv)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--results":
            if i + 1 >= len(argv):
                print("facedet: error: --results needs a path", file=sys.stderr)
                sys.exit(2)
            out.append(f"results={argv[i + 1]}")
            i += 2
            continue
        out.append(f"results={a.split('=', 1)[1]}" if a.startswith("--results=") else a)
        i += 1
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        out_dir = HydraConfig.get().runtime.output_dir
        m = run(cfg, out_dir)
    print("facedet: " + format_metrics(m) + f"\nwritten to {out_dir}")


def main(argv: list[str] | None = None) -> None:
    args = model_argv(results_argv(hydra_argv(argv)))
    hydra_argv(args)  # Hydra reads the flags as overrides
    preflight(args, "eval")
    _main()


if __name__ == "__main__":
    main()
