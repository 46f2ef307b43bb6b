"""Training throughput of any model config: images/s and time per step (forward, loss, backward,
optimizer) through ``Trainer.run_step`` on fixed in-memory batches (the data loader is measured by
bench/dataloader.py), with the model's GFLOPs so that efficiency compares across models.

    python bench/train_throughput.py --model yolov4_nano mobilenetv3_yolo --size 320 640 --batch 16
    python bench/train_throughput.py --model yolov4 --size 640 --batch 32 --device cuda   # AMP on CUDA

Prints one line per (model, size): median ms per step (quartiles), images/s, GFLOPs per image
(forward, multiply-add = 2), and training GFLOP/s (3x forward per image: forward + backward).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))

from bench.common import CONFIGS, print_header  # noqa: E402
from facedet.builders import select_device  # noqa: E402
from facedet.data import collate  # noqa: E402
from facedet.engine.optim import build_optimizer  # noqa: E402
from facedet.engine.trainer import Trainer  # noqa: E402
from facedet.models import build_detector  # noqa: E402
from facedet.models.info import model_info  # noqa: E402


def synthetic_batches(n: int, size: int, batch: int, faces: int = 6) -> list[dict]:
    """``n`` collated batches of random images with ``faces`` random boxes each (seeded)."""
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n * batch):
        xy = torch.rand(faces, 2, generator=g) * (size - 64)
        wh = 8 + torch.rand(faces, 2, generator=g) * 56
        target = {"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.zeros(faces, dtype=torch.int64),
                  "ignore": torch.zeros(faces, dtype=torch.bool), "landmarks": torch.full((faces, 5, 2), float("nan"))}
        items.append({"image": torch.rand(3, size, size, generator=g), "target": target, "meta": {}})
    return [collate(items[i * batch:(i + 1) * batch]) for i in range(n)]


def measure(model_name: str, size: int, args: argparse.Namespace, device: torch.device) -> str:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model_name}", *args.override])
    torch.manual_seed(0)
    model = build_detector(cfg.model).to(device)
    gflops = model_info(model, size, depth=0).gflops
    data = synthetic_batches(args.warmup + args.steps, size, args.batch)
    loader = DataLoader(data, batch_size=None)  # hooks read only len() and batch_size
    optimizer = build_optimizer(model, {"type": cfg.optim.type, "lr": 1e-3})
    trainer = Trainer(model=model, optimizer=optimizer, train_loader=loader,
                      device=device, max_epochs=1, base_lr=1e-3, lr_factor=lambda s: 1.0, amp=args.amp,
                      grad_clip=10.0)
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
    ips = args.batch / med
    return (f"{model_name:18s} {size:4d} px  {med * 1e3:8.1f} ms/step ({q1 * 1e3:.0f}-{q3 * 1e3:.0f})  "
            f"{ips:7.1f} img/s  {gflops:6.2f} GFLOPs/img  {3 * gflops * ips:7.1f} train GFLOP/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["yolov4_nano"], help="model configs (configs/model/*.yaml)")
    ap.add_argument("--size", type=int, nargs="+", default=[320], help="input sizes (multiples of 32)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda")
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="CUDA: train in fp32 (default: fp16 AMP)")
    ap.add_argument("override", nargs="*", help="extra Hydra overrides, e.g. model.backbone.width=0.5")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print_header("hydra")
    print(f"device {device}, batch {args.batch}, AMP {'on' if args.amp and device.type == 'cuda' else 'off'}, "
          f"{args.steps} timed steps after {args.warmup} warm-up steps")
    for name in args.model:
        for size in args.size:
            print(measure(name, size, args, device), flush=True)


if __name__ == "__main__":
    main()
