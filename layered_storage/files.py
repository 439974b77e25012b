"""LayeredFile: the read-only, streaming ``File`` that ``LayeredStorage.open`` returns.

It decodes as it is read, through a buffered reader over the layer chain, so the
plaintext is never held whole; it seeks by decoding only the blocks it lands in.
``name`` is the storage name and ``size`` the plaintext length.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from django.core.files.base import File

from layered_storage.streams import BlockReader

WRITE_MODE_CHARACTERS = frozenset("wax+")


def check_read_mode(mode: str) -> None:
    """Raise ``ValueError`` for any mode other than reading.

    Raises:
        ValueError: a write, append or update mode.
    """
    if WRITE_MODE_CHARACTERS & set(mode) or not set(mode) <= set("rbt"):
        raise ValueError(
            f"LayeredStorage opens files for reading only (mode {mode!r} given); "
            "write new content with storage.save(name, content)."
        )


class LayeredFile(File):  # type: ignore[type-arg]
    """A decoded, read-only view of a stored file."""

    def __init__(
        self, decoder: Callable[[], BlockReader], name: str, mode: str = "rb"
    ) -> None:
        check_read_mode(mode)
        self._decoder = decoder
        self._raw = decoder()
        super().__init__(self._wrap(self._raw, mode), name)
        self.mode = mode

    @staticmethod
    def _wrap(raw: BlockReader, mode: str) -> Any:
        buffered = io.BufferedReader(raw, buffer_size=max(raw.block_size, 64 * 1024))
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding=io.text_encoding(None))

    @property
    def size(self) -> int:
        """Return the plaintext length (verified against the end of the file)."""
        return self._raw.size

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any) -> LayeredFile:
        """Rewind, or reopen from the storage if closed."""
        mode = mode or self.mode
        check_read_mode(mode)
        if self.closed or mode != self.mode:
            self.close()
            self._raw = self._decoder()
            self.file = self._wrap(self._raw, mode)
            self.mode = mode
        else:
            self.seek(0)
        return self

    def __repr__(self) -> str:
        return f"<LayeredFile: {self.name}>"
