"""OpenMP settings that keep CPU training fast when other processes share the machine.

torch runs each CPU operator as an OpenMP parallel region over ``torch.get_num_threads()`` threads
(one per core), and a training step is thousands of such regions. libgomp's default is to let a
thread that waits for its partners (at the end of a region, or for the next one) spin for about
300000 iterations (milliseconds) before it sleeps. That is fastest on an idle machine. When another
process takes a core, one of the threads is often not running; the others then spin away their
own time slices at every region, waiting for it, so a step takes 10 times longer or more
(bench/contention.py: 39 -> 4 images/s beside one busy process from another session; docs/ENGINE.md,
"Busy machines"). A short spin (``GOMP_SPINCOUNT``) keeps most of the idle speed and hands the core
back at once when a partner is missing.

``apply_env_defaults`` must run before torch loads libgomp, which reads these variables once:
``facedet/__init__.py`` calls it, so every entry point (tools/*.py, facedet-* commands) gets it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

SWITCH = "FACEDET_THREAD_POLICY"  # "off": leave OpenMP's own defaults (the settings before this policy)
SPIN_COUNT = "1000"  # libgomp's own value when it knows it is oversubscribed (GOMP_SPINCOUNT docs)
# Variables that already choose how OpenMP threads wait: a user who set one keeps it as it is.
USER_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def apply_env_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Put facedet's OpenMP defaults into ``environ`` where the user chose nothing; returns what was
    set. No effect on a process whose torch is already loaded (libgomp has read its settings), but
    child processes (torchrun ranks, spawned workers) inherit the variables."""
    if environ.get(SWITCH, "auto").strip().lower() == "off":
        return {}
    if any(key in environ for key in USER_WAIT_SETTINGS):
        return {}
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return {"GOMP_SPINCOUNT": SPIN_COUNT}

