"""The OpenMP wait policy (facedet/threads.py): a short spin by default, set before torch
loads, never over a user's own choice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facedet.threads import SPIN_COUNT, SWITCH, apply_env_defaults

ROOT = Path(__file__).resolve().parents[1]


def test_default_is_a_short_spin():
    env: dict[str, str] = {"PATH": "/bin"}
    assert apply_env_defaults(env) == {"GOMP_SPINCOUNT": SPIN_COUNT}
    assert env == {"PATH": "/bin", "GOMP_SPINCOUNT": SPIN_COUNT}


@pytest.mark.parametrize("user", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "passive"},
                                  {"GOMP_SPINCOUNT": "300000"}, {SWITCH: "off"}, {SWITCH: " OFF "}])
def test_a_users_choice_is_kept(user):
    env = dict(user)
    assert apply_env_defaults(env) == {}
    assert env == user


def test_set_before_the_training_cli_imports_torch():
    """libgomp reads the variables once, when torch loads it: the value must be there by then."""
    probe = (
        "import builtins, os\n"
        "seen, real = {}, builtins.__import__\n"
        "def spy(name, *args, **kwargs):\n"
        "    if name.split('.')[0] == 'torch' and 'torch' not in seen:\n"
        "        seen['torch'] = os.environ.get('GOMP_SPINCOUNT')\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = spy\n"
        "import facedet.cli.train\n"
        "print(seen)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", SWITCH)}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == repr({"torch": SPIN_COUNT})
