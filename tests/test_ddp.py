"""DDP on CPU: ``torchrun --nproc_per_node=2 tools/train.py`` with gloo trains a few steps; both
ranks end with bit-identical weights, evaluation covers every val image once (gathered across
ranks), and only rank 0 wrote checkpoints and logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facedet.checkpoint import load_checkpoint
from facedet.engine.distributed import state_digest

ROOT = Path(__file__).resolve().parents[1]
NUM_VAL = 5  # odd: the two ranks evaluate 3 and 2 images


def test_two_gloo_processes_stay_identical_and_only_rank0_writes(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(ROOT / "tools" / "train.py"),
        f"data.root={tmp_path / 'data'}", "data.num_train=16", f"data.num_val={NUM_VAL}", "data.img_size=64",
        "train.batch_size=8", "train.nominal_batch_size=16", "train.epochs=2", "train.num_workers=0",
        "train.threads=1", "train.vis_images=2", "train.log_interval=1", "device=cpu", f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ddp"]["backend"] == "gloo"
    assert metrics["steps"] == 2 * 2 and metrics["optimizer_steps"] == 2  # 4 images per rank, 2 batches a step
    rank0, rank1 = metrics["ddp"]["weight_digests"]
    assert rank0 == rank1, "the ranks ended with different weights"
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    saved = state_digest(ckpt["model"]) + state_digest(ckpt["hooks"]["ema"]["module"])
    assert saved == rank0  # and they are the weights rank 0 saved
    assert len(ckpt["rng"]) == 2  # every rank's random state, for an exact DDP resume

    # every val image evaluated exactly once across the two shards
    preds = json.loads((run_dir / "predictions.json").read_text())
    assert {p["image_id"] for p in preds} == set(range(1, NUM_VAL + 1))

    # only rank 0 wrote: one run dir, one log, one TensorBoard file, nothing else in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(list((run_dir / "tb").iterdir())) == 1
    log = (run_dir / "train.log").read_text()
    assert log.count("distributed: 2 processes, backend gloo") == 1
    assert log.count("model yolov4_nano on cpu:") == 1 and log.count("epoch 2/2") == 1


# The trainer's shape in small: DDP (which imports torch._dynamo, and with it torch.distributed.nn, after
# the group exists) held by a reference cycle, an object collective, then cleanup.
_CLEANUP_SCRIPT = """
import torch
from facedet.engine import distributed as du

du.init_distributed(torch.device("cpu"))
class Holder:
    pass
h = Holder()
h.me = h
h.ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
h.ddp(torch.ones(1, 2)).sum().backward()
du.all_gather_objects(du.get_rank())
del h
before = du.gloo_threads()
du.cleanup()
print(f"gloo threads {before} -> {du.gloo_threads()}", flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux /proc")
def test_cleanup_joins_gloo_threads(tmp_path):
    """A gloo thread alive at interpreter exit can abort the process (du.cleanup's docstring): after
    cleanup none may be left, even with DDP, which used to keep the group alive."""
    script = tmp_path / "cleanup.py"
    script.write_text(_CLEANUP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    counts = [(int(a), int(b)) for a, b in re.findall(r"gloo threads (\d+) -> (\d+)", proc.stdout)]
    assert len(counts) == 2, proc.stdout
    assert all(before > 0 and after == 0 for before, after in counts), counts


@pytest.mark.slow
def test_ddp_run_resumes(tmp_path):
    """A 2-process run resumed under torchrun with one more epoch (each rank restores its own RNG)."""
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(ROOT / "tools" / "train.py"), f"data.root={tmp_path / 'data'}", "data.num_train=16", "data.num_val=4",
            "data.img_size=64", "train.batch_size=8", "train.nominal_batch_size=0", "train.num_workers=0",
            "train.threads=1", "device=cpu"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    first = subprocess.run(base + ["train.epochs=1", f"hydra.run.dir={tmp_path / 'a'}"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    second = subprocess.run(base + ["train.epochs=2", f"train.resume={tmp_path / 'a' / 'checkpoints' / 'last.pt'}",
                                    f"hydra.run.dir={tmp_path / 'b'}"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-4000:]
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["ddp"]["identical"] and metrics["resumed_from"]
