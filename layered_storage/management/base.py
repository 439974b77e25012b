"""What the maintenance commands share: ``--storage``, and an operation per file.

Each command parses its arguments and calls ``maintenance``; running an operation
over many files, reporting each failure and drawing the progress bar is done here,
once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser

from layered_storage.exceptions import LayeredStorageError
from layered_storage.management.progress import Progress
from layered_storage.storage import LayeredStorage

T = TypeVar("T")


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


def apply_each(
    command: BaseCommand,
    label: str,
    items: Sequence[T],
    operation: Callable[[T], object],
    name: Callable[[T], str] = str,
) -> int:
    """Run ``operation`` on each item, reporting failures; return how many failed.

    A file that fails to decode or vanished meanwhile is reported on stderr and the
    run goes on; any other error stops it.
    """
    progress = Progress(label, len(items))
    failures = 0
    for item in items:
        try:
            operation(item)
        except (LayeredStorageError, FileNotFoundError) as exc:
            failures += 1
            command.stderr.write(f"FAILED {name(item)}: {type(exc).__name__}: {exc}")
        progress.advance()
    progress.close()
    return failures
