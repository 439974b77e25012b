"""manage.py layered_inspect: what the headers of stored files say (no decryption)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from layered_storage.maintenance import inspect, walk
from layered_storage.management.base import (
    add_storage_argument,
    apply_each,
    layered_storage,
)


class Command(BaseCommand):
    help = (
        "Show each file's layers, key id, algorithm and name binding, read from its "
        "header only. With no names, inspect every file in the storage."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_storage_argument(parser)
        parser.add_argument("names", nargs="*", help="stored file names")

    def handle(
        self, *args: Any, storage: str, names: list[str], **options: Any
    ) -> None:
        layered = layered_storage(storage)

        def show(name: str) -> None:
            info = inspect(layered, name)
            layers = " + ".join(info.layers) or "no layers (plaintext)"
            details = [f"{info.stored_size} bytes stored", layers]
            if info.key_id is not None:
                bound = "bound to its name" if info.name_bound else "not name-bound"
                details += [f"key {info.key_id}", bound]
            self.stdout.write(f"{name}: {', '.join(details)}")

        failures = apply_each(self, "inspecting", names or list(walk(layered)), show)
        if failures:
            raise CommandError(f"{failures} file(s) have headers that cannot be read.")
