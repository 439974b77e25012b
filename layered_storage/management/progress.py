"""Progress of a long command, on stderr: a line redrawn in place on a terminal,
a plain line now and then otherwise (a log, a Kubernetes Job), and every other
line (a failure, a file's result) on a line of its own, never glued to the bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from django.core.management.base import OutputWrapper

#: Seconds between two redraws on a terminal, and between two plain lines elsewhere.
TTY_INTERVAL = 0.1
LOG_INTERVAL = 30.0


class Stream(Protocol):
    def write(self, text: str, /) -> object: ...
    def flush(self) -> object: ...
    def isatty(self) -> bool: ...


class Progress:
    """Count files done and failed; show ``label  [####    ] 12/200, 1 failed``.

    ``total`` may be None (a streamed listing): the count is shown without a bar.
    """

    def __init__(
        self,
        label: str,
        stream: Stream | OutputWrapper,
        total: int | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self._write = _raw_writer(stream)
        self._flush = stream.flush
        self._tty = stream.isatty()
        self._drawn = False
        # A bar is drawn at the first file; a plain line only after an interval.
        self._last = 0.0 if self._tty else time.monotonic()

    def advance(self, *, failed: bool = False) -> None:
        """Count one file done (``failed``: done, and failed)."""
        self.done += 1
        self.failed += failed
        now = time.monotonic()
        if self._tty and (now - self._last >= TTY_INTERVAL or self.done == self.total):
            self._last = now
            self._write("\r" + self._status() + "\x1b[K")
            self._drawn = True
            self._flush()
        elif not self._tty and now - self._last >= LOG_INTERVAL:
            self._last = now
            self._write(self._status() + "\n")
            self._flush()

    def line(self, write: Callable[[str], object], text: str) -> None:
        """Write ``text`` as a line of its own with ``write`` (to this stream or
        another one that shows on the same terminal), then redraw the bar."""
        if self._drawn:
            self._write("\r\x1b[K")
            self._flush()
        write(text)
        if self._drawn:
            self._write("\r" + self._status() + "\x1b[K")
            self._flush()

    def close(self) -> None:
        """End the bar's line, so that what follows starts on a line of its own."""
        if self._tty and self.done:
            self._write("\r" + self._status() + "\x1b[K\n")
            self._flush()
        self._drawn = False

    def _status(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        if self.total is None:
            return f"{self.label}  {self.done} files{failed}"
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + " " * (width - filled)
        return f"{self.label}  [{bar}] {self.done}/{self.total}{failed}"


def _plain(text: str) -> str:
    return text


def _raw_writer(stream: Stream | OutputWrapper) -> Callable[[str], object]:
    """Return a function writing text as is (an OutputWrapper adds a newline)."""
    if isinstance(stream, OutputWrapper):
        wrapper = stream
        # Unstyled: a command's stderr would colour every write as an error.
        return lambda text: wrapper.write(text, style_func=_plain, ending="")
    return stream.write
