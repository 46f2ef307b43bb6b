"""The runs of bench/reliability_checkpoints.py: the tiny training config, a child run driven to its
end or killed where it pauses (bench/reliability_ckpt_child.py), the uninterrupted reference run,
and the comparison of two runs' final state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, STEPS = 4, 24  # 24 images / batch 4 = 6 batches per epoch, 2 per optimizer step


def overrides(data_root: Path, *extra: str, width: float = 0.125) -> list[str]:
    return [f"data.root={data_root}", "data.num_train=24", "data.num_val=4", "data.img_size=64",
            f"model.backbone.width={width}", "model.neck.width=0.25", "train.batch_size=4",
            "train.nominal_batch_size=8", f"train.epochs={EPOCHS}", "train.eval_interval=1", "train.save_interval=2",
            "train.num_workers=0", "train.threads=1", "train.deterministic=true", "train.tensorboard=false",
            "train.vis_images=0", "schedule.warmup_min_steps=4", "train.ema.tau=10", *extra]


def compose(overrides_: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides_)


def start_child(run_dir: Path, overrides_: list[str], pause: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "bench.reliability_ckpt_child", str(run_dir),
                             json.dumps(overrides_), pause],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("a"), text=True)


def _read_line(line: str, out: dict[str, Any]) -> bool:
    """Note what a child's output ``line`` says in ``out``; True where it paused."""
    out["log"].append(line)
    if line.startswith("SAVED "):
        _, name, _, step = line.split()
        out["saved"][name] = int(step)
    elif line.startswith("COUNTS "):
        _, _, evals, _, writes = line.split()
        out["evals"], out["writes"] = int(evals), int(writes)
    return line.startswith("PAUSED ")


def run_child(run_dir: Path, overrides_: list[str], pause: str = "none", *, kill: bool = False) -> dict[str, Any]:
    """Run a child to its end, or (``kill``) until it pauses, then SIGKILL it. Returns what it said."""
    proc = start_child(run_dir, overrides_, pause, run_dir.parent / f"{run_dir.name}.stderr")
    out: dict[str, Any] = {"saved": {}, "log": [], "paused": None}
    try:
        for line in proc.stdout:
            if _read_line(line.rstrip("\n"), out) and kill:
                out["paused"] = out["log"][-1][7:]
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and kill:
            proc.kill()
        proc.wait()
    out["rc"] = proc.returncode
    return out


def reference_run(work: Path) -> tuple[Path, dict[str, Any]]:
    """The uninterrupted run (made once per work folder) and its evaluation and write counts."""
    ref = work / "reference"
    if not (ref / "metrics.json").is_file():
        out = run_child(ref, overrides(work / "data"))
        if out["rc"] != 0:
            sys.exit(f"the reference run failed (rc {out['rc']}); see {work / 'reference.stderr'}")
        (work / "reference.json").write_text(json.dumps({"evals": out["evals"], "writes": out["writes"]}))
    return ref, json.loads((work / "reference.json").read_text())


def state_tensors(ckpt: dict) -> dict[str, Any]:
    """What a continued run depends on: weights, EMA, optimizer state."""
    import torch

    out = {f"model.{k}": v for k, v in ckpt["model"].items()}
    out |= {f"ema.{k}": v for k, v in ckpt["hooks"]["ema"]["module"].items()}
    for pid, st in ckpt["optimizer"]["state"].items():
        out |= {f"opt.{pid}.{k}": v for k, v in st.items() if torch.is_tensor(v)}
    return out


def compare_runs(ref: Path, other: Path) -> tuple[bool, str]:
    """(identical, description) for the final last.pt and the evaluation history of two runs."""
    import torch

    from facedet.checkpoint import load_checkpoint

    a, b = (load_checkpoint(d / "checkpoints" / "last.pt") for d in (ref, other))
    ta, tb = state_tensors(a), state_tensors(b)
    differ = [k for k in ta if k not in tb or not torch.equal(ta[k], tb[k])]
    position = all(a[k] == b[k] for k in ("step", "optimizer_steps", "epoch"))
    ha, hb = ([(h["epoch"], h["AP50"], h["AP"]) for h in json.loads((d / "metrics.json").read_text())["history"]]
              for d in (ref, other))
    ok = not differ and position and ha == hb
    return ok, (f"{len(ta) - len(differ)}/{len(ta)} tensors identical, step {b['step']}, "
                f"history {'equal' if ha == hb else f'DIFFERS {ha} vs {hb}'}")
