"""Part (b) of bench/reliability_checkpoints.py: bad files given to ``train.resume=``, ``checkpoint=``
(eval / export) and ``model.weights=``, in process and on the command line; each must be refused with
a message naming the file and saying what it is."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.reliability_ckpt_runs import ROOT, compose, overrides, reference_run

EXPECTED = {"truncated": "truncated zip", "code": "Refusing to load", "lfs": "git-LFS pointer", "empty": "empty file",
            "text": "a text file", "html": "an HTML page", "random": "random bytes", "state_dict": "is a state dict",
            "other_model": "shape mismatch"}


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("this would run at load time",))


def make_bad_files(folder: Path, last: Path) -> dict[str, Path]:
    """Files that must be refused, made from a real checkpoint ``last``."""
    import torch

    from facedet.checkpoint import load_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    ckpt, data = load_checkpoint(last), last.read_bytes()
    files = {name: folder / f"{name}.pt" for name in EXPECTED}
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


def _short(text: str) -> str:
    return text if len(text) < 160 else text[:157] + "..."


def _loaders(work: Path, name: str, path: Path, last: Path) -> dict[str, tuple[Path, Any]]:
    """loader -> (the file it is given, a call that loads it) for bad file ``name`` at ``path``."""
    from facedet.engine.run import run_training
    from facedet.inference.predictor import load_detector
    from facedet.models import build_detector
    from facedet.models.weights import load_weights

    # another model config: resume / start from the real checkpoint with a wider backbone; evaluate
    # the file whose stored config does not match its weights
    wide, real = (0.25, last) if name == "other_model" else (0.125, path)
    return {
        "train.resume": (real, lambda: run_training(compose(overrides(
            work / "data", f"train.resume={real}", "train.epochs=1", width=wide)), work / "bad" / "run",
            progress=False)),
        "checkpoint=": (path, lambda: load_detector(path)),
        "model.weights": (real, lambda: load_weights(build_detector(compose(overrides(work / "data",
                                                                                   width=wide)).model), real)),
    }


def _in_process(work: Path, files: dict[str, Path], last: Path) -> list[dict[str, Any]]:
    from facedet.checkpoint import CheckpointError

    results = []
    for name, path in files.items():
        for loader, (given, call) in _loaders(work, name, path, last).items():
            # a state dict is refused everywhere but by model.weights, where it belongs
            expect = None if name == "state_dict" and loader == "model.weights" else EXPECTED[name]
            try:
                call()
                got, ok = "loaded", expect is None
            except CheckpointError as e:
                got, ok = str(e), expect is not None and expect in str(e) and str(given) in str(e)
            results.append({"file": name, "loader": loader, "ok": ok, "message": got})
            print(f"  [{'OK' if ok else 'FAIL'}] {name:11s} -> {loader:13s} {_short(got)}", flush=True)
    return results


def _command_lines(work: Path, files: dict[str, Path], last: Path) -> list[dict[str, Any]]:
    """tools/train.py and tools/eval.py must stop with rc 2 and one ``facedet: error:`` line."""
    results = []
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
        print(f"  [{'OK' if ok else 'FAIL'}] {tool} (rc {proc.returncode}, no traceback: "
              f"{'Traceback' not in proc.stderr}): {_short(line)}", flush=True)
    return results


def bad_files(work: Path) -> list[dict[str, Any]]:
    """Part (b): each file through train.resume (run_training), checkpoint= (load_detector: eval and
    export) and model.weights= (load_weights); the message must say what the file is."""
    ref, _ = reference_run(work)
    last = ref / "checkpoints" / "last.pt"
    files = make_bad_files(work / "bad", last)
    print("(b) bad files: each must be refused with a message naming the file and saying what it is")
    return _in_process(work, files, last) + _command_lines(work, files, last)
