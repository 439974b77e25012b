"""Models used by the tests: file fields on a layered storage."""

from __future__ import annotations

from django.core.files.storage import Storage, storages
from django.db import models

from layered_storage import LayeredStorage


def private_storage() -> Storage:
    """Return the layered storage; a callable keeps migrations free of settings."""
    return storages["private"]


class Document(models.Model):
    title = models.CharField(max_length=100)
    file = models.FileField(storage=private_storage, upload_to="documents/")
    archive = models.FileField(
        storage=LayeredStorage(inner="default", layers=["zstd", ("aes-gcm", {})]),
        upload_to="archive/",
        blank=True,
    )

    def __str__(self) -> str:
        return self.title
