"""Inner-backend adapters: the best way to write and read stored bytes on each.

Most inner storages take the encoded stream through ``save()`` and return a lazy,
seekable file from ``open()`` (FileSystemStorage, InMemoryStorage): that is the
generic path. django-storages' S3Storage needs its own: its ``open()`` downloads the
whole object before the first byte, and its ``save()`` derives a Content-Encoding
from the file name and buffers up to 80 MiB for a non-seekable stream.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from django.core.files.base import File
from django.core.files.storage import Storage

from layered_storage.exceptions import ConfigurationError
from layered_storage.streams import ByteStream, ProducerStream

#: The content type stored objects carry: the stored bytes are not the plaintext.
#: Not application/octet-stream, which some servers (SeaweedFS) treat as "unknown"
#: and replace with a guess from the name, e.g. application/gzip for "a.txt.gz".
STORED_CONTENT_TYPE = "application/x-layered-storage"


def open_stored(inner: Storage, name: str) -> ByteStream:
    """Return a seekable binary reader over the stored bytes of ``name``.

    Raises:
        FileNotFoundError: the inner storage has no such file (passed through).
        ConfigurationError: the inner storage's files cannot seek.
    """
    if _is_s3(inner):
        from layered_storage.s3 import S3Reader

        return S3Reader.open(inner, name)
    # Keep Django's File wrapper: closing it is what the backend expects (closing
    # InMemoryStorage's underlying buffer instead would destroy the stored bytes).
    stored: Any = inner.open(name, "rb")
    underlying = getattr(stored, "file", stored)
    if not stored.seekable() or isinstance(underlying, io.TextIOBase):
        stored.close()
        raise ConfigurationError(
            f"{type(inner).__name__}.open(name, 'rb') returns a file that cannot "
            "seek or is not binary; layered files need random access to their "
            "header and tail.",
            check_id="layered_storage.E001",
        )
    reader: ByteStream = stored
    return reader


def save_stored(inner: Storage, name: str, stream: ByteStream) -> str:
    """Store the encoded ``stream`` as ``name``; return the name the inner used."""
    if _is_s3(inner):
        from layered_storage.s3 import upload

        return upload(inner, name, stream)
    return inner.save(name, EncodedFile(stream, name))


class EncodedFile(File):  # type: ignore[type-arg]
    """What a generic inner storage is handed: the encoded stream, no size or path.

    ``size`` is None so backends never measure by seeking, the name is the storage
    name (never a local path that ``os.path.getsize`` could misread), and there is
    no ``temporary_file_path`` for FileSystemStorage to move instead of reading.
    """

    content_type = STORED_CONTENT_TYPE
    DEFAULT_CHUNK_SIZE = 1024 * 1024  # FileSystemStorage writes chunk by chunk

    def __init__(self, stream: ByteStream, name: str) -> None:
        super().__init__(stream, name)  # type: ignore[arg-type]

    @property
    def size(self) -> None:  # type: ignore[override]
        return None

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes | bytearray]:
        """Yield the encoded bytes; without a ``chunk_size``, as the layers produce
        them (about 1 MiB each), saving the copy that cutting exact sizes takes."""
        stream = self.file
        if chunk_size is None and isinstance(stream, ProducerStream):
            yield from stream.chunks()
        else:
            yield from super().chunks(chunk_size)


def _is_s3(inner: Storage) -> bool:
    # Checked by name so that django-storages stays an optional dependency.
    return any(
        f"{cls.__module__}.{cls.__qualname__}" == "storages.backends.s3.S3Storage"
        for cls in type(inner).__mro__
    )
