"""The small-face ablation of issue 16 on facemask val: the recipe before it (``BASE``), each
option alone, and any combination given, over seeds, each run in the recipe's 40-minute budget on
2 CPU cores (rows that cost more per epoch train fewer epochs: see ``ROWS``).

    python bench/small_faces_ablation.py                          # every row, seed 0
    python bench/small_faces_ablation.py --rows recipe p2 --seeds 0 1 2
    python bench/small_faces_ablation.py --rows distill --teacher runs/facemask-teacher/checkpoints/best.pt
    python bench/small_faces_ablation.py --row combo model.loss.box_weight_by_size=true aug.copy_paste.p=0.5

Runs go to ``OUT/<row>/seed<N>`` and are never repeated: a finished run (its metrics.json says so)
is read back, an interrupted one resumes from its last.pt. The table is the model after the last
epoch (not best.pt, which is chosen on the same val images): AP50, AP50:95, AP50 of faces under 16
px (``AP50_tiny``), and the training wall time (the budget is 40 minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, print_header  # noqa: E402

# Every row's base: the facemask recipe as it was when the ablation ran. Its result then doubled the
# recipe's box weight (experiment=facemask has box_weight 0.1 since: the row "box_weight_0.1"), so the
# old weight is pinned here to keep the rows measuring one change each against the same base.
BASE = ["experiment=facemask", "model.loss.box_weight=0.05"]

# Row -> overrides on top of BASE (35 epochs of yolov4_nano at 320 px: 37 minutes).
# Epochs are cut where a row costs more per epoch (the per-epoch ratios measured by the helper
# benches: bench/p2_speed.py 1.11x, bench/high_res_speed.py 1.6x at 384, oversampling 1.19x images).
ROWS: dict[str, list[str]] = {
    "recipe": [],
    "p2": ["model=yolov4_nano_p2", "anchors=facemask_320_p2", "train.epochs=32"],
    "copy_paste": ["aug.copy_paste.p=0.5"],
    "oversample": ["aug.oversample.enabled=true", "train.epochs=30"],
    "scale_aware": ["model.loss.assigner.type=scale_aware"],
    "box_weight_by_size": ["model.loss.box_weight_by_size=true"],
    "box_weight_0.1": ["model.loss.box_weight=0.1"],  # the control: on facemask the size weight is ~2x
    "ohem": ["model.loss.obj_mining={type: ohem}"],
    "high_res": ["aug.high_res.size=384", "aug.high_res.finetune_epochs=5", "train.epochs=23"],
    "distill": [],  # + distill.teacher=<--teacher>; the student's epochs: --distill-epochs
}
METRICS = ("AP50", "AP", "AP50_tiny")


def run_row(name: str, overrides: list[str], seed: int, out: Path, test_sizes: list[int]) -> dict | None:
    """Train one row and seed (or read it back when done); its final metrics and wall time, plus
    ``final@<size>``: the last model tested at each of ``test_sizes`` (free at training time)."""
    run_dir = (out / name / f"seed{seed}").absolute()
    metrics = run_dir / "metrics.json"
    if not metrics.exists() or json.loads(metrics.read_text()).get("interrupted"):
        last = run_dir / "checkpoints" / "last.pt"
        resume = [f"train.resume={last}"] if last.exists() else []
        cmd = [sys.executable, "tools/train.py", *BASE, *overrides, f"seed={seed}",
               f"hydra.run.dir={run_dir}", "train.vis_images=0", *resume]
        if not call(cmd):
            return None
    result = json.loads(metrics.read_text())
    for size in test_sizes:
        sized = run_dir / f"test{size}" / "metrics.json"
        if not sized.exists():
            call([sys.executable, "tools/eval.py", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}",
                  f"img_size={size}", f"hydra.run.dir={sized.parent}"])
        if sized.exists():
            result[f"final@{size}"] = json.loads(sized.read_text())
    return result


def call(cmd: list[str]) -> bool:
    """Run one facedet command from the project root; False (and its last error line) on failure."""
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        print(f"  exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return proc.returncode == 0


def summary(values: list[float]) -> str:
    """``mean (min-max)`` over seeds, or the one value."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="*", default=[r for r in ROWS if r != "distill"], choices=list(ROWS))
    ap.add_argument("--row", nargs="+", metavar=("NAME", "OVERRIDE"), help="an extra row: a name and its overrides")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--teacher", help="the teacher checkpoint of the distill row")
    ap.add_argument("--distill-epochs", type=int, default=14,
                    help="the distilled student's epochs: 14 for a yolov4_csp_s teacher (2.6x per step), "
                         "25 for a yolov4_nano x0.375 one (1.41x)")
    ap.add_argument("--out", default="runs/ablation-small-faces")
    ap.add_argument("--test-sizes", nargs="*", type=int, default=[416],
                    help="also test each row's last model at these sizes (the recipe trains at 320)")
    ap.add_argument("--common", nargs="*", default=[],
                    help="overrides added to every row, e.g. train.threads=1 to run two benches side by side")
    args = ap.parse_args()
    print_header()
    rows = {r: list(ROWS[r]) for r in args.rows}
    if "distill" in rows:
        if not args.teacher:
            ap.error("the distill row needs --teacher <checkpoint>")
        rows["distill"] = [f"distill.teacher={Path(args.teacher).absolute()}", f"train.epochs={args.distill_epochs}"]
    if args.row:
        rows[args.row[0]] = args.row[1:]
    rows = {name: overrides + args.common for name, overrides in rows.items()}
    results: dict[str, list[dict]] = {}
    for name, overrides in rows.items():
        for seed in args.seeds:
            m = run_row(name, overrides, seed, Path(args.out), args.test_sizes)
            if m is not None:
                results.setdefault(name, []).append(m)
    columns = [("final", k, k) for k in METRICS] + [
        (f"final@{s}", k, f"{k} @{s}") for s in args.test_sizes for k in METRICS]
    print(f"\n| row | overrides | seeds | {' | '.join(c[2] for c in columns)} | minutes |")
    print("|---|---|---|" + "---|" * (len(columns) + 1))
    for name, runs in results.items():
        cells = [summary([float(r.get(part, {}).get(k, float("nan"))) for r in runs]) for part, k, _ in columns]
        minutes = summary([r["train_seconds"] / 60 for r in runs])
        print(f"| {name} | `{' '.join(rows[name]) or '-'}` | {len(runs)} | {' | '.join(cells)} | {minutes} |")


if __name__ == "__main__":
    main()
