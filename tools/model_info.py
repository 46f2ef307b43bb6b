"""Parameters and GFLOPs of a model config, in total and per module, at the config's input size.

``python tools/model_info.py model=yolov4 data.img_size=416 [--depth 3] [--json out.json]``

Takes the same ``key=value`` / ``group=option`` overrides as ``tools/train.py`` (composed with
Hydra's compose API, so no run directory is created). FLOPs are counted by
``torch.utils.flop_counter`` for one image (batch 1); a multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import argparse
import json
import sys

from facedet.cli.common import compose_or_exit, user_errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model=yolov4 data.img_size=416")
    parser.add_argument("--depth", type=int, default=2, help="module levels shown below the model (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    cfg = compose_or_exit(args.overrides)

    import torch

    from facedet.models import build_detector
    from facedet.models.info import model_info

    with user_errors():
        img_size = int(cfg.data.img_size)
        model = build_detector(cfg.model)
        info = model_info(model, img_size, depth=args.depth)
    print(f"model {cfg.model.name} at {img_size}x{img_size} (torch {torch.__version__}, batch 1)")
    print(info.table())
    print(f"{cfg.model.name}: {info.summary()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": cfg.model.name} | info.as_dict(), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
