"""Cost of self-adversarial training per step: a training step (forward, backward, SGD step) with and
without SAT's extra pass (forward + gradient with respect to the images), same model and batch.

    python bench/sat.py                                   # yolov4_nano, 320 px, batch 8, CPU
    python bench/sat.py --model yolov4 --img-size 416 --batch-size 8

SAT at probability p costs p times the extra pass on average; the figures are for p = 1. Prints
wall and CPU milliseconds per step (median over the timed steps), the command, versions, machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov4_nano")
    ap.add_argument("--img-size", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per setting (after 2 warm-up steps)")
    ap.add_argument("--epsilon", type=float, default=0.02)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch's default; on a busy 2-core machine 2 threads ran 6-10x slower)")
    return ap.parse_args()


def setup(args: argparse.Namespace) -> tuple[Any, Any, Any, list[dict]]:
    """The model (training mode), its SGD optimizer and one synthetic batch (images, targets) on the device."""
    import torch
    from hydra import compose, initialize_config_dir

    from facedet.data import build_dataloader, build_transforms, generate_synthetic
    from facedet.models import build_detector
    from facedet.registry import DATASETS, build

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={args.model}"])
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_detector(cfg.model).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    with tempfile.TemporaryDirectory() as tmp:
        generate_synthetic(tmp, num_train=args.batch_size, num_val=1, seed=0)
        ds = build({"type": "synthetic", "root": tmp, "num_train": args.batch_size, "num_val": 1},
                   DATASETS, transform=build_transforms([], args.img_size), cache_images=True)
        batch = next(iter(build_dataloader(ds, batch_size=args.batch_size, shuffle=False, num_workers=0, seed=0)))
    targets = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
    return model, opt, batch["images"].to(device), targets


def timed_step(model: Any, opt: Any, images: Any, targets: list[dict], epsilon: float,
               sat: bool) -> tuple[float, float]:
    """One training step, with SAT's extra pass if ``sat``: (wall ms, CPU ms)."""
    import torch

    from facedet.engine.sat import adversarial_images

    if images.device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    x = adversarial_images(model, images, targets, epsilon=epsilon) if sat else images
    loss = model.loss(x, targets)["loss"]
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)


def main() -> None:
    args = parse_args()
    import torch

    from bench.common import print_header

    model, opt, images, targets = setup(args)
    step = functools.partial(timed_step, model, opt, images, targets, args.epsilon)
    print_header()
    print(f"device {torch.device(args.device)}")
    print(f"model {args.model}, {args.img_size} px, batch {args.batch_size}, epsilon {args.epsilon}, "
          f"{args.steps} timed steps per setting (interleaved, so load changes hit both alike)")
    for _ in range(2):  # warm-up
        step(False)
        step(True)
    plain, sat = [], []
    for _ in range(args.steps):
        plain.append(step(False))
        sat.append(step(True))
    pw, pc = statistics.median(p[0] for p in plain), statistics.median(p[1] for p in plain)
    sw, sc = statistics.median(s[0] for s in sat), statistics.median(s[1] for s in sat)
    print(f"without SAT: {pw:8.1f} ms/step wall, {pc:8.1f} ms CPU")
    print(f"with SAT   : {sw:8.1f} ms/step wall, {sc:8.1f} ms CPU  (x{sw / pw:.2f} wall, x{sc / pc:.2f} CPU; "
          f"at p = 0.5 about x{1 + 0.5 * (sc / pc - 1):.2f})")


if __name__ == "__main__":
    main()
