"""The child process of bench/reliability_checkpoints.py: a tiny training run that pauses on cue so
the parent can SIGKILL it there. The pause points are installed here, in the child (wrapping
``checkpoint._write``, the evaluation and a hook), so the library carries no test-only code.

    python -m bench.reliability_ckpt_child RUN_DIR OVERRIDES_JSON PAUSE     # started by run_child()
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.reliability_ckpt_runs import compose


def hold(what: str) -> None:
    """Say PAUSED and wait for the parent's SIGKILL."""
    print(f"PAUSED {what}", flush=True)
    time.sleep(3600)


def install_pauses(kind: str, at: int, counts: dict[str, int]) -> None:
    """Wrap the checkpoint write, the evaluation and the save: count them, pause at the ``at``-th
    write (half its bytes on disk) or evaluation, and print ``SAVED <file> step <n>`` after each save."""
    import facedet.checkpoint as ck
    import facedet.engine.eval_hook as eh
    import facedet.engine.hooks as hk

    real_write, real_eval, real_save = ck._write, eh.evaluate, hk.save_checkpoint

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

    ck._write, eh.evaluate, hk.save_checkpoint = write, evaluate, save


def child(run_dir: str, overrides_json: str, pause: str) -> None:
    """Train; at ``pause`` (``step:N``, ``eval:K``, ``write:K`` or ``none``) print PAUSED and wait
    for the parent's SIGKILL. Prints ``SAVED <file> step <n>`` after each completed save."""
    import logging

    from facedet.engine.run import run_training
    from facedet.engine.trainer import HookBase

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="LOG %(message)s")
    kind, _, at_text = pause.partition(":")
    at, counts = int(at_text or 0), {"eval": 0, "write": 0}
    install_pauses(kind, at, counts)

    class PauseAtStep(HookBase):
        def after_step(self) -> None:
            if kind == "step" and self.trainer.step == at:
                hold(f"step {at}")

    run_training(compose(json.loads(overrides_json)), run_dir, progress=False, extra_hooks=[PauseAtStep()])
    print(f"COUNTS eval {counts['eval']} write {counts['write']}", flush=True)


if __name__ == "__main__":
    child(*sys.argv[1:])
