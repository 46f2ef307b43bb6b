"""What every benchmark prints beside its figures: the command, library versions and the machine."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("n/a" where the system has none)."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine() -> str:
    """CPU model and count, load average (other work disturbs timings), and the CUDA device if any."""
    import torch

    text = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu_model()}), " \
           f"load average {load_average()}"
    if torch.cuda.is_available():
        text += f"; CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
    return text


def versions(*extra: str) -> str:
    """Python, torch (and its CPU threads), torchvision, numpy, plus the named importable modules."""
    import numpy
    import torch
    import torchvision

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
             f"torchvision {torchvision.__version__}", f"numpy {numpy.__version__}"]
    for name in extra:
        try:
            module = __import__(name)
            parts.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def print_header(*extra_modules: str) -> None:
    """The lines that make a figure reproducible: command, versions, machine."""
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"versions: {versions(*extra_modules)}")
    print(f"machine: {machine()}")


def next_batch(it: Iterator, loader: Iterable) -> tuple[Iterator, Any]:
    """The next batch of ``it``, starting over with a fresh iterator of ``loader`` when ``it`` runs
    out: (the iterator to go on with, the batch)."""
    try:
        return it, next(it)
    except StopIteration:
        it = iter(loader)
        return it, next(it)


def fuzz_args(doc: str, n: int, n_help: str) -> argparse.Namespace:
    """The command line of a seeded fuzz benchmark (``--n`` cases, ``--seed``; ``doc``'s first paragraph
    is the description), parsed; then the header printed."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=n, help=n_help)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print_header()
    return args
