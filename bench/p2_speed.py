"""Training-step time of a model with and without the stride-4 (P2) level, on one CPU thread.

    PYTHONPATH=. python bench/p2_speed.py [--steps 6] [--img-size 320] [--batch 8]

Builds ``experiment=facemask`` with yolov4_nano (anchors facemask_320) and with yolov4_nano_p2
(anchors facemask_320_p2), and times forward + loss + backward + AdamW step on random images with
a handful of small faces each (no data loading: the model's share of an epoch). The models are
timed in alternation (A B A B ...) so a load change on the machine hits both alike; prints the
median step time of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from facedet.models import build_detector

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MODELS = {"yolov4_nano": "facemask_320", "yolov4_nano_p2": "facemask_320_p2"}


def _batch(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images = torch.rand(n, 3, size, size, generator=g)
    targets = []
    for _ in range(n):
        xy = torch.rand(5, 2, generator=g) * (size - 40)
        wh = 6 + torch.rand(5, 2, generator=g) * 30  # 6-36 px faces, facemask's range at 320
        targets.append({"boxes": torch.cat((xy, xy + wh), 1), "labels": torch.zeros(5, dtype=torch.long),
                        "ignore": torch.zeros(5, dtype=torch.bool)})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model (after one warm-up step)")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    setups = {}
    for name, anchors in MODELS.items():
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=["experiment=facemask", f"model={name}", f"anchors={anchors}"])
        torch.manual_seed(0)
        model = build_detector(cfg.model).train()
        setups[name] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3))
    g = torch.Generator().manual_seed(0)
    images, targets = _batch(args.batch, args.img_size, g)
    times: dict[str, list[float]] = {name: [] for name in setups}
    for step in range(args.steps + 1):
        for name, (model, opt) in setups.items():
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            model.loss(images, targets)["loss"].backward()
            opt.step()
            if step:  # the first step of each model warms up allocators and caches
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["yolov4_nano"])
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:16s} median {med:.3f} s/step (min {min(t):.3f}, max {max(t):.3f}) over {len(t)} steps, "
              f"{med / base:.2f}x yolov4_nano")


if __name__ == "__main__":
    main()
