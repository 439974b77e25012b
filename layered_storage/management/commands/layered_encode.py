"""manage.py layered_encode: store plaintext files in the layered format, in place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError, CommandParser

from layered_storage.bulk import Shard
from layered_storage.maintenance import encode
from layered_storage.management.base import (
    EXIT_FAILED,
    FileCommand,
    Report,
    Result,
    inventory_of,
    layered_storage,
    refuse_if_keys_missing,
    selected_names,
)


class Command(FileCommand):
    help = (
        "Encode every plaintext file of the storage (one with no layered header) "
        "through its layers, in place, keeping its name. Files already layered are "
        "skipped, so an interrupted run is resumed by running it again. Refuses to "
        "start while files use a key the keyring lacks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="count the files that would be encoded, writing nothing",
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

        def files() -> Iterator[str]:
            return selected_names(layered, prefix=prefix, shard=shard)

        inventory = inventory_of(self, layered, files(), jobs=jobs)
        refuse_if_keys_missing(self, layered, inventory, "encode")
        if not layered.pipeline.policy.legacy_plaintext and inventory.plaintext:
            self.stderr.write(
                f"Note: STORAGES[{alias!r}] does not set allow_plaintext, so until "
                "this run is over, opening a file not yet encoded raises "
                "NotLayeredError. See the adoption guide in the documentation."
            )
        done = "would-encode" if dry_run else "encoded"

        def encode_one(name: str) -> Result:
            if not encode(layered, name, dry_run=dry_run):
                return Result("skipped")
            return Result(done, f"{name}: {done}" if verbosity >= 2 else None)

        report = Report(
            self, layered, "encoding", json_lines=json, total=inventory.files
        )
        report.run(files(), encode_one, jobs=jobs)
        count, skipped = report.statuses[done], report.statuses["skipped"]
        seen = count + skipped + report.failures
        verb = "would be encoded" if dry_run else "encoded"
        report.summary(
            f"{count} of {seen} files {verb} ({skipped} already layered) with "
            f"{' + '.join(layered.layer_names)}."
        )
        if report.failures:
            raise CommandError(
                f"{report.failures} file(s) could not be encoded; see above.",
                returncode=EXIT_FAILED,
            )
