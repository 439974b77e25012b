"""The Django app: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class LayeredStorageConfig(AppConfig):
    name = "layered_storage"
    verbose_name = "Layered storage"

    def ready(self) -> None:
        from layered_storage import checks  # noqa: F401  (registers the checks)
