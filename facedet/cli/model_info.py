"""``facedet-model-info`` / ``tools/model_info.py``: parameters and GFLOPs of a model config, in
total and per module, at the config's input size.

    facedet-model-info model=yolov4 data.img_size=416 [--depth 3] [--json out.json]

Takes the same ``key=value`` / ``group=option`` overrides as training (configs/train.yaml; no run
directory is created). FLOPs are counted by ``torch.utils.flop_counter`` for one image (batch 1);
a multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import json
from pathlib import Path

from facedet.cli.common import parse_tool_args, tool_parser, user_errors


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser(__doc__, overrides="config overrides, e.g. model=yolov4 data.img_size=416")
    parser.add_argument("--depth", type=int, default=2, help="module levels shown below the model (default 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    tool = parse_tool_args(parser, argv, "train")
    cfg, args = tool.cfg, tool.flags

    import torch

    from facedet.models import build_detector
    from facedet.models.info import model_info

    with user_errors(OSError):
        img_size = int(cfg.data.img_size)
        info = model_info(build_detector(cfg.model), img_size, depth=args.depth)
        print(f"model {cfg.model.name} at {img_size}x{img_size} (torch {torch.__version__}, batch 1)")
        print(info.table())
        print(f"{cfg.model.name}: {info.summary()}")
        if args.json:
            Path(args.json).write_text(json.dumps({"model": cfg.model.name} | info.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
