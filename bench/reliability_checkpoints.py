"""Checkpoint reliability: kill training at random moments and resume it; feed every loader bad
files; fill the disk during a checkpoint write. Prints what it tried and what happened.

    python bench/reliability_checkpoints.py                  # 5 kills (seed 0), bad files, full disk
    python bench/reliability_checkpoints.py --kills 3 --seed 7 --workdir /tmp/rel

(a) A tiny synthetic run (nano model, 64 px, 4 epochs, evaluation every epoch, last.pt every 2
optimizer steps) is SIGKILLed at seeded random moments: after a step, at the start of an evaluation,
and half-way through a checkpoint write (half the bytes on disk). Each time, every checkpoint left
must load and hold the last completed save, then ``train.resume=auto`` in the same run folder must
finish with weights, EMA and optimizer state bit-identical to an uninterrupted run. The pause points
are installed by this script in the child process (it wraps ``checkpoint._write``, the evaluation
and a hook), so the library carries no test-only code. (b) Bad files given to ``train.resume=``,
``checkpoint=`` (eval/export) and ``model.weights=``. (c) ENOSPC half-way through a write.
"""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


# ---------------------------------------------------------------- the child: a run that pauses on cue
def child(run_dir: str, overrides_json: str, pause: str) -> None:
    """Train; at ``pause`` (``step:N``, ``eval:K``, ``write:K`` or ``none``) print PAUSED and wait
    for the parent's SIGKILL. Prints ``SAVED <file> step <n>`` after each completed save."""
    import logging

    import facedet.checkpoint as ck
    import facedet.engine.eval_hook as eh
    import facedet.engine.hooks as hk
    from facedet.engine.run import run_training
    from facedet.engine.trainer import HookBase

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")
    kind, _, at_text = pause.partition(":")
    at, counts = int(at_text or 0), {"eval": 0, "write": 0}
    real_write, real_eval, real_save = ck._write, eh.evaluate, hk.save_checkpoint

    def hold(what: str) -> None:
        print(f"PAUSED {what}", flush=True)
        time.sleep(3600)

    def write(state: dict, f: Any) -> None:
        counts["write"] += 1
        if kind == "write" and counts["write"] == at:
            buf = io.BytesIO()
            real_write(state, buf)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            hold(f"write {at}: {len(data) // 2} of {len(data)} bytes on disk")
        real_write(state, f)

    def evaluate(*args: Any, **kw: Any) -> Any:
        counts["eval"] += 1
        if kind == "eval" and counts["eval"] == at:
            hold(f"evaluation {at}")
        return real_eval(*args, **kw)

    def save(state: dict, path: Any) -> None:
        real_save(state, path)
        print(f"SAVED {Path(path).name} step {state['step']}", flush=True)

    class PauseAtStep(HookBase):
        def after_step(self) -> None:
            if kind == "step" and self.trainer.step == at:
                hold(f"step {at}")

    ck._write, eh.evaluate, hk.save_checkpoint = write, evaluate, save
    run_training(compose(json.loads(overrides_json)), run_dir, progress=False, extra_hooks=[PauseAtStep()])
    print(f"COUNTS eval {counts['eval']} write {counts['write']}", flush=True)


def start_child(run_dir: Path, overrides_: list[str], pause: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, __file__, "--child", str(run_dir), json.dumps(overrides_), pause],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("a"), text=True)


def run_child(run_dir: Path, overrides_: list[str], pause: str = "none", *, kill: bool = False) -> dict[str, Any]:
    """Run a child to its end, or (``kill``) until it pauses, then SIGKILL it. Returns what it said."""
    proc = start_child(run_dir, overrides_, pause, run_dir.parent / f"{run_dir.name}.stderr")
    out: dict[str, Any] = {"saved": {}, "log": [], "paused": None}
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            out["log"].append(line)
            if line.startswith("SAVED "):
                _, name, _, step = line.split()
                out["saved"][name] = int(step)
            elif line.startswith("COUNTS "):
                _, _, evals, _, writes = line.split()
                out["evals"], out["writes"] = int(evals), int(writes)
            elif line.startswith("PAUSED ") and kill:
                out["paused"] = line[7:]
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and kill:
            proc.kill()
        proc.wait()
    out["rc"] = proc.returncode
    return out


# ---------------------------------------------------------------- comparisons
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


# ---------------------------------------------------------------- (a) kills
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


def reference_run(work: Path) -> tuple[Path, dict[str, Any]]:
    ref = work / "reference"
    if not (ref / "metrics.json").is_file():
        out = run_child(ref, overrides(work / "data"))
        if out["rc"] != 0:
            sys.exit(f"the reference run failed (rc {out['rc']}); see {work / 'reference.stderr'}")
        (work / "reference.json").write_text(json.dumps({"evals": out["evals"], "writes": out["writes"]}))
    return ref, json.loads((work / "reference.json").read_text())


def kill_and_resume(work: Path, kills: int = 5, seed: int = 0, plan: list[str] | None = None) -> list[dict[str, Any]]:
    """Part (a); one result per kill (``ok``: everything held). Prints as it goes."""
    ref, counts = reference_run(work)
    plan = plan or plan_kills(kills, seed, counts["evals"], counts["writes"])
    print(f"(a) reference run: {STEPS} steps, {counts['evals']} evaluations, {counts['writes']} checkpoint writes; "
          f"kill plan (seed {seed}): {', '.join(plan)}")
    results = []
    for i, pause in enumerate(plan):
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
        results.append(r)
    return results


# ---------------------------------------------------------------- (b) bad files, (c) full disk
class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("this would run at load time",))


def make_bad_files(folder: Path, last: Path) -> dict[str, Path]:
    """Files that must be refused, made from a real checkpoint ``last``."""
    import torch

    from facedet.checkpoint import load_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    ckpt, data = load_checkpoint(last), last.read_bytes()
    files = {name: folder / f"{name}.pt" for name in ("truncated", "code", "lfs", "empty", "text", "html", "random",
                                                       "state_dict", "other_model")}
    files["truncated"].write_bytes(data[: len(data) // 2])
    with open(files["code"], "wb") as f:
        torch.save({"model": {}, "payload": _RunsCode()}, f, pickle_module=pickle)
    files["lfs"].write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 24889786\n")
    files["empty"].write_bytes(b"")
    files["text"].write_text("epoch 3 loss 1.234\n")
    files["html"].write_text("<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>\n")
    files["random"].write_bytes(random.Random(0).randbytes(4096))
    torch.save(ckpt["model"], files["state_dict"])
    other = dict(ckpt, config=json.loads(json.dumps(ckpt["config"])))  # weights of this model, config of another
    other["config"]["model"]["backbone"]["width"] = 0.25
    torch.save(other, files["other_model"])
    return files


EXPECTED = {"truncated": "truncated zip", "code": "Refusing to load", "lfs": "git-LFS pointer", "empty": "empty file",
            "text": "a text file", "html": "an HTML page", "random": "random bytes", "state_dict": "is a state dict",
            "other_model": "shape mismatch"}


def bad_files(work: Path) -> list[dict[str, Any]]:
    """Part (b): each file through train.resume (run_training), checkpoint= (load_detector: eval and
    export) and model.weights= (load_weights); the message must say what the file is."""
    from facedet.checkpoint import CheckpointError
    from facedet.engine.run import run_training
    from facedet.inference.predictor import load_detector
    from facedet.models import build_detector
    from facedet.models.weights import load_weights

    ref, _ = reference_run(work)
    files = make_bad_files(work / "bad", ref / "checkpoints" / "last.pt")
    print("(b) bad files: each must be refused with a message naming the file and saying what it is")
    results = []
    last = ref / "checkpoints" / "last.pt"
    for name, path in files.items():
        # another model config: resume / start from the real checkpoint with a wider backbone; evaluate
        # the file whose stored config does not match its weights
        wide, real = (0.25, last) if name == "other_model" else (0.125, path)
        loaders = {
            "train.resume": (real, lambda p=real, w=wide: run_training(compose(overrides(
                work / "data", f"train.resume={p}", "train.epochs=1", width=w)), work / "bad" / "run",
                progress=False)),
            "checkpoint=": (path, lambda p=path: load_detector(p)),
            "model.weights": (real, lambda p=real, w=wide: load_weights(
                build_detector(compose(overrides(work / "data", width=w)).model), p)),
        }
        for loader, (given, call) in loaders.items():
            expect = EXPECTED[name]
            if name == "state_dict" and loader == "model.weights":
                expect = None  # the one place a state dict belongs
            try:
                call()
                got, ok = "loaded", expect is None
            except CheckpointError as e:
                got, ok = str(e), expect is not None and expect in str(e) and str(given) in str(e)
            results.append({"file": name, "loader": loader, "ok": ok, "message": got})
            shown = got if len(got) < 160 else got[:157] + "..."
            print(f"  [{'OK' if ok else 'FAIL'}] {name:11s} -> {loader:13s} {shown}", flush=True)
    for tool, args, expect in (
            ("tools/train.py", [*overrides(work / "data", f"train.resume={last}", width=0.25),
                                f"hydra.run.dir={work / 'bad' / 'cli_run'}"], "trained with another model config"),
            ("tools/eval.py", [f"checkpoint={files['lfs']}", f"hydra.run.dir={work / 'bad' / 'cli_eval'}"],
             "git-LFS pointer")):
        proc = subprocess.run([sys.executable, tool, *args], cwd=ROOT, capture_output=True, text=True)
        line = (proc.stderr.strip().splitlines() or [""])[-1]
        ok = proc.returncode == 2 and line.startswith("facedet: error:") and expect in line
        ok &= "Traceback" not in proc.stderr
        results.append({"file": tool, "loader": "command line", "ok": ok, "message": line})
        shown = line if len(line) < 160 else line[:157] + "..."
        print(f"  [{'OK' if ok else 'FAIL'}] {tool} (rc {proc.returncode}, no traceback: "
              f"{'Traceback' not in proc.stderr}): {shown}", flush=True)
    return results


def full_disk(work: Path) -> list[dict[str, Any]]:
    """Part (c): ENOSPC half-way through a save over an existing last.pt, and inside a training run
    (which must stop with the one-line error, keep a loadable last.pt, and resume exactly)."""
    import facedet.checkpoint as ck
    from facedet.engine.run import run_training

    ref, _ = reference_run(work)
    real = ck._write
    state = {"n": 0, "at": 1}

    def enospc(obj: dict, f: Any) -> None:
        state["n"] += 1
        if state["n"] == state["at"]:
            f.write(b"PK\x03\x04" + bytes(1000))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(obj, f)

    print("(c) disk full (ENOSPC) half-way through a checkpoint write")
    results = []
    folder = Path(tempfile.mkdtemp(dir=work, prefix="disk_"))
    ck.save_checkpoint({"step": 1}, folder / "last.pt")
    ck._write = enospc
    try:
        try:
            ck.save_checkpoint({"step": 2}, folder / "last.pt")
            msg = "no error"
        except ck.CheckpointError as e:
            msg = str(e)
        ok = ck.load_checkpoint(folder / "last.pt")["step"] == 1 and [p.name for p in folder.iterdir()] == ["last.pt"]
        ok &= "No space left on device" in msg and "previous last.pt is intact" in msg
        results.append({"case": "save over last.pt", "ok": ok, "message": msg})
        print(f"  [{'OK' if ok else 'FAIL'}] save_checkpoint over last.pt: {msg.rstrip('.')}; previous last.pt loads, "
              "no temporary file left")
        state.update(n=0, at=5)  # the 5th write of a training run
        run_dir = folder / "run"
        try:
            run_training(compose(overrides(work / "data")), run_dir, progress=False)
            msg = "the run did not stop"
        except ck.CheckpointError as e:
            msg = str(e)
    finally:
        ck._write = real
    step = ck.load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    run_training(compose(overrides(work / "data", "train.resume=auto")), run_dir, progress=False)
    same, how = compare_runs(ref, run_dir)
    ok = "No space left on device" in msg and same
    results.append({"case": "training run", "ok": ok, "message": msg})
    print(f"  [{'OK' if ok else 'FAIL'}] training, 5th write: stopped with \"{msg}\"; last.pt (step {step}) loads; "
          f"resumed with train.resume=auto: {how}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="kept afterwards (default: a temporary folder, removed when everything held)")
    args = ap.parse_args()
    from bench.common import print_header

    print_header()
    import logging

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
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
