"""Seconds per training step of the facemask student (yolov4_nano) alone, of the teacher
(yolov4_csp_s) trained alone, and of the student with distillation from that teacher: random images,
batch 8 at 320 px (the facemask recipe), forward + loss + backward + optimizer step, on ``--threads``
CPU threads. The data loading, evaluation and EMA of a real epoch are not timed, so the ratios are an
upper bound on the change of a whole epoch's time.

    python bench/distill_speed.py --threads 1 --steps 5
    python bench/distill_speed.py --teacher runs/facemask-tuned/<run>/checkpoints/last.pt   # a trained teacher

With ``--teacher`` the teacher is that facedet checkpoint (its EMA weights, as ``distill.teacher`` loads
it) and the "teacher trained alone" column times training its raw weights.

Prints the command, versions and machine, then the median seconds per step of each and the median of its
ratio to the student's in the same round (the three run in turn, so a change of load hits all alike).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_header  # noqa: E402


def _model(name: str, size: int) -> torch.nn.Module:
    from hydra import compose, initialize_config_dir

    from facedet.models import build_detector

    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=facemask", f"model={name}",
                                                      f"data.img_size={size}"])
    return build_detector(cfg.model)


def _stepper(model: torch.nn.Module, images: torch.Tensor, targets: list) -> Callable[[], float]:
    """One timed training step of ``model`` per call (seconds)."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad()
        model.loss(images, targets)["loss"].backward()
        opt.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="timed steps of each (after one warm-up step)")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--teacher", help="a facedet checkpoint to teach (default: a fresh yolov4_csp_s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print_header()
    from facedet.losses.distill import DistillLoss

    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size)
    box = torch.tensor([[100.0, 100.0, 122.0, 124.0], [200.0, 40.0, 214.0, 56.0]])
    targets = [{"boxes": box, "labels": torch.zeros(2, dtype=torch.int64), "ignore": torch.zeros(2, dtype=bool),
                "landmarks": torch.full((2, 5, 2), float("nan"))} for _ in range(args.batch)]
    student = _model("yolov4_nano", args.size)
    if args.teacher:
        from facedet.engine.distill import load_teacher
        from facedet.inference import load_detector

        frozen = load_teacher(args.teacher)
        teacher = load_detector(args.teacher, use_ema=False)[0]
        teacher.requires_grad_(True)
    else:
        teacher = _model("yolov4_csp_s", args.size)
        frozen = copy.deepcopy(teacher)  # the distillation's teacher: eval mode, frozen (the other one trains)
    distilled = copy.deepcopy(student)
    distilled.loss_fn = DistillLoss(base=distilled.loss_fn, teacher=frozen, teacher_decoder=frozen.head.decoding())
    steppers = {"student": _stepper(student, images, targets),
                "teacher trained alone": _stepper(teacher, images, targets),
                "student with distillation": _stepper(distilled, images, targets)}
    for step in steppers.values():  # warm-up
        step()
    # round robin, so that a change of the machine's load hits all three alike; ratios per round
    rounds = [{name: step() for name, step in steppers.items()} for _ in range(args.steps)]
    parts = [f"{name} {statistics.median(r[name] for r in rounds):.3f}"
             f" ({statistics.median(r[name] / r['student'] for r in rounds):.2f}x)" for name in steppers]
    print(f"s/step (batch {args.batch}, {args.size} px, {args.threads} threads, median of {args.steps} rounds): "
          + " | ".join(parts))

if __name__ == "__main__":
    main()
