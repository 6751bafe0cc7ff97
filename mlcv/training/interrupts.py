"""SIGTERM and SIGINT as a request to stop cleanly.

A cluster scheduler sends SIGTERM before preempting a job, and a person
presses Ctrl-C (SIGINT). Either one only sets a flag: the training loop
finishes the step it is on, saves a checkpoint of that step, waits for every
pending save and raises :class:`Interrupted`, which the launcher turns into
one line and the conventional exit status (128 + the signal number: 143 for
SIGTERM, 130 for SIGINT). A save in progress when the signal arrives is
never cut short, since the handler does nothing but record the signal.

After the first signal the default handlers come back, so a second Ctrl-C
(or a second SIGTERM) stops the process at once, as users expect.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):  # noqa: N818 - named for what happened, like KeyboardInterrupt
    """The run stopped on a signal after saving a checkpoint of ``step``."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}; checkpoint saved; re-run the same command to resume")


class StopRequests:
    """Catches SIGTERM and SIGINT while installed (or inside ``with``); ``received`` is the first signal, or None.

    Handlers are installed only in the main thread (Python allows no other);
    elsewhere, e.g. a run started from a worker thread, signals keep their
    previous behaviour. ``release`` puts the previous handlers back, so a
    run called in-process leaves its caller's handlers as they were.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Starts catching the signals (a no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.received is None:
            self.received = signum
        # The next signal takes the default action (terminate) at once.
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    def release(self) -> None:
        """Restores the handlers that were in place before ``install``."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def __enter__(self) -> StopRequests:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def check(self, step: int) -> None:
        """Raises :class:`Interrupted` at ``step`` when a signal came; the caller has saved ``step``."""
        if self.received is not None:
            raise Interrupted(step, self.received)
