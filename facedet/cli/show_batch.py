"""``facedet-show-batch`` / ``tools/show_batch.py``: a PNG grid of augmented training samples.

    facedet-show-batch aug=mosaic data=facemask [show.out=batch.png] [show.num_images=16]

Faces are green, ignored faces (invalid, too small, mostly cut off or erased) orange, landmarks
magenta. The samples come from the training pipeline of the composed config (mosaic, mixup,
augmentations, minimum face size); multi-scale and SAT change the batch on the device during
training: the grid that training sends to TensorBoard at its first step shows those too. The
settings are in configs/show_batch.yaml.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from facedet.cli.common import parse_tool_args, tool_parser, user_errors


def run(cfg: DictConfig) -> str:
    """Draw one training batch of ``cfg`` and write it to ``show.out``; returns the PNG's path."""
    from facedet.builders import build_dataset
    from facedet.data import build_dataloader, wrap_train_dataset
    from facedet.data.visualize import batch_grid, write_png

    d, show = cfg.data, cfg.show
    train_set = build_dataset(d.train, img_size=int(d.img_size), aug=cfg.aug.train, cache_images=False,
                              where="data.train", min_face_size=float(cfg.aug.get("min_face_size") or 0))
    aug = OmegaConf.to_container(cfg.aug, resolve=True)
    train_set = wrap_train_dataset(train_set, aug, img_size=int(d.img_size))
    loader = build_dataloader(train_set, batch_size=min(int(show.num_images), len(train_set)), shuffle=True,
                              num_workers=0, seed=int(show.seed))
    batch = next(iter(loader))
    path = write_png(batch_grid(batch, max_images=int(show.num_images)), show.out)
    faces = sum(len(t["boxes"]) for t in batch["targets"])
    ignored = sum(int(t["ignore"].sum()) for t in batch["targets"])
    print(f"wrote {path}: {len(batch['targets'])} samples at {d.img_size} px, {faces} faces ({ignored} ignored)")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    tool = parse_tool_args(tool_parser(__doc__), argv, "show_batch")
    with user_errors():
        run(tool.cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
