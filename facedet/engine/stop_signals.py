"""SIGTERM / SIGINT as a request to stop at the next clean point (the trainer then saves ``last``)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


class StopRequest:
    """``requested`` is the signal's name once SIGTERM or SIGINT arrived, else None. A second
    SIGINT (Ctrl-C twice) raises KeyboardInterrupt at once, without saving."""

    def __init__(self) -> None:
        self.requested: str | None = None

    def handle(self, signum: int, frame: Any = None) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = name
        log.warning("%s received: stopping at the next optimizer step and saving checkpoints/last.pt "
                    "(Ctrl-C again to quit without saving)", name)

    @contextlib.contextmanager
    def installed(self, enabled: bool = True) -> Iterator[None]:
        """Route SIGTERM and SIGINT to ``handle`` inside the block (main thread only, where Python
        can install handlers); the previous handlers come back afterwards."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
