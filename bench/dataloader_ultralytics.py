"""The reference for bench/dataloader.py: ultralytics' training loader on the same data and settings
(mosaic 1.0, scale 0.5, translate 0.1, HSV 0.015/0.7/0.4, fliplr 0.5, images cached in RAM, 416 px).

    pip install --target /tmp/ul --no-deps ultralytics psutil   # kept out of the project's venv
    PYTHONPATH=/tmp/ul python bench/dataloader_ultralytics.py    # then python bench/dataloader.py

It writes YOLO labels for the facemask train split with facedet's converter and links the images
(read-only, not copied) into a temporary folder, since ultralytics finds labels beside ``images/``.
Run it next to bench/dataloader.py: on a shared machine only figures taken side by side compare.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import load_average, next_batch, print_header  # noqa: E402


def measure(it: Iterator, dl: Iterable, batches: int) -> tuple[Iterator, tuple[float, float]]:
    """(images/s wall, main-process CPU ms per image) over ``batches`` batches of ``it`` (``dl``
    starts over when it runs out), with the iterator to go on with."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    for _ in range(batches):
        it, b = next_batch(it, dl)
        n += len(b["img"])
    return it, (n / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(ROOT.parent / "shared/datasets/facemask/train"))
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    try:
        import ultralytics  # noqa: F401  (the version line names it; fail early if absent)
        from ultralytics.cfg import get_cfg
        from ultralytics.data.build import build_dataloader
        from ultralytics.data.dataset import YOLODataset
    except ImportError:
        sys.exit("ultralytics is not installed; see this script's docstring")
    import torch

    from facedet.data.convert import convert

    torch.set_num_threads(1)
    src = Path(args.root)
    tmp = Path(tempfile.mkdtemp(prefix="ul-bench-"))
    (tmp / "images").symlink_to(src / "images")
    convert("coco", src / "coco.json", src / "images", "yolo", tmp / "labels")
    hyp = get_cfg()
    ds = YOLODataset(img_path=str(tmp / "images"), imgsz=args.img_size, augment=True, hyp=hyp, rect=False,
                     cache="ram", batch_size=args.batch_size, stride=32,
                     data={"names": {0: "face"}, "nc": 1, "channels": 3}, prefix="bench: ")
    print_header("cv2", "albumentations", "ultralytics")
    print(f"ultralytics hyp: mosaic {hyp.mosaic}, scale {hyp.scale}, translate {hyp.translate}, degrees "
          f"{hyp.degrees}, hsv {hyp.hsv_h}/{hyp.hsv_s}/{hyp.hsv_v}, fliplr {hyp.fliplr}; {args.img_size} px")
    for w in args.workers:
        dl = build_dataloader(ds, batch=args.batch_size, workers=w, shuffle=True)
        it = iter(dl)
        next(it)
        res = []
        for _ in range(args.repeats):
            it, r = measure(it, dl, args.batches)
            res.append(r)
        ips = [r[0] for r in res]
        print(f"ultralytics workers={w}: {max(ips):7.1f} images/s best, {sum(ips) / len(ips):7.1f} mean "
              f"({', '.join(f'{x:.1f}' for x in ips)}); main-process CPU {min(r[1] for r in res):.2f} ms/image",
              flush=True)
        del it, dl
    print("load average after:", load_average())
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
