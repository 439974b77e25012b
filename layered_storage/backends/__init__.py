"""Inner-backend adapters: the best way to read and write stored bytes on each.

``backend_for(inner)`` picks the adapter (see ``base.Backend`` for the interface a
third party can implement): FileSystemStorage writes a temporary file and publishes
it atomically, django-storages' S3Storage streams ranged GETs and multipart uploads
(its own ``open()`` downloads the whole object first), InMemoryStorage and any other
storage take the generic path through their ``save()`` and ``open()``.
"""

from __future__ import annotations

from django.core.files.storage import Storage

from layered_storage.backends import filesystem
from layered_storage.backends.base import (
    STORED_CONTENT_TYPE,
    Backend,
    EncodedFile,
    MemoryBackend,
    NameTakenError,
    is_memory,
)


def backend_for(inner: Storage) -> Backend:
    """Return the adapter that reads and writes ``inner``'s stored bytes."""
    if _is_s3(inner):
        from layered_storage.backends.s3 import S3Backend

        return S3Backend(inner)
    if filesystem.handles(inner):
        return filesystem.FileSystemBackend(inner)
    if is_memory(inner):
        return MemoryBackend(inner)
    return Backend(inner)


def _is_s3(inner: Storage) -> bool:
    # Checked by name so that django-storages stays an optional dependency.
    return any(
        f"{cls.__module__}.{cls.__qualname__}" == "storages.backends.s3.S3Storage"
        for cls in type(inner).__mro__
    )


__all__ = [
    "STORED_CONTENT_TYPE",
    "Backend",
    "EncodedFile",
    "NameTakenError",
    "backend_for",
]
