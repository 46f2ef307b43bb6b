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
from facedet.export.quiet import library_logs_at_debug
from facedet.registry import ConfigError

log = logging.getLogger(__name__)


def export(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Export ``cfg.checkpoint`` per configs/export.yaml; returns the report (also ``export.json``)."""
    if cfg.get("log_level"):  # DEBUG also shows the exporter libraries' internals (facedet.export.quiet)
        logging.getLogger().setLevel(str(cfg.log_level).upper())
    with library_logs_at_debug():
        return _export(cfg, out_dir)


def _export(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    try:
        from facedet.export.onnx import check_writable, compare_with_onnxruntime, export_onnx
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError(f"ONNX export needs the [export] extra: pip install -e '.[export]' ({e})") from e
    from facedet.export.fold import fold_batchnorm
    from facedet.export.variants import file_entry, write_variants
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
    opts = variant_options(cfg)  # options and packages checked before the slow part
    opts.check_installed()
    if cfg.slim:
        from facedet.export.slim import require_onnxslim

        require_onnxslim()
    # the folded copy is exported; the parity check below runs the unfolded model, so it covers the folding
    exported = fold_batchnorm(model)[0] if cfg.fold_bn else model
    export_onnx(exported, path, img_size=img_size, metadata=meta, optimize=bool(cfg.optimize), **kw)
    if cfg.slim:
        from facedet.export.slim import slim_onnx

        slim_onnx(path)
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
    report["files"] = [{**file_entry(path, "fp32", "onnxruntime"), **({"parity_pytorch": report["parity"]}
                                                                      if "parity" in report else {})}]
    if opts.int8 != "none" or opts.openvino:
        calib, check = calibration_and_verification_images(cfg, train_cfg, img_size, opts)
        report["files"] += write_variants(path, opts, calibration=calib, verification=check)
    (Path(out_dir) / "export.json").write_text(to_json(report, indent=2))
    return report


def variant_options(cfg: DictConfig) -> Any:
    """The int8 / OpenVINO options of the export config. Parity counts detections at the export
    config's ``score_thresh`` / ``nms_iou`` (a deployment threshold, 0.25), not the model config's,
    which is often an evaluation threshold (0.001) where most detections are background noise."""
    from facedet.export.variants import VariantOptions

    int8 = cfg.get("int8") or "none"  # null (or false from the command line) = none
    if int8 is True:
        int8 = "ort"
    calib = cfg.get("calib") or {}
    opts = VariantOptions(int8=str(int8), openvino=bool(cfg.get("openvino", False)),
                          method=str(calib.get("method", "minmax")), exclude=str(calib.get("exclude", "decode")),
                          preprocess=bool(calib.get("preprocess", True)),
                          activations=str(calib.get("activations", "uint8")),
                          preset=str(calib.get("openvino_preset", "mixed")),
                          score_thresh=float(cfg.score_thresh), nms_iou=float(cfg.nms_iou))
    if (opts.int8 != "none" or opts.openvino) and cfg.nms_in_graph:
        raise ConfigError("int8 / openvino need nms_in_graph=false (the runtime applies the model's NMS)")
    return opts


def calibration_and_verification_images(cfg: DictConfig, train_cfg: DictConfig, img_size: int,
                                        opts: Any) -> tuple[list[Any], list[Any]]:
    """``calib.images`` images of the checkpoint's training split (for int8) and ``calib.verify_images``
    of its validation split (for the parity report), letterboxed to ``img_size``."""
    import facedet.data  # noqa: F401 - registers the data sets
    from facedet.export.calibration import calibration_batches
    from facedet.registry import DATASETS, build

    calib = cfg.get("calib") or {}

    def images(split: str, n: int) -> list[Any]:
        if n <= 0:
            return []
        node = train_cfg.data[split]
        dataset = build(node, DATASETS, where=f"data.{split} (of {cfg.checkpoint})", transform=None,
                        cache_images=False)
        log.info("%s images: data.%s of the checkpoint", "calibration" if split == "train" else "verification", split)
        return calibration_batches(dataset, n, img_size)

    calibration = images("train", int(calib.get("images", 300))) if opts.needs_calibration else []
    return calibration, images("val", int(calib.get("verify_images", 50)))


def summary_lines(r: dict[str, Any]) -> list[str]:
    """What the tool prints: the fp32 ONNX file and its parity with PyTorch, then one line per other
    file written (int8, OpenVINO) with its size and its parity with the fp32 ONNX."""
    from facedet.export.parity import describe

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
    lines = [line]
    for f in r.get("files", [])[1:]:
        text = f"facedet: wrote {f['path']} ({f['precision']}, {f['runtime']}, {f['bytes'] / 2**20:.2f} MiB)"
        lines.append(text + (f"; vs the fp32 ONNX: {describe(f['parity'])}" if "parity" in f else ""))
    return lines


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        r = export(cfg, HydraConfig.get().runtime.output_dir)
    print("\n".join(summary_lines(r)))
    if "parity_ok" in r and not r["parity_ok"]:
        raise SystemExit("facedet: error: the ONNX outputs differ from PyTorch beyond verify_tolerance")


def main(argv: list[str] | None = None) -> None:
    preflight(hydra_argv(argv), "export")
    _main()


if __name__ == "__main__":
    main()
