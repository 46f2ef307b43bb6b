"""``facedet-anchors`` / ``tools/kmeans_anchors.py``: fit anchors to a data set.

    facedet-anchors data=facemask [data.img_size=320] [kmeans.name=facemask_320] [kmeans.write=false]
    facedet-anchors data=facemask data.img_size=320 model=yolov4_nano_p2 kmeans.name=facemask_320_p2

Reads the training faces of the data config after letterboxing to ``data.img_size``, runs k-means
with distance 1 - IoU (k = 3 anchors per level of the model: 9 for strides 8/16/32, 12 with a
stride-4 level; the levels are those the model's backbone outputs), refines them with a genetic search,
prints average IoU, best possible recall at the assigner's threshold and recall per face size, and
writes ``configs/anchors/<kmeans.name>.yaml``; train with them by ``anchors=<name>``. The settings
are in configs/kmeans_anchors.yaml.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from facedet.cli.common import CONFIG_DIR, parse_tool_args, tool_parser, user_errors
from facedet.registry import ConfigError


def model_strides(model_cfg: DictConfig) -> list[int]:
    """The strides of the levels the model config's backbone and neck give (built without the head,
    so anchors with the wrong number of levels do not stop the tool that fits the right ones)."""
    import facedet.models  # noqa: F401  (registers the backbones and necks)
    from facedet.registry import BACKBONES, NECKS, build

    backbone = build(model_cfg.backbone, BACKBONES, where="model.backbone")
    neck = build(model_cfg.neck, NECKS, where="model.neck", in_channels=list(backbone.out_channels))
    strides = [int(s) for s in backbone.strides]
    if len(neck.out_channels) != len(strides):
        raise ConfigError(f"model.neck gives {len(neck.out_channels)} levels from the backbone's {len(strides)} "
                          f"(strides {strides}): cannot tell the model's levels")
    return strides


def run(cfg: DictConfig, data_choice: str | None = None, model_choice: str | None = None) -> Path | None:
    """Fit and report; write the anchors config unless ``kmeans.write`` is false (then None).
    ``data_choice`` / ``model_choice`` are the ``data=`` / ``model=`` options the config was
    composed with (default ``data.name`` / none), for the printed training commands (the model is
    named only when it has other than 3 levels: those anchors fit no other model)."""
    from facedet.anchors import anchor_report, anchors_yaml, fit_anchors, letterboxed_wh, per_level, write_anchors
    from facedet.builders import build_dataset
    from facedet.models.model_config import anchor_iou_of

    d, km = cfg.data, cfg.kmeans
    img_size = int(d.img_size)
    min_face = float(cfg.aug.get("min_face_size") or 0)
    anchor_iou = anchor_iou_of(cfg.model)  # the assigner's threshold, as training measures the fit
    current = np.asarray(OmegaConf.to_container(cfg.model.anchors, resolve=True), np.float64)
    strides = model_strides(cfg.model)
    levels = len(strides)
    per = current.size // 2 // len(current)  # anchors per level of the model config's anchors (3)
    k = int(km.k or per * levels)
    dataset = build_dataset(d.train, img_size=img_size, aug=None, cache_images=False, where="data.train")
    wh, small = letterboxed_wh(dataset.records, img_size, min_face_size=min_face)
    if len(wh) < k:
        raise ConfigError(f"only {len(wh)} usable faces in data.train; k-means needs at least kmeans.k={k}")
    print(f"{len(wh)} faces of {d.name} train at {img_size} px ({small} below aug.min_face_size={min_face:g} "
          f"left out); assignment threshold anchor_iou={anchor_iou:g}")
    before = anchor_report(wh, current.reshape(-1, 2), anchor_iou)
    print(f"model {cfg.model.name} anchors: {before.summary()}")
    anchors, kmeans_rep, rep = fit_anchors(wh, k=k, anchor_iou=anchor_iou, generations=int(km.generations),
                                           seed=int(km.seed), max_faces=int(km.max_faces))
    print(f"k-means (1 - IoU), k={k} ({levels} levels, strides {strides}): {kmeans_rep.summary()}")
    print(f"after {int(km.generations)} genetic generations: {rep.summary()}")
    print(rep.table())
    lv = per_level(anchors, levels)
    print("anchors: " + str(lv))
    name = str(km.name)
    data_choice = data_choice or str(d.name)
    model_choice = model_choice if levels != 3 else None  # name the model only when its levels are not the usual
    text = anchors_yaml(lv, rep, data=data_choice, img_size=img_size, name=name, strides=strides, model=model_choice)
    model_arg = f" model={model_choice}" if model_choice else ""
    print(f"train with them: python tools/train.py data={data_choice}{model_arg} anchors={name}")
    flat = str(lv).replace(" ", "")  # one shell word
    print(f"             or: python tools/train.py data={data_choice}{model_arg} 'model.anchors={flat}'")
    if not km.write:
        return None
    path = write_anchors(text, Path(CONFIG_DIR) / "anchors" / f"{name}.yaml")
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    tool = parse_tool_args(tool_parser(__doc__), argv, "kmeans_anchors")
    with user_errors():
        run(tool.cfg, tool.choices.get("data"), tool.choices.get("model"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
