"""manage.py layered_keygen: print a fresh random key for LAYERED_STORAGE['KEYS']."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from layered_storage.maintenance import new_keys


class Command(BaseCommand):
    help = (
        "Print a new random 256-bit key (url-safe base64) and its id. Put it first "
        "in LAYERED_STORAGE['KEYS'] to encrypt new files with it; keep the old keys "
        "after it so existing files stay readable."
    )
    requires_system_checks: list[str] = []  # noqa: RUF012 (as BaseCommand declares it)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, default=1, help="how many keys to print (default 1)"
        )
        parser.add_argument(
            "--quiet", action="store_true", help="print only the keys, one a line"
        )

    def handle(self, *args: Any, count: int, quiet: bool, **options: Any) -> None:
        for line in new_keys(count, quiet=quiet):
            self.stdout.write(line)
