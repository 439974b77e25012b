"""Reusable byte buffers, so that decoding a block does not allocate memory anew.

A decoder that allocated a fresh 1 MiB result per frame would pay for it in page
faults: the allocator hands large blocks back to the system when they are freed
(worker threads' arenas trim as soon as their top is free), so every frame touches
new pages. A ``BufferPool`` keeps a few buffers that were used before and hands them
out again, from any thread.
"""

from __future__ import annotations

import contextlib


class BufferPool:
    """A few ``bytearray`` buffers of at least ``size`` bytes, taken and given back.

    ``take`` and ``give`` may be called from any thread: ``list.pop`` and
    ``list.append`` are atomic. At most ``keep`` buffers wait to be reused, so
    memory stays bounded by what is in use plus ``keep`` buffers.
    """

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._spare: list[bytearray] = []

    def take(self, size: int) -> bytearray:
        """Return a buffer of at least ``size`` bytes (``size`` if it is larger than
        the pool's buffers), its contents undefined."""
        with contextlib.suppress(IndexError):
            buffer = self._spare.pop()
            if len(buffer) >= size:
                return buffer
        return bytearray(max(size, self.size))

    def give(self, buffer: bytearray) -> None:
        """Keep ``buffer`` for a later ``take`` (nothing may use it any more)."""
        if len(self._spare) < self._keep:
            self._spare.append(buffer)
