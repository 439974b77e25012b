"""Inner-backend adapters: the best way to read and write stored bytes on each.

``backend_for(inner)`` picks the adapter (see ``base.Backend`` for the interface a
third party can implement): FileSystemStorage writes a temporary file and publishes
it atomically; django-storages' S3Storage, AzureStorage and GoogleCloudStorage
stream ranged GETs and multipart uploads, staged blocks or resumable uploads (their
own ``open()`` downloads the whole object first); InMemoryStorage and any other
storage take the generic path through their ``save()`` and ``open()``.

Each adapter lives in a module of its own and imports only ``base``; the
django-storages classes are recognised by name, so that django-storages and each
cloud SDK stay optional and are imported only when such a storage is used.
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

S3_STORAGE = "storages.backends.s3.S3Storage"
AZURE_STORAGE = "storages.backends.azure_storage.AzureStorage"
GCS_STORAGE = "storages.backends.gcloud.GoogleCloudStorage"


def backend_for(inner: Storage) -> Backend:
    """Return the adapter that reads and writes ``inner``'s stored bytes."""
    classes = _class_paths(inner)
    if S3_STORAGE in classes:
        from layered_storage.backends.s3 import S3Backend

        return S3Backend(inner)
    if AZURE_STORAGE in classes:
        from layered_storage.backends.azure import AzureBackend

        return AzureBackend(inner)
    if GCS_STORAGE in classes:
        from layered_storage.backends.gcs import GcsBackend

        return GcsBackend(inner)
    if filesystem.handles(inner):
        return filesystem.FileSystemBackend(inner)
    if is_memory(inner):
        return MemoryBackend(inner)
    return Backend(inner)


def _class_paths(inner: Storage) -> set[str]:
    """Return the dotted paths of ``inner``'s class and its bases."""
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(inner).__mro__}


__all__ = [
    "STORED_CONTENT_TYPE",
    "Backend",
    "EncodedFile",
    "NameTakenError",
    "backend_for",
]
