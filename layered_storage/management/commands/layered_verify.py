"""manage.py layered_verify: read every file to the end, authenticating every byte."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from layered_storage.maintenance import verify, walk
from layered_storage.management.base import (
    add_storage_argument,
    apply_each,
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
        sizes: list[int] = []
        failures = apply_each(
            self, "verifying", targets, lambda name: sizes.append(verify(layered, name))
        )
        self.stdout.write(
            f"{len(targets) - failures} of {len(targets)} files verified "
            f"({sum(sizes)} bytes of plaintext)."
        )
        if failures:
            raise CommandError(f"{failures} file(s) failed verification.")
