"""Training throughput on a machine that another process shares: images/s idle and with one busy
competitor (a ``nice -n 19`` pure-Python loop, started and killed here in a session of its own, as
from another terminal: see docs/ENGINE.md, "Busy machines"), for facedet's CPU thread
policy (``new``, facedet/threads.py) and for the settings before it (``old``: torch's and
OpenMP's own defaults, i.e. ``FACEDET_THREAD_POLICY=off``).

    python bench/contention.py                                  # yolov4_nano, 256 px, batch 16, 2 workers
    python bench/contention.py --size 320 --steps 40 --policy new
    python bench/contention.py --policy old new --env OMP_WAIT_POLICY=ACTIVE   # try another setting

Each (policy, load) runs in a fresh process (OpenMP reads its settings once, when torch loads),
which renders nothing: the synthetic set is generated once into ``--data`` (a temporary folder by
default). The workload is the default job's training step (model, AdamW, loader with
``train.num_workers`` workers, mosaic-free default augmentation) timed over ``--steps`` batches
after ``--warmup``; the data wait counts, as in training. Prints one line per run with the load
average before it (other work on the machine moves the figures), then busy/idle per policy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUSY_LOOP = "while True: pass"


def overrides(args: argparse.Namespace) -> list[str]:
    n_train = args.batch * (args.warmup + args.steps)
    return [f"model={args.model}", "data=synthetic", f"data.root={args.data}", f"data.num_train={n_train}",
            "data.num_val=8", f"data.img_size={args.size}", f"train.batch_size={args.batch}",
            f"train.num_workers={args.workers}", *args.override]


def child(args: argparse.Namespace) -> None:
    """One measurement in this process: images/s of ``--steps`` training steps after ``--warmup``."""
    import torch
    from hydra import compose, initialize_config_dir

    from facedet.builders import build_loaders
    from facedet.engine.optim import build_optimizer
    from facedet.engine.trainer import Trainer
    from facedet.models import build_detector

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides(args))
    if cfg.train.threads:  # as run_training applies it
        torch.set_num_threads(int(cfg.train.threads))
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    train_loader, _ = build_loaders(cfg.data, cfg.aug, batch_size=int(cfg.train.batch_size),
                                    val_batch_size=int(cfg.eval.batch_size), num_workers=int(cfg.train.num_workers),
                                    seed=int(cfg.seed))
    trainer = Trainer(model=model, optimizer=build_optimizer(model, cfg.optim),
                      train_loader=train_loader, device=torch.device("cpu"), max_epochs=1, base_lr=cfg.optim.lr,
                      lr_factor=lambda s: 1.0, grad_clip=10.0)
    model.train()
    train_loader.sampler.set_epoch(0)
    done, t0 = 0, 0.0
    for batch in train_loader:
        trainer.run_step(batch)
        done += 1
        if done == args.warmup:
            t0 = time.perf_counter()
        if done == args.warmup + args.steps:
            break
    secs = time.perf_counter() - t0
    from facedet.data.loader import shutdown_workers

    shutdown_workers(train_loader)
    print(json.dumps({"images_per_s": args.steps * args.batch / secs, "s_per_step": secs / args.steps,
                      "torch_threads": torch.get_num_threads(),
                      "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}}))


def policy_env(policy: str, extra: list[str]) -> dict[str, str]:
    """The child's environment: OpenMP's own defaults (old) or facedet's (new), set before it starts,
    as facedet/__init__.py sets them before torch loads; ``--env`` on top."""
    from facedet.threads import SWITCH, apply_env_defaults

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", SWITCH))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(kv.split("=", 1) for kv in extra)
    if policy == "old":
        env[SWITCH] = "off"
    else:
        apply_env_defaults(env)
    return env


def run_one(args: argparse.Namespace, policy: str, busy: bool) -> dict:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # a session of its own, as a process started from another terminal: with the kernel's autogroup
    # scheduling (sched_autogroup_enabled=1) its nice value then weighs only within that session
    hogs = [subprocess.Popen(["nice", "-n", str(args.nice), sys.executable, "-c", BUSY_LOOP],
                             start_new_session=not args.same_session)
            for _ in range(args.competitors if busy else 0)]
    try:
        cmd = [sys.executable, __file__, "--child", "--data", args.data, *sys.argv[1:]]
        out = subprocess.run(cmd, env=policy_env(policy, args.env), capture_output=True, text=True,
                             timeout=args.timeout)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if out.returncode != 0:
        raise SystemExit(f"{policy} {'busy' if busy else 'idle'} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result | {"load": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolov4_nano")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="train.num_workers (the default job's 2)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--policy", nargs="+", default=["old", "new"], choices=["old", "new"])
    ap.add_argument("--competitors", type=int, default=1, help="busy processes in the 'busy' runs")
    ap.add_argument("--nice", type=int, default=19, help="their nice value")
    ap.add_argument("--same-session", action="store_true",
                    help="start the competitors in this session (their nice value then counts against training)")
    ap.add_argument("--data", default=None, help="synthetic set folder (default: a temporary one)")
    ap.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="extra environment for the runs")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("override", nargs="*", help="extra Hydra overrides, e.g. train.threads=1")
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from bench.common import print_header

    with tempfile.TemporaryDirectory(prefix="facedet-contention-") as tmp:
        args.data = args.data or str(Path(tmp) / "synthetic")
        from facedet.data.synthetic import ensure_synthetic

        ensure_synthetic(args.data, num_train=args.batch * (args.warmup + args.steps), num_val=8)
        print_header("hydra")
        print(f"{args.model} {args.size} px, batch {args.batch}, {args.workers} loader workers, {args.steps} timed "
              f"steps after {args.warmup}; busy: {args.competitors} x nice -n {args.nice} python -c '{BUSY_LOOP}'"
              + (f"; extra env {' '.join(args.env)}" if args.env else ""))
        ratios = {}
        for policy in args.policy:
            rates = {}
            for busy in (False, True):
                r = run_one(args, policy, busy)
                rates[busy] = r["images_per_s"]
                env = " ".join(f"{k}={v}" for k, v in r["env"].items() if v is not None) or "-"
                print(f"{policy:3s} {'busy' if busy else 'idle'}  {r['images_per_s']:7.2f} img/s  "
                      f"{r['s_per_step']:6.3f} s/step  torch threads {r['torch_threads']}  [{env}]  "
                      f"load average before: {r['load']}", flush=True)
            ratios[policy] = rates[True] / rates[False]
        print("busy/idle: " + ", ".join(f"{p} {v:.0%}" for p, v in ratios.items()))


if __name__ == "__main__":
    main()
