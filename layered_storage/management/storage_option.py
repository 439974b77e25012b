"""The ``--storage`` argument the maintenance commands share."""

from __future__ import annotations

from django.core.files.storage import storages
from django.core.management.base import CommandError, CommandParser

from layered_storage.storage import LayeredStorage


def add_storage_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--storage",
        default="default",
        help="alias of a LayeredStorage in settings.STORAGES (default: 'default')",
    )


def layered_storage(alias: str) -> LayeredStorage:
    """Return the layered storage named ``alias``, or a CommandError saying why not."""
    try:
        storage = storages[alias]
    except Exception as exc:
        raise CommandError(
            f"No storage {alias!r} in settings.STORAGES ({exc})."
        ) from exc
    if not isinstance(storage, LayeredStorage):
        raise CommandError(
            f"STORAGES[{alias!r}] is a {type(storage).__name__}, not a LayeredStorage."
        )
    return storage
