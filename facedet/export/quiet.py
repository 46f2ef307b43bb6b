"""Quiet export: the exporter libraries' INFO messages (torch.onnx's passes: "Replaced initializer
...", onnxscript's optimizer, onnx_ir, onnxslim, NNCF, OpenVINO) are logged at DEBUG instead.

A run prints facedet's own progress lines and the parity summary; the libraries' internals show
when debug logging is on (Hydra's ``hydra.verbose=true``, or the export config's ``log_level=DEBUG``).
Warnings and errors of the libraries keep their level: only INFO (and lower) is demoted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

# Loggers of the libraries an export runs (children included: "torch.onnx" covers
# "torch.onnx._internal.exporter._core" and the rest).
LIBRARY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch._export", "torch.fx", "onnxscript",
                   "onnx_ir", "onnxslim", "onnxruntime", "nncf", "openvino")
# Packages whose code logs on the root logger (``logging.info(...)``: ONNX Runtime's quantizer does),
# recognised by the file the record comes from.
ROOT_LOGGING_PACKAGES = ("onnxruntime", "onnxslim", "nncf", "openvino", "onnxscript", "onnx_ir")


class _Demote(logging.Filter):
    """Turn INFO-and-below records into DEBUG ones; drop them unless the root logger shows DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def library_logs_at_debug(names: tuple[str, ...] = LIBRARY_LOGGERS) -> Iterator[None]:
    """Within the block, the named loggers' (and their children's) INFO records become DEBUG records.

    A filter on a logger only sees records logged on that very logger, not its children's, so the
    filter goes on the handlers records reach instead: the root logger's handlers, plus any handler
    a library attached to its own logger (NNCF does). The named loggers get the filter too, for the
    records logged on them directly: a library first imported inside the block (NNCF is) attaches its
    handler after the handlers were listed. Records of other loggers pass untouched."""
    demote = _Demote()

    folders = tuple(f"{os.sep}{p}{os.sep}" for p in ROOT_LOGGING_PACKAGES)

    class _ForLibraries(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            library = any(record.name == n or record.name.startswith(n + ".") for n in names) or (
                record.name == "root" and any(f in record.pathname for f in folders))
            return demote.filter(record) if library else True

    only_libraries = _ForLibraries()
    handlers = list(logging.getLogger().handlers)
    for name in names:
        handlers += logging.getLogger(name).handlers
    loggers = [logging.getLogger(name) for name in names]
    for h in handlers + loggers:
        h.addFilter(only_libraries)
    try:
        yield
    finally:
        for h in handlers + loggers:
            h.removeFilter(only_libraries)
