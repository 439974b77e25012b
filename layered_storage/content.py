"""Content: how the caller's file is read when it is saved.

``ContentReader`` reads a Django ``File`` (an upload, a ``ContentFile``, a file on
disk, another storage's file) the way Django's own storages do, without closing or
keeping it, and counts what it read against ``max_file_size``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

from django.core.files.base import File

from layered_storage.exceptions import FileTooLargeError
from layered_storage.streams import ByteStream, ProducerStream, fill_from, read_exactly

_CHUNK = 1024 * 1024


def rewindable(content: Any) -> bool:
    """Return whether ``content`` can be read again from the start."""
    seekable = getattr(content, "seekable", None)
    return bool(seekable()) if callable(seekable) else False


class ContentReader(ProducerStream):
    """Read the caller's content, never closing or keeping it.

    Content is read the way Django's own storages read it, through ``chunks()``
    (which rewinds seekable content), in 1 MiB chunks. A plain ``File`` over a
    binary file is read straight into the buffers of the layer that reads it
    instead (``readinto``), with no chunk of its own in between.
    """

    def __init__(
        self,
        content: File,  # type: ignore[type-arg]
        *,
        name: str = "",
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self._name = name
        self._limit = limit
        underlying: Any = getattr(content, "file", None)
        self._file: AtMostAsked | None = None
        if type(content).chunks is File.chunks and hasattr(underlying, "readinto"):
            with contextlib.suppress(AttributeError, io.UnsupportedOperation):
                content.seek(0)  # as File.chunks does
            self._file = AtMostAsked(underlying)
            return
        try:
            chunks = content.chunks(_CHUNK)  # 64 KiB by default: too many calls
        except TypeError:  # an override that takes no size
            chunks = content.chunks()
        self._chunks: Iterator[bytes | str] = iter(chunks)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._file is None:
            return self._counted(super().readinto(buffer))
        count = fill_from(self._file, buffer)
        self._produced += count
        return self._counted(count)

    def read(self, size: int | None = -1) -> bytes:
        if self._file is None or size is None or size < 0:
            data = super().read(size)
        else:
            data = _whole_buffer(self._file.file, size) or read_exactly(
                self._file, size
            )
            self._produced += len(data)
        self._counted(len(data))
        return data

    def _produce(self) -> bytes | None:
        if self._file is not None:
            return read_exactly(self._file, _CHUNK) or None
        chunk = next(self._chunks, None)
        if chunk is None:
            return None
        return chunk.encode("utf-8") if isinstance(chunk, str) else chunk

    def _counted(self, count: int) -> int:
        """Return ``count``, once the content read so far is within the limit.

        Raises:
            FileTooLargeError: more content than ``max_file_size`` allows; the save
                fails, so nothing is stored.
        """
        if self._limit is not None and self._produced > self._limit:
            raise FileTooLargeError(too_large(self._name, self._limit))
        return count


class AtMostAsked(io.RawIOBase):
    """The caller's file, returning no more than each read asks for.

    Some file objects return more (urllib3 1.x decoding gzip does); what they give
    beyond a read is kept for the next one. The layers count on it (see
    ``read_exactly``): a longer encryption batch would reuse nonces.
    """

    def __init__(self, file: ByteStream) -> None:
        super().__init__()
        self.file = file
        self._excess = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data, self._excess = self._excess + self.file.read(), b""
        elif self._excess:  # short, as reads may be
            data, self._excess = self._excess[:size], self._excess[size:]
        else:
            data = self.file.read(size)
            if len(data) > size:
                data, self._excess = data[:size], data[size:]
        return data

    def readinto(self, buffer: Any) -> int:
        if not self._excess:
            count: int = self.file.readinto(buffer)  # type: ignore[union-attr]
            return count
        view = memoryview(buffer).cast("B")
        count = min(len(self._excess), len(view))
        view[:count] = self._excess[:count]
        self._excess = self._excess[count:]
        return count


def _whole_buffer(file: ByteStream, size: int) -> bytes:
    """Return all of an in-memory file (``ContentFile``, an upload held in memory)
    not read yet, if it is no more than ``size``, as the bytes it holds: no copy
    (``getvalue`` hands over the bytes a ``BytesIO`` was made from); else b""."""
    if type(file) is not io.BytesIO or file.tell() != 0:
        return b""
    value = file.getvalue()
    if not value or len(value) > size:
        return b""
    file.seek(len(value))
    return value


def too_large(name: str, limit: int) -> str:
    return (
        f"{name!r} is larger than this storage's max_file_size of {limit} bytes; "
        "nothing was stored."
    )
