"""Part (c) of bench/reliability_checkpoints.py: ENOSPC half-way through a checkpoint write, over an
existing last.pt and inside a training run (which must stop with the one-line error, keep a loadable
last.pt, and resume exactly)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.reliability_ckpt_runs import compare_runs, compose, overrides, reference_run


class _FullDisk:
    """Stands in for ``checkpoint._write``: the ``at``-th write (counted in ``n``) puts 1004 bytes on
    disk, then fails with ENOSPC; the others write as ``real`` does."""

    def __init__(self, real: Any) -> None:
        self.real, self.n, self.at = real, 0, 1

    def __call__(self, obj: dict, f: Any) -> None:
        self.n += 1
        if self.n == self.at:
            f.write(b"PK\x03\x04" + bytes(1000))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(obj, f)


def _save_over_last(folder: Path) -> dict[str, Any]:
    """The disk fills while last.pt (step 1) is overwritten: the error says so, the old one stays."""
    import facedet.checkpoint as ck

    try:
        ck.save_checkpoint({"step": 2}, folder / "last.pt")
        msg = "no error"
    except ck.CheckpointError as e:
        msg = str(e)
    ok = ck.load_checkpoint(folder / "last.pt")["step"] == 1 and [p.name for p in folder.iterdir()] == ["last.pt"]
    ok &= "No space left on device" in msg and "previous last.pt is intact" in msg
    print(f"  [{'OK' if ok else 'FAIL'}] save_checkpoint over last.pt: {msg.rstrip('.')}; previous last.pt loads, "
          "no temporary file left")
    return {"case": "save over last.pt", "ok": ok, "message": msg}


def _train_until_full(work: Path, run_dir: Path) -> str:
    """A training run while the disk fills: the message it stopped with."""
    import facedet.checkpoint as ck
    from facedet.engine.run import run_training

    try:
        run_training(compose(overrides(work / "data")), run_dir, progress=False)
        return "the run did not stop"
    except ck.CheckpointError as e:
        return str(e)


def _resume_after_full(work: Path, ref: Path, run_dir: Path, msg: str) -> dict[str, Any]:
    """The stopped run's last.pt loads, and resuming it ends as the reference run ``ref`` did."""
    import facedet.checkpoint as ck
    from facedet.engine.run import run_training

    step = ck.load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    run_training(compose(overrides(work / "data", "train.resume=auto")), run_dir, progress=False)
    same, how = compare_runs(ref, run_dir)
    ok = "No space left on device" in msg and same
    print(f"  [{'OK' if ok else 'FAIL'}] training, 5th write: stopped with \"{msg}\"; last.pt (step {step}) loads; "
          f"resumed with train.resume=auto: {how}")
    return {"case": "training run", "ok": ok, "message": msg}


def full_disk(work: Path) -> list[dict[str, Any]]:
    """Part (c): ENOSPC half-way through a save over an existing last.pt, and inside a training run
    (which must stop with the one-line error, keep a loadable last.pt, and resume exactly)."""
    import facedet.checkpoint as ck

    ref, _ = reference_run(work)
    print("(c) disk full (ENOSPC) half-way through a checkpoint write")
    folder = Path(tempfile.mkdtemp(dir=work, prefix="disk_"))
    ck.save_checkpoint({"step": 1}, folder / "last.pt")
    disk = ck._write = _FullDisk(ck._write)
    try:
        results = [_save_over_last(folder)]
        disk.n, disk.at = 0, 5  # the 5th write of a training run
        msg = _train_until_full(work, folder / "run")
    finally:
        ck._write = disk.real
    return [*results, _resume_after_full(work, ref, folder / "run", msg)]
