"""manage.py layered_verify: read every file to the end, authenticating every byte."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from layered_storage.bulk import Shard
from layered_storage.maintenance import verify
from layered_storage.management.base import (
    EXIT_FAILED,
    FileCommand,
    Report,
    Result,
    layered_storage,
    selected_names,
)


class Command(FileCommand):
    help = (
        "Decode every file (or the named ones) completely and report each that fails: "
        "tampered, truncated, written with a key that is gone, or not layered."
    )
    accepts_names = True

    def run(
        self,
        *args: Any,
        storage: str | None,
        names: list[str],
        prefix: str,
        shard: Shard | None,
        jobs: int,
        json: bool,
        verbosity: int,
        **options: Any,
    ) -> None:
        _, layered = layered_storage(storage)

        def check(name: str) -> Result:
            size = verify(layered, name)
            line = f"{name}: verified, {size} bytes" if verbosity >= 2 else None
            return Result("verified", line, {"size": size})

        report = Report(self, layered, "verifying", json_lines=json)
        targets = selected_names(layered, names=names, prefix=prefix, shard=shard)
        total = sum(r.fields["size"] for r in report.each(targets, check, jobs=jobs))
        verified = report.statuses["verified"]
        report.summary(
            f"{verified} of {verified + report.failures} files verified "
            f"({total} bytes of plaintext)."
        )
        if report.failures:
            raise CommandError(
                f"{report.failures} file(s) failed verification.",
                returncode=EXIT_FAILED,
            )
