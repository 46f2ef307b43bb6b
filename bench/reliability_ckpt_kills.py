"""Part (a) of bench/reliability_checkpoints.py: SIGKILL a tiny run at seeded random moments (after a
step, at the start of an evaluation, half-way through a checkpoint write); every checkpoint left must
load and hold the last completed save, and ``train.resume=auto`` must then finish bit-identical to
the uninterrupted run."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from bench.reliability_ckpt_runs import STEPS, compare_runs, overrides, reference_run, run_child


def check_left_behind(run_dir: Path, saved: dict[str, int]) -> tuple[bool, str]:
    """After a kill: every checkpoint there loads and holds the last completed save; a temporary
    file (a write cut short) is refused."""
    from facedet.checkpoint import CheckpointError, load_checkpoint

    ok, notes = True, []
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            step = load_checkpoint(path)["step"]
            ok &= step == saved.get(name)
            notes.append(f"{name} step {step} loads" + ("" if step == saved.get(name) else
                                                         f" (WRONG: last completed save was {saved.get(name)})"))
        else:
            ok &= name not in saved
            notes.append(f"no {name}")
    for tmp in sorted((run_dir / "checkpoints").glob(".*.tmp")):
        try:
            load_checkpoint(tmp)
            ok, note = False, f"half-written {tmp.name} LOADS"
        except CheckpointError as e:
            note = f"half-written {tmp.name} refused ({str(e).split(': ', 1)[1]})"
        notes.append(note)
    return ok, "; ".join(notes)


def plan_kills(n: int, seed: int, evals: int, writes: int) -> list[str]:
    """``n`` distinct pause points drawn with ``seed``: at least one evaluation and one checkpoint write."""
    rng = random.Random(seed)
    limit = {"step": STEPS - 1, "eval": evals, "write": writes}
    plan: list[str] = []
    while len(plan) < min(n, sum(limit.values())):
        kind = ["eval", "write"][len(plan)] if len(plan) < 2 else rng.choice(["step", "eval", "write"])
        point = f"{kind}:{rng.randint(1, limit[kind])}"
        if point not in plan:
            plan.append(point)
    rng.shuffle(plan)
    return plan


def kill_once(work: Path, ref: Path, i: int, pause: str) -> dict[str, Any]:
    """Kill a run at ``pause``, check what it left, resume it and compare with the reference ``ref``."""
    run_dir = work / f"kill{i}_{pause.replace(':', '')}"
    t0 = time.perf_counter()
    killed = run_child(run_dir, overrides(work / "data"), pause, kill=True)
    r: dict[str, Any] = {"pause": pause, "ok": killed["paused"] is not None}
    if not r["ok"]:
        r["what"] = f"never reached {pause} (rc {killed['rc']})"
    else:
        left_ok, r["left"] = check_left_behind(run_dir, killed["saved"])
        resumed = run_child(run_dir, overrides(work / "data", "train.resume=auto"))
        how = [line[4:] for line in resumed["log"]
               if line.startswith("LOG ") and ("resum" in line or "afresh" in line or "temporary" in line)]
        same, r["compare"] = compare_runs(ref, run_dir) if resumed["rc"] == 0 else (False, "resume FAILED")
        r["resume"] = " | ".join(how)
        r["ok"] = left_ok and same
    r["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"  [{'OK' if r['ok'] else 'FAIL'}] SIGKILL at {killed['paused'] or pause} ({r['seconds']} s)\n"
          f"       left behind: {r.get('left', '-')}\n       resumed: {r.get('resume', '-')}\n"
          f"       vs uninterrupted: {r.get('compare', r.get('what'))}", flush=True)
    return r


def kill_and_resume(work: Path, kills: int = 5, seed: int = 0, plan: list[str] | None = None) -> list[dict[str, Any]]:
    """Part (a); one result per kill (``ok``: everything held). Prints as it goes."""
    ref, counts = reference_run(work)
    plan = plan or plan_kills(kills, seed, counts["evals"], counts["writes"])
    print(f"(a) reference run: {STEPS} steps, {counts['evals']} evaluations, {counts['writes']} checkpoint writes; "
          f"kill plan (seed {seed}): {', '.join(plan)}")
    return [kill_once(work, ref, i, pause) for i, pause in enumerate(plan)]
