"""Time of one training iteration through ``Trainer.run_step`` (forward, loss, backward, clip, optimizer
step, the host transfer of the loss terms; with this branch also the NaN check and the BatchNorm
backup) on fixed in-memory batches, so the data loader is not measured.

Run it against two checkouts to compare engines on the same machine, alternating:

    PYTHONPATH=/path/to/checkout python bench/engine_step.py --size 320 --batch 16 --steps 20

It prints the median and quartiles of the per-iteration wall time, the command, library versions
and the machine. Only arguments every version of ``Trainer`` accepts are used.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

import facedet
from facedet.data import collate
from facedet.engine.optim import build_optimizer
from facedet.engine.trainer import Trainer
from facedet.models import build_detector

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def batches(n: int, size: int, batch: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n * batch):
        xy = torch.rand(6, 2, generator=g) * (size - 64)
        wh = 16 + torch.rand(6, 2, generator=g) * 48
        boxes = torch.cat([xy, xy + wh], 1)
        target = {"boxes": boxes, "labels": torch.zeros(6, dtype=torch.int64),
                  "ignore": torch.zeros(6, dtype=torch.bool), "landmarks": torch.full((6, 5, 2), float("nan"))}
        items.append({"image": torch.rand(3, size, size, generator=g), "target": target, "meta": {}})
    return [collate(items[i * batch:(i + 1) * batch]) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov4_nano")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={args.model}"])
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_detector(cfg.model).to(device)
    data = batches(args.warmup + args.steps, args.size, args.batch)
    loader = DataLoader(data, batch_size=None)  # only len() and batch_size are read by hooks
    trainer = Trainer(model=model, optimizer=build_optimizer(model, lr=0.01), train_loader=loader, device=device,
                      max_epochs=1, base_lr=0.01, lr_factor=lambda s: 1.0, amp=True, grad_clip=10.0)
    model.train()
    times = []
    for i, b in enumerate(data):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.run_step(b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    q1, med, q3 = statistics.quantiles(times, n=4)
    print(f"engine_step: {med * 1e3:.1f} ms/iteration (quartiles {q1 * 1e3:.1f} / {q3 * 1e3:.1f}), "
          f"{args.batch / med:.1f} images/s; {args.model} at {args.size} px, batch {args.batch}, {len(times)} timed")
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"facedet from {os.path.dirname(facedet.__file__)}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {device}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
