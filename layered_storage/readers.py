"""Stored-byte readers: the best seekable reader each inner backend can give.

Decoders need random access to the stored bytes (the header, the tail, one
segment). Most backends return a seekable file from ``open()`` that reads lazily
(FileSystemStorage, InMemoryStorage): that is the generic reader. Backends whose
``open()`` downloads the whole object first get an adapter of their own here.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from django.core.files.storage import Storage

from layered_storage.exceptions import ConfigurationError


def open_stored(inner: Storage, name: str) -> BinaryIO:
    """Return a seekable binary reader over the stored bytes of ``name``.

    Raises:
        FileNotFoundError: the inner storage has no such file (passed through).
        ConfigurationError: the inner storage's files cannot seek.
    """
    # Keep Django's File wrapper: closing it is what the backend expects (closing
    # InMemoryStorage's underlying buffer instead would destroy the stored bytes).
    stored: BinaryIO = inner.open(name, "rb")
    underlying = getattr(stored, "file", stored)
    if not stored.seekable() or isinstance(underlying, io.TextIOBase):
        stored.close()
        raise ConfigurationError(
            f"{type(inner).__name__}.open(name, 'rb') returns a file that cannot "
            "seek or is not binary; layered files need random access to their "
            "header and tail.",
            check_id="layered_storage.E001",
        )
    return stored
