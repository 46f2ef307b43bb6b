"""Checkpoint reliability: kill training at random moments and resume it; feed every loader bad
files; fill the disk during a checkpoint write. Prints what it tried and what happened.

    python bench/reliability_checkpoints.py                  # 5 kills (seed 0), bad files, full disk
    python bench/reliability_checkpoints.py --kills 3 --seed 7 --workdir /tmp/rel

(a) A tiny synthetic run (nano model, 64 px, 4 epochs, evaluation every epoch, last.pt every 2
optimizer steps) is SIGKILLed at seeded random moments: after a step, at the start of an evaluation,
and half-way through a checkpoint write (half the bytes on disk). Each time, every checkpoint left
must load and hold the last completed save, then ``train.resume=auto`` in the same run folder must
finish with weights, EMA and optimizer state bit-identical to an uninterrupted run. The pause points
are installed in the child process by bench/reliability_ckpt_child.py (it wraps ``checkpoint._write``,
the evaluation and a hook), so the library carries no test-only code. (b) Bad files given to
``train.resume=``, ``checkpoint=`` (eval/export) and ``model.weights=``. (c) ENOSPC half-way through a
write. The parts: bench/reliability_ckpt_{kills,bad_files,full_disk}.py; the runs they share:
bench/reliability_ckpt_runs.py.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import print_header  # noqa: E402
from bench.reliability_ckpt_bad_files import bad_files  # noqa: E402
from bench.reliability_ckpt_full_disk import full_disk  # noqa: E402
from bench.reliability_ckpt_kills import kill_and_resume, plan_kills  # noqa: E402, F401  (tests import both from here)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="kept afterwards (default: a temporary folder, removed when everything held)")
    args = ap.parse_args()
    print_header()
    logging.getLogger("facedet").setLevel(logging.ERROR)  # the in-process runs' warnings are expected here
    work = args.workdir or Path(tempfile.mkdtemp(prefix="facedet_reliability_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    a = kill_and_resume(work, args.kills, args.seed)
    b = bad_files(work)
    c = full_disk(work)
    ok = all(r["ok"] for r in a + b + c)
    keep = args.workdir is not None or not ok  # a failure's run folders are kept to look into
    print(f"summary: (a) {sum(r['ok'] for r in a)}/{len(a)} kills resumed bit-identically with every checkpoint "
          f"loadable; (b) {sum(r['ok'] for r in b)}/{len(b)} bad-file cases refused as expected; "
          f"(c) {sum(r['ok'] for r in c)}/{len(c)} full-disk cases; {time.perf_counter() - start:.0f} s; "
          f"work dir {work}{'' if keep else ' (removed)'}")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
