"""What the command-line tools share, and the one style every tool follows.

Each tool is ``facedet/cli/<tool>.py`` with a ``main(argv=None)``, run as a console script
(``facedet-<tool>``, pyproject.toml ``[project.scripts]``) or as ``python tools/<tool>.py`` (a
three-line shim). ``main`` reads the command line when ``argv`` is None.

- **Arguments**: Hydra overrides of the tool's config (``configs/<tool>.yaml``; most build on
  ``train.yaml``, so ``data=facemask model=yolov4 data.img_size=416`` work everywhere), plus a few
  ``--flags`` for what is not configuration (the files of a one-off run: ``--predictions``,
  ``--json``). Only ``convert`` has no config: it takes flags alone.
- **Two ways to run, by what the tool writes.** Tools that write a run folder or sweep (train, eval,
  detect, export) run under ``@hydra.main``: Hydra owns argv, so ``-m``, ``--cfg job`` and
  ``--help`` work; their flags become overrides before Hydra reads argv (eval's ``--results``), and
  ``preflight`` checks the overrides and the output folder first. The others (anchors, show-batch,
  model-info, draw, convert) write no run folder: ``parse_tool_args`` parses argv with argparse
  (``--help``; overrides and flags in any order) and composes the config with Hydra's compose API.
- **Errors and exit status**: 0 done; 2 a user error (an unknown key or option, a bad value or
  flag, a missing or unusable file), one ``facedet: error: ...`` line on stderr, no traceback
  (``user_errors``; ``FACEDET_DEBUG=1`` shows it); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

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
def user_errors(*also: type[BaseException]) -> Iterator[None]:
    """Turn user errors (``USER_ERRORS`` and the tool's own ``also``) into one clear line on stderr
    and exit status 2 (set FACEDET_DEBUG=1 for the traceback)."""
    try:
        yield
    except (*USER_ERRORS, *also) as e:
        if os.environ.get("FACEDET_DEBUG"):
            raise
        print(f"facedet: error: {e}", file=sys.stderr)
        sys.exit(2)


def _compose(overrides: list[str], config_name: str) -> DictConfig:
    """``configs/<config_name>.yaml`` with ``overrides``, its ``hydra`` node included; a composition
    error (unknown key or group option) is one line and exit status 2."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        print(f"facedet: error: {_composition_error(e)}", file=sys.stderr)
        sys.exit(2)


def _composition_error(e: BaseException) -> str:
    """Hydra's message with the first line of its cause (which key), as ``@hydra.main`` prints it,
    less the config search path."""
    msg = str(e).split("\nConfig search path:")[0].rstrip()
    cause = str(e.__cause__ or "").strip()
    if cause and cause.splitlines()[0] not in msg:
        msg += "\n" + cause.splitlines()[0]
    return msg


def _without_hydra(cfg: DictConfig) -> DictConfig:
    """``cfg`` less its ``hydra`` node, as ``compose(return_hydra_config=False)`` returns it."""
    if "hydra" in cfg:
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def compose_or_exit(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The composed config for a tool that takes overrides outside ``@hydra.main`` (no run
    directory); a composition error (unknown key or group option) is one line and exit status 2."""
    return _without_hydra(_compose(overrides, config_name))


def setup_logging() -> None:
    """Log records at INFO and above to stderr, so stdout holds the tool's report alone."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    logging.getLogger("facedet").setLevel(logging.INFO)


def tool_parser(doc: str, *, overrides: str | None = "config overrides, e.g. data=facemask model=yolov4 "
                                                      "data.img_size=416") -> argparse.ArgumentParser:
    """The argument parser of a composing tool: ``--help`` shows ``doc`` (the module docstring) and
    the flags added to it; ``overrides`` is the help of the positional overrides (None: no config)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if overrides is not None:
        parser.add_argument("overrides", nargs="*", metavar="key=value", help=overrides)
    return parser


@dataclass(frozen=True)
class ToolArgs:
    """A composing tool's command line: its flags and the config its overrides compose."""

    flags: argparse.Namespace  # the --flags (and the overrides, as given)
    cfg: DictConfig  # the composed config, without the hydra node
    choices: dict[str, Any]  # config group -> the option chosen, e.g. {"data": "facemask", ...}


def parse_tool_args(parser: argparse.ArgumentParser, argv: list[str] | None, config_name: str) -> ToolArgs:
    """Parse ``argv`` (None: the command line) and compose ``configs/<config_name>.yaml`` with its
    overrides; a bad flag or override exits with status 2. Sets up logging."""
    flags = parser.parse_intermixed_args(argv)
    full = _compose(list(flags.overrides), config_name)
    choices = OmegaConf.to_container(full.hydra.runtime.choices, resolve=False)
    setup_logging()
    return ToolArgs(flags, _without_hydra(full), dict(choices))


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


def preflight(argv: list[str], config_name: str, *, output_dir: bool = True) -> None:
    """Before ``@hydra.main`` starts: an override Hydra cannot apply (unknown key or option) and, with
    ``output_dir``, an output folder that cannot be written are one line and exit status 2, as in
    the composing tools (Hydra itself exits 1, or fails with a traceback). Command lines with Hydra
    flags (``-m`` sweeps, ``--cfg``, ``-cn`` ...) are left to Hydra."""
    if not any(a.startswith("-") for a in argv):
        _compose(argv, config_name)
    if output_dir:
        check_output_dir(argv, config_name)


def hydra_argv(argv: list[str] | None) -> list[str]:
    """The arguments of a ``@hydra.main`` tool: ``argv``, put in ``sys.argv`` where Hydra reads
    them, or the command line's when None."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    return sys.argv[1:]


def model_argv(argv: list[str]) -> list[str]:
    """``model=PATH`` -> ``model_file=PATH``: ``model`` is a config group (configs/model/), so Hydra
    would look for a model config named PATH instead of setting a key."""
    return [f"model_file={a.split('=', 1)[1]}" if a.startswith("model=") else a for a in argv]
