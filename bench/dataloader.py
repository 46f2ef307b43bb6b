"""Training data loader throughput: images/s of the real training pipeline for 0, 1 and 2 workers.

    python bench/dataloader.py                       # facemask, aug=mosaic (mosaic + affine + HSV + flip) at 416
    python bench/dataloader.py --data synthetic --img-size 320 --aug default --workers 0 1

The pipeline is built exactly as tools/train.py builds it (Hydra config, dataset, mosaic wrapper,
transforms, collate into float tensors). The first batch (worker start-up) is not timed. Prints the
command, library versions, the machine and its load average: on a shared machine the figures move
with the load, so compare runs taken side by side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import load_average, next_batch, print_header  # noqa: E402


def build_loader(args: argparse.Namespace, workers: int):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from facedet.builders import build_dataset
    from facedet.data import build_dataloader, wrap_train_dataset

    overrides = [f"data={args.data}", f"aug={args.aug}", f"data.img_size={args.img_size}"] + args.override
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    ds = build_dataset(cfg.data.train, img_size=cfg.data.img_size, aug=cfg.aug.train, cache_images=True,
                       where="data.train", min_face_size=float(cfg.aug.get("min_face_size") or 0))
    ds = wrap_train_dataset(ds, OmegaConf.to_container(cfg.aug, resolve=True), img_size=int(cfg.data.img_size))
    return build_dataloader(ds, batch_size=args.batch_size, shuffle=True, num_workers=workers, seed=0,
                            drop_last=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _worker_cpu(it) -> float:
    return sum(_cpu_seconds(w.pid) for w in getattr(it, "_workers", []))


def measure(loader, batches: int) -> tuple[float, float, float]:
    """(images/s wall, main-process CPU ms per image, worker CPU ms per image) over ``batches``
    batches after the first. CPU times do not depend on how busy the machine is; images/s does."""
    gen = iter(loader)
    next(gen)  # worker start-up and first fill: not timed
    inner = loader._iterator if loader.num_workers else None  # the workers of the persistent iterator
    n, t0, c0, w0 = 0, time.perf_counter(), time.process_time(), _worker_cpu(inner)
    for _ in range(batches):
        gen, batch = next_batch(gen, loader)
        n += len(batch["images"])
    wall, cpu, wcpu = time.perf_counter() - t0, time.process_time() - c0, _worker_cpu(inner) - w0
    return n / wall, 1000 * cpu / n, 1000 * wcpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="facemask", help="data config (configs/data/*.yaml)")
    ap.add_argument("--aug", default="mosaic", help="aug config (configs/aug/*.yaml)")
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per setting")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting (the best is reported too)")
    ap.add_argument("override", nargs="*", help="extra Hydra overrides, e.g. aug.mosaic.degrees=5")
    args = ap.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)  # as inside loader workers; the main process only collates here
    cv2.setNumThreads(1)
    print_header("cv2", "albumentations")
    print(f"pipeline: data={args.data} aug={args.aug} img_size={args.img_size} batch_size={args.batch_size}, "
          f"{args.batches} timed batches x {args.repeats} runs per setting")
    for workers in args.workers:
        loader = build_loader(args, workers)
        runs = [measure(loader, args.batches) for _ in range(args.repeats)]
        ips = [r[0] for r in runs]
        main_ms, worker_ms = min(r[1] for r in runs), min(r[2] for r in runs)
        print(f"workers={workers}: {max(ips):7.1f} images/s best, {sum(ips) / len(ips):7.1f} mean "
              f"({', '.join(f'{x:.1f}' for x in ips)}); CPU per image: main process {main_ms:.2f} ms, "
              f"workers {worker_ms:.2f} ms", flush=True)
        del loader
    print("load average after:", load_average())


if __name__ == "__main__":
    main()
