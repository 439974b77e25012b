"""manage.py layered_rotate: re-encrypt files not written with the primary key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError, CommandParser

from layered_storage.bulk import Shard
from layered_storage.maintenance import inspect, needs_rotation, rotate, verify
from layered_storage.management.base import (
    EXIT_FAILED,
    FileCommand,
    Report,
    Result,
    inventory_of,
    keyring_or_error,
    layered_storage,
    refuse_if_keys_missing,
    selected_names,
)


class Command(FileCommand):
    help = (
        "Re-encrypt every file whose header names a key other than the first of the "
        "keyring, so the old keys can be retired. Refuses to start while files use "
        "a key the keyring lacks. --dry-run reads what would be rotated, writing "
        "nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="read every file that would be rotated, to the end, but write nothing",
        )

    def run(
        self,
        *args: Any,
        storage: str | None,
        prefix: str,
        shard: Shard | None,
        jobs: int,
        json: bool,
        dry_run: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        alias, layered = layered_storage(storage)
        primary = keyring_or_error(layered, alias).primary.label

        def files() -> Iterator[str]:
            return selected_names(layered, prefix=prefix, shard=shard)

        inventory = inventory_of(self, layered, files(), jobs=jobs)
        refuse_if_keys_missing(self, layered, inventory, "rotate")
        done = "would-rotate" if dry_run else "rotated"

        def rotate_one(name: str) -> Result:
            info = inspect(layered, name)
            fields = {"key_id": info.key_id}
            if not needs_rotation(layered, info):
                return Result("skipped", None, fields)
            if dry_run:
                verify(layered, name)  # what the real run reads, and may fail on
            else:
                rotate(layered, name)
            line = f"{name}: key {info.key_id} -> {primary}" if verbosity >= 2 else None
            return Result(done, line, {**fields, "new_key_id": primary})

        report = Report(
            self, layered, "rotating", json_lines=json, total=inventory.files
        )
        report.run(files(), rotate_one, jobs=jobs)
        count = report.statuses[done]
        seen = sum(report.statuses.values()) + report.failures
        verb = "would be re-encrypted" if dry_run else "re-encrypted"
        report.summary(f"{count} of {seen} files {verb} with key {primary}.")
        if report.failures:
            raise CommandError(
                f"{report.failures} file(s) could not be rotated; see above.",
                returncode=EXIT_FAILED,
            )
