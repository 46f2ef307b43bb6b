"""What the command-line entry points share: where the configs are, and user-facing errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from facedet.engine.checkpoint import CheckpointError
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
