"""Running Python code in a subprocess in which torch, torchvision, hydra, omegaconf and facedet
cannot be imported: how the runtime's tests show it needs none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "torchvision", "hydra", "omegaconf", "facedet")

# A meta path finder ahead of every other one: importing a blocked package (or any of its modules)
# raises ImportError, as on a machine where it is not installed. Further blocked names come in argv[1].
PRELUDE = f"""
import sys
class _Block:
    names = set({BLOCKED!r}) | set(filter(None, sys.argv.pop(1).split(',')))
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ImportError(f'{{name}} is not installed (blocked by the test)')
        return None
sys.meta_path.insert(0, _Block())
"""


def run_without_torch(code: str, *args: str, also_block: tuple[str, ...] = (),
                      timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -c PRELUDE + code args...`` from the repository root, with the blocker installed;
    the completed process (stdout, stderr as text)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", PRELUDE + code, ",".join(also_block), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


CLI = "from facedet_runtime.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
