"""The synthetic hyperparameter search (configs/hparams_search/synthetic.yaml: at least 6 short
trials of real training, NSGA-II, median pruning) through the tune command, then its trials table
and the best trial.

    python bench/tune_search.py                       # a fresh study in runs/bench-tune/<time>
    python bench/tune_search.py hparams_search.n_trials=8 hparams_search.sampler.type=tpe ...

Extra arguments go to tools/tune.py. The study folder is new on every run (a rerun of the same
folder would resume the study and have nothing left to do).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, print_header  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench-tune", help="the study folder goes to OUT/<date_time>")
    ap.add_argument("overrides", nargs="*", help="extra tools/tune.py overrides")
    args = ap.parse_args()
    print_header("optuna", "plotly")
    study_dir = (Path(args.out) / time.strftime("%Y-%m-%d_%H-%M-%S")).absolute()
    cmd = [sys.executable, "tools/tune.py", "hparams_search=synthetic", f"hydra.run.dir={study_dir}", *args.overrides]
    print(f"tune command: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        print(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
        sys.exit(1)
    print(f"study folder: {study_dir}  wall {wall:.0f} s (rendering the synthetic set included on a first run)")
    with open(study_dir / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"\n{'trial':>5} {'state':<9} {'AP50':>7} {'epochs':>8} {'seconds':>8}  params")
    for r in rows:
        value = f"{float(r['value']):.4f}" if r["value"] else "-"
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in json.loads(r["params"]).items())
        print(f"{r['number']:>5} {r['state']:<9} {value:>7} {r['epochs_reported'] or '-':>8} "
              f"{r['seconds'] or '-':>8}  {params}")
    states = [r["state"] for r in rows]
    print(f"\n{states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, {states.count('FAIL')} failed")
    print("\n".join(line for line in proc.stdout.splitlines() if line.startswith("facedet: ")))
    print(f"\nbest experiment file ({study_dir / 'best_experiment.yaml'}):\n"
          + (study_dir / "best_experiment.yaml").read_text())


if __name__ == "__main__":
    main()
