"""manage.py layered_verify: read every file to the end, authenticating every byte."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from layered_storage.exceptions import LayeredStorageError
from layered_storage.maintenance import verify, walk
from layered_storage.management.progress import Progress
from layered_storage.management.storage_option import (
    add_storage_argument,
    layered_storage,
)


class Command(BaseCommand):
    help = (
        "Decode every file (or the named ones) completely and report each that fails: "
        "tampered, truncated, written with a key that is gone, or not layered."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_storage_argument(parser)
        parser.add_argument("names", nargs="*", help="stored file names")

    def handle(
        self, *args: Any, storage: str, names: list[str], **options: Any
    ) -> None:
        layered = layered_storage(storage)
        targets = names or list(walk(layered))
        progress = Progress("verifying", len(targets))
        failures = 0
        total = 0
        for name in targets:
            try:
                total += verify(layered, name)
            except (LayeredStorageError, FileNotFoundError) as exc:
                failures += 1
                self.stderr.write(f"FAILED {name}: {type(exc).__name__}: {exc}")
            progress.advance()
        progress.close()
        self.stdout.write(
            f"{len(targets) - failures} of {len(targets)} files verified "
            f"({total} bytes of plaintext)."
        )
        if failures:
            raise CommandError(f"{failures} file(s) failed verification.")
