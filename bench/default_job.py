"""The default job (README command 1) over several seeds: AP50, AP50:95 and wall time per seed, and
their range, which is what the README states.

    python bench/default_job.py                    # seeds 0 1 2, one after the other
    python bench/default_job.py --seeds 3 4 key=value ...   # extra overrides go to tools/train.py

Each seed runs `python tools/train.py seed=N` in a subprocess, alone (run nothing else meanwhile:
the wall time is part of the result), into runs/bench-default/seed<N>. The synthetic images are
rendered before the first seed, so every wall time is that of a run whose data already exists;
the rendering time is printed separately (the README's first run pays it once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, print_header  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/bench-default", help="run directories go to OUT/seed<N>")
    ap.add_argument("overrides", nargs="*", help="extra tools/train.py overrides")
    args = ap.parse_args()
    print_header("cv2", "albumentations")

    from facedet.data import ensure_synthetic

    start = time.perf_counter()
    ensure_synthetic(ROOT / "data" / "synthetic")  # the default data config's root and parameters
    print(f"synthetic images ready in {time.perf_counter() - start:.0f} s (0 when already rendered)")

    rows = []
    for seed in args.seeds:
        run_dir = Path(args.out).absolute() / f"seed{seed}"
        cmd = [sys.executable, "tools/train.py", f"seed={seed}", f"hydra.run.dir={run_dir}", *args.overrides]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            print(f"seed {seed}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
            rows.append((seed, float("nan"), float("nan"), wall, load))
            continue
        best = json.loads((run_dir / "metrics.json").read_text())["best"]
        rows.append((seed, best["AP50"], best["AP"], wall, load))
        print(f"seed {seed}: AP50 {best['AP50']:.4f}  AP50:95 {best['AP']:.4f}  wall {wall:.0f} s  "
              f"(load average at start {load:.2f})  {' '.join(cmd[1:])}", flush=True)

    ap50 = [r[1] for r in rows]
    aps = [r[2] for r in rows]
    walls = [r[3] for r in rows]
    print(f"AP50 {min(ap50):.3f}-{max(ap50):.3f} (mean {sum(ap50) / len(ap50):.3f}), "
          f"AP50:95 {min(aps):.3f}-{max(aps):.3f}, wall {min(walls):.0f}-{max(walls):.0f} s "
          f"over seeds {' '.join(str(r[0]) for r in rows)}")


if __name__ == "__main__":
    main()
