"""A progress bar for long commands: on stderr, and only when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Draw ``label  [#####     ] done/total`` in place, at most ten times a second."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self._label = label
        self._total = total
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._done = 0
        self._drawn_at = 0.0

    def advance(self, count: int = 1) -> None:
        self._done += count
        now = time.monotonic()
        if self._enabled and (now - self._drawn_at > 0.1 or self._done >= self._total):
            self._drawn_at = now
            width = 30
            filled = width * self._done // max(self._total, 1)
            bar = "#" * filled + " " * (width - filled)
            self._stream.write(f"\r{self._label}  [{bar}] {self._done}/{self._total}")
            self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()
