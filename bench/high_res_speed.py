"""Cost of aug.high_res per training batch on the facemask recipe: the loader's time (mosaic, HSV,
flip, to tensor) and the step's (forward, loss, backward, AdamW) at the deployment size, at the
high-res size, and in a fine-tune epoch (rendered at the high size, downsized on the device by the
high-res hook, stepped at the deployment size). One process, ``--threads`` torch threads, loader in
the main process, phases interleaved over ``--rounds``; times are this process's CPU seconds
(``time.process_time``), which other work on a shared machine does not inflate as it does the wall
clock (under ``nice -n 19`` on a busy machine the wall clock mostly measures waiting); prints
medians and the ratios to the recipe.

    nice -n 19 python bench/high_res_speed.py                       # experiment=facemask, 416 vs 320
    nice -n 19 python bench/high_res_speed.py --size 384 --batches 6 --rounds 5

The recipe trains with 2 threads and 1 loader worker, which overlaps loading with the step, so the
epoch time follows the step time where the step is the longer of the two (it is, see the output).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=416, help="aug.high_res.size")
    ap.add_argument("--batches", type=int, default=4, help="batches per phase and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (medians are printed)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("override", nargs="*", help="more config overrides, e.g. data.root=...")
    args = ap.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from facedet.builders import build_loaders
    from facedet.engine.data_hooks import resize_batch
    from facedet.engine.optim import build_optimizer
    from facedet.models import build_detector

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    def loader(high: int):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name="train", overrides=["experiment=facemask", f"aug.high_res.size={high}",
                                                          *args.override])
        train, _ = build_loaders(cfg.data, cfg.aug, batch_size=int(cfg.train.batch_size), val_batch_size=8,
                                 num_workers=0, seed=0)
        train.sampler.set_epoch(0)
        return cfg, iter(train)

    cfg, low_iter = loader(0)
    _, high_iter = loader(args.size)
    deploy = int(cfg.data.img_size)
    model = build_detector(cfg.model)
    model.train()
    optimizer = build_optimizer(model, cfg.optim)
    min_face = float(cfg.aug.get("min_face_size") or 0)

    def phase(it, downsize: bool) -> tuple[float, float]:
        data = step = 0.0
        for _ in range(args.batches):
            t0 = time.process_time()
            batch = next(it)
            if downsize:
                batch = resize_batch(batch, deploy, min_face_size=min_face)
            t1 = time.process_time()
            loss = model.loss(batch["images"], batch["targets"])["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            t2 = time.process_time()
            data, step = data + t1 - t0, step + t2 - t1
        return data / args.batches, step / args.batches

    phases = {f"recipe {deploy}": (low_iter, False), f"high-res {args.size}": (high_iter, False),
              f"fine-tune {args.size}->{deploy}": (high_iter, True)}
    phase(low_iter, False)  # warm-up (allocator, first-call costs)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in phases}
    for _ in range(args.rounds):
        for name, (it, down) in phases.items():
            times[name].append(phase(it, down))
    base = None
    print(f"batch {cfg.train.batch_size}, {args.threads} thread(s), loader in the main process, "
          f"{args.rounds} rounds x {args.batches} batches; CPU ms per batch (median)")
    for name, ts in times.items():
        d, s = statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)
        base = base or (d, s)
        print(f"{name:>22}: data {1000 * d:7.1f}  step {1000 * s:7.1f}  | x recipe: data {d / base[0]:.2f} "
              f"step {s / base[1]:.2f}")


if __name__ == "__main__":
    main()
