"""What the command-line entry points share: where the configs are, and user-facing errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from facedet.checkpoint import CheckpointError
from facedet.engine.trainer import TrainingDiverged
from facedet.registry import ConfigError

log = logging.getLogger("facedet")


def find_config_dir() -> str:
    """``$FACEDET_CONFIG_DIR``, else the ``configs/`` folder of the checkout facedet runs from."""
    env = os.environ.get("FACEDET_CONFIG_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "configs")
    for c in candidates:
        if (c / "train.yaml").is_file():
            return str(c.resolve())
    sys.exit(
        "facedet: cannot find the configs/ folder (looked in "
        + ", ".join(map(str, candidates))
        + "). Install from a checkout with `pip install -e .`, or set FACEDET_CONFIG_DIR."
    )


CONFIG_DIR = find_config_dir()

# Errors a user causes and can fix from the message alone: no traceback for these.
USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, TrainingDiverged)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn user errors into one clear line on stderr and exit status 2 (set FACEDET_DEBUG=1 for
    the traceback)."""
    try:
        yield
    except USER_ERRORS as e:
        if os.environ.get("FACEDET_DEBUG"):
            raise
        print(f"facedet: error: {e}", file=sys.stderr)
        sys.exit(2)


def compose_or_exit(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The composed config for a tool that takes training overrides outside ``@hydra.main`` (no run
    directory); a composition error (unknown key or group option) is one line and exit status 2."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"facedet: error: {e}", file=sys.stderr)
        sys.exit(2)


# Hydra flags that print or inspect and write no output folder.
_NO_OUTPUT_FLAGS = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
                    "--version")


def output_dir_problem(path: str) -> str | None:
    """Why no folder can be created at ``path`` (the reason, naming the folder that refuses), or
    None when it can. ``${...}`` parts (``${now:...}``, ``${name}``) are not known yet: the literal
    part before the first one is checked."""
    literal = path.split("${", 1)[0] or "."
    p = Path(literal).expanduser().absolute()
    try:
        while not p.exists():
            p = p.parent
        if not p.is_dir():
            return f"{p} is not a folder"
        # a real attempt, not os.access: root passes access checks on read-only mounts and /proc
        tempfile.TemporaryDirectory(dir=p, prefix=".facedet-write-check-").cleanup()
    except OSError as e:
        return f"cannot create a folder in {p} ({e.strerror or e})"
    return None


def check_output_dir(argv: list[str], config_name: str) -> None:
    """Exit with one line (status 2) when the run's output folder cannot be written, before Hydra
    fails on it with a traceback ("Unable to configure handler 'file'"). The folder is
    ``hydra.run.dir`` (``hydra.sweep.dir`` with ``-m``) from ``argv``, else ``configs/<config_name>.yaml``'s."""
    if any(a.split("=", 1)[0] in _NO_OUTPUT_FLAGS for a in argv):
        return
    key = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in argv if a.split("=", 1)[0].lstrip("+") == key]
    if given:
        path = given[-1].strip("'\"")
    else:
        node = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / f"{config_name}.yaml"), resolve=False)
        path = str(node.get("hydra", {}).get(key.split(".")[1], {}).get("dir") or ".")
    why = output_dir_problem(path)
    if why is not None:
        print(f"facedet: error: cannot write the output folder {path} ({key}): {why}. "
              f"Choose a writable folder with {key}=<folder>.", file=sys.stderr)
        sys.exit(2)
