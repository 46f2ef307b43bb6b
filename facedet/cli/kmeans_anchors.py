"""``facedet-anchors`` / ``tools/kmeans_anchors.py``: fit anchors to a data set.

    facedet-anchors data=facemask [data.img_size=320] [kmeans.name=facemask_320] [kmeans.write=false]

Reads the training faces of the data config after letterboxing to ``data.img_size``, runs k-means
with distance 1 - IoU (k = the model's anchors, 9 by default), refines them with a genetic search,
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


def run(cfg: DictConfig, data_choice: str | None = None) -> Path | None:
    """Fit and report; write the anchors config unless ``kmeans.write`` is false (then None).
    ``data_choice`` is the ``data=<option>`` the config was composed with (default ``data.name``),
    for the printed training commands."""
    from facedet.anchors import anchor_report, anchors_yaml, fit_anchors, letterboxed_wh, per_level, write_anchors
    from facedet.builders import build_dataset
    from facedet.models.model_config import anchor_iou_of

    d, km = cfg.data, cfg.kmeans
    img_size = int(d.img_size)
    min_face = float(cfg.aug.get("min_face_size") or 0)
    anchor_iou = anchor_iou_of(cfg.model)  # the assigner's threshold, as training measures the fit
    current = np.asarray(OmegaConf.to_container(cfg.model.anchors, resolve=True), np.float64)
    levels, k = len(current), int(km.k or np.asarray(current).size // 2)
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
    print(f"k-means (1 - IoU), k={k}: {kmeans_rep.summary()}")
    print(f"after {int(km.generations)} genetic generations: {rep.summary()}")
    print(rep.table())
    lv = per_level(anchors, levels)
    print("anchors: " + str(lv))
    name = str(km.name)
    data_choice = data_choice or str(d.name)
    text = anchors_yaml(lv, rep, data=data_choice, img_size=img_size, name=name)
    print(f"train with them: python tools/train.py data={data_choice} anchors={name}")
    flat = str(lv).replace(" ", "")  # one shell word
    print(f"             or: python tools/train.py data={data_choice} 'model.anchors={flat}'")
    if not km.write:
        return None
    path = write_anchors(text, Path(CONFIG_DIR) / "anchors" / f"{name}.yaml")
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    tool = parse_tool_args(tool_parser(__doc__), argv, "kmeans_anchors")
    with user_errors():
        run(tool.cfg, tool.choices.get("data"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
