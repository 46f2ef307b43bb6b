"""Degenerate boxes in the IoU-family losses and in the full YOLO loss: is anything NaN or inf?

    python bench/reliability_loss.py                  # 10,000 pairs per case, seed 0
    python bench/reliability_loss.py --n 1000 --seed 3

Part 1: per case of degenerate box pairs (zero width / height / area, identical, aspect ratios 1e-6
and 1e6, 1e6 px outside, x2 < x1, coordinates up to 1e20, sides of 1e-12 px), per input dtype and
per measure (CIoU, DIoU, GIoU): max |loss|, max |d loss / d pred| and whether all are finite.
Part 2: ``YOLOLoss`` with its assigner on zero-size, huge, out-of-image, negative and sub-pixel
targets and raw maps of 0, +-1e4 or N(0, 1e4) logits, both ``wh_mode``s, with and without near cells,
at 128 and 2560 px (where float32 spacing exceeds 1e-4 px). ``tests/test_loss_degenerate.py`` runs
the same code on a smaller grid.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facedet.assign import YOLOv4Assigner  # noqa: E402
from facedet.losses import YOLOLoss, box_similarity  # noqa: E402
from facedet.models.heads.yolo_head import YOLOHead  # noqa: E402

KINDS = ("ciou", "diou", "giou")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
ANCHORS = [[6, 7, 10, 11, 15, 16], [19, 20, 24, 26, 31, 34], [41, 44, 56, 64, 105, 120]]


def _boxes(g: torch.Generator, n: int, size: float = 500.0) -> Tensor:
    """Ordinary xyxy boxes (float64): corners in [0, size), sides 1-200 px."""
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    return torch.cat((xy, xy + 1 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 199), 1)


def _with_wh(xy: Tensor, w: Tensor, h: Tensor) -> Tensor:
    return torch.stack((xy[:, 0], xy[:, 1], xy[:, 0] + w, xy[:, 1] + h), 1)


def _log_uniform(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return 10 ** (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64))


def _zero_side(g: torch.Generator, n: int, side: int) -> tuple[Tensor, Tensor]:
    p, t = _boxes(g, n, 5000.0), _boxes(g, n, 5000.0)  # beyond 2048 px float32 spacing exceeds 1e-4
    p[:, 2 + side] = p[:, side]
    return p, t


def _aspect(ratio: float) -> Callable[[torch.Generator, int], tuple[Tensor, Tensor]]:
    def make(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
        t = _boxes(g, n)
        h = _log_uniform(g, n, 0, 3)
        return _with_wh(t[:, :2], h * ratio, h), t

    return make


def _identical(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    b = _with_wh(_boxes(g, n)[:, :2] * _log_uniform(g, n, -12, 12)[:, None], *(_log_uniform(g, n, -12, 12),) * 2)
    return b, b.clone()


def _points(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    p, t = _boxes(g, n), _boxes(g, n)
    same = torch.rand(n, generator=g) < 0.5  # half of them the same point
    t[same] = p[same]
    return p[:, [0, 1, 0, 1]], t[:, [0, 1, 0, 1]]


def _far(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    p = _boxes(g, n)
    sign = torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0).double()
    return p + sign * 1e6, _boxes(g, n)


def _negative(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    p = _boxes(g, n)
    return p[:, [2, 3, 0, 1]], _boxes(g, n)  # x2 < x1 and y2 < y1


def _huge(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    s = _log_uniform(g, n, 6, 20)[:, None]
    return _boxes(g, n) * s, torch.where(torch.rand(n, 1, generator=g) < 0.5, _boxes(g, n) * s, _boxes(g, n))


def _tiny(g: torch.Generator, n: int) -> tuple[Tensor, Tensor]:
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 500
    p = _with_wh(xy, *(_log_uniform(g, n, -13, -11),) * 2)
    return p, torch.where(torch.rand(n, 1, generator=g) < 0.5, p[:, [0, 1, 0, 1]] + 1e-12, _boxes(g, n))


# case -> (generator, n) -> (pred, target) float64 xyxy
CASES: dict[str, Callable[[torch.Generator, int], tuple[Tensor, Tensor]]] = {
    "normal": lambda g, n: (_boxes(g, n), _boxes(g, n)),
    "zero_width": lambda g, n: _zero_side(g, n, 0),
    "zero_height": lambda g, n: _zero_side(g, n, 1),
    "zero_area_pred": lambda g, n: (_boxes(g, n, 5000.0)[:, [0, 1, 0, 1]], _boxes(g, n, 5000.0)),
    "zero_area_both": _points,
    "identical": _identical,
    "aspect_1e-6": _aspect(1e-6),
    "aspect_1e6": _aspect(1e6),
    "outside_1e6px": _far,
    "negative_wh": _negative,
    "huge_1e6-1e20": _huge,
    "tiny_1e-12": _tiny,
}


def measure(kind: str, pred: Tensor, target: Tensor, dtype: torch.dtype) -> tuple[float, float, bool]:
    """max |1 - kind| and max |its gradient w.r.t. pred| for float64 pairs cast to ``dtype`` (values
    beyond the dtype's range clamped to it: inputs must be finite), and whether all are finite."""
    top = torch.finfo(dtype).max / 4
    p = pred.clamp(-top, top).to(dtype).requires_grad_(True)
    loss = 1.0 - box_similarity(p, target.clamp(-top, top).to(dtype), kind)
    loss.sum().backward()
    finite = bool(torch.isfinite(loss).all() and torch.isfinite(p.grad).all())
    if not len(loss):
        return 0.0, 0.0, finite
    return float(loss.detach().abs().max()), float(p.grad.abs().max()), finite


def pair_grid(n: int, seed: int) -> list[dict]:
    """One row per (case, dtype): per measure max |loss|, max |grad|, finite."""
    rows = []
    for k, (case, make) in enumerate(CASES.items()):
        pred, target = make(torch.Generator().manual_seed(seed * 1000 + k), n)
        for dname, dtype in DTYPES.items():
            rows.append({"case": case, "dtype": dname} | {kind: measure(kind, pred, target, dtype) for kind in KINDS})
    return rows


# YOLO loss targets (input pixels of a 128 px image; shifted by 2300 px in the 2560 px one)
TARGETS = {
    "zero_size": [[10, 10, 10, 10], [20, 20, 20, 30], [5, 5, 15, 5]],
    "huge": [[0, 0, 1e6, 1e6], [-1e6, -1e6, 1e6, 1e6], [0, 0, 1e20, 1e20]],
    "out_of_image": [[-500, -500, -400, -400], [1e5, 1e5, 1e5 + 10, 1e5 + 10], [100, 0, 160, 30]],
    "negative_wh": [[30, 30, 10, 10]],
    "sub_pixel": [[50, 50, 50 + 1e-6, 50 + 1e-6], [60, 60, 60.5, 61]],
    "normal": [[10, 10, 40, 50], [70, 20, 90, 44]],
}
FILLS = ("0", "+1e4", "-1e4", "N(0,1e4)")


def yolo_loss_case(targets: list[list[float]], fill: str, *, wh_mode: str, near_cells: bool, size: int,
                   seed: int = 0) -> tuple[float, float, bool]:
    """Loss, max |grad| over the raw maps and finiteness of ``YOLOLoss`` on a batch of two images
    (the targets, and no faces) with raw maps filled as ``fill``."""
    g = torch.Generator().manual_seed(seed)
    head = YOLOHead(in_channels=[4, 4, 4], anchors=ANCHORS, strides=[8, 16, 32], wh_mode=wh_mode,
                    scale_x_y=2.0 if near_cells else 1.05)
    loss_fn = YOLOLoss(assigner=YOLOv4Assigner(near_cells=near_cells), decoder=head.decoding())
    raws = []
    for s in head.strides:
        shape = (2, 3, size // s, size // s, 5)
        raw = torch.randn(shape, generator=g) * 1e4 if fill == "N(0,1e4)" else torch.full(shape, float(fill))
        raws.append(raw.requires_grad_(True))
    boxes = torch.tensor(targets, dtype=torch.float64) + (size - 260 if size > 128 else 0)
    tg = [{"boxes": boxes.float(), "ignore": torch.zeros(len(boxes), dtype=torch.bool)},
          {"boxes": torch.zeros((0, 4)), "ignore": torch.zeros(0, dtype=torch.bool)}]
    out = loss_fn(raws, tg)
    out["loss"].backward()
    grad = max(float(r.grad.abs().max()) for r in raws)
    finite = bool(torch.isfinite(out["loss"])) and all(bool(torch.isfinite(r.grad).all()) for r in raws)
    return float(out["loss"].detach()), grad, finite


def yolo_grid(sizes: tuple[int, ...] = (128, 2560)) -> list[dict]:
    """One row per (target set, fill), over both wh modes, near cells on/off and ``sizes``."""
    rows = []
    for (name, targets), fill in itertools.product(TARGETS.items(), FILLS):
        runs = [yolo_loss_case(targets, fill, wh_mode=m, near_cells=nc, size=s)
                for m, nc, s in itertools.product(("exp", "sigmoid"), (False, True), sizes)]
        rows.append({"targets": name, "fill": fill, "runs": len(runs), "max_loss": max(abs(r[0]) for r in runs),
                     "max_grad": max(r[1] for r in runs), "finite": all(r[2] for r in runs)})
    return rows


def main() -> None:
    from bench.common import fuzz_args

    args = fuzz_args(__doc__, n=10_000, n_help="box pairs per case")
    torch.set_num_threads(1)
    rows = pair_grid(args.n, args.seed)
    print(f"\nIoU-family losses: {args.n} pairs per case and dtype; max |loss|, max |d loss/d pred|, finite")
    head = f"{'case':16s} {'dtype':9s}"
    head += "".join(f" | {k + ' max|L|':>12s} {'max|grad|':>9s} {'ok':>3s}" for k in KINDS)
    print(head + "\n" + "-" * len(head))
    for r in rows:
        cells = "".join(f" | {r[k][0]:12.4g} {r[k][1]:9.3g} {'yes' if r[k][2] else 'NO':>3s}" for k in KINDS)
        print(f"{r['case']:16s} {r['dtype']:9s}{cells}")
    bad = sum(not r[k][2] for r in rows for k in KINDS)
    print(f"non-finite (case, dtype, measure) cells: {bad} of {len(rows) * len(KINDS)}")

    yrows = yolo_grid()
    print("\nYOLOLoss + YOLOv4Assigner: batch of 2 (targets, empty), exp/sigmoid x near cells x 128/2560 px")
    print(f"{'targets':14s} {'raw logits':10s} {'runs':>4s} {'max|loss|':>10s} {'max|grad|':>10s} finite")
    for r in yrows:
        print(f"{r['targets']:14s} {r['fill']:10s} {r['runs']:4d} {r['max_loss']:10.4g} {r['max_grad']:10.3g} "
              f"{'yes' if r['finite'] else 'NO'}")
    ybad = sum(not r["finite"] for r in yrows)
    print(f"non-finite YOLO loss rows: {ybad} of {len(yrows)}")
    sys.exit(1 if bad or ybad else 0)


if __name__ == "__main__":
    main()
