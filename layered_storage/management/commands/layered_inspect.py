"""manage.py layered_inspect: what the headers of stored files say, and the key ids
in use (nothing is decrypted but what the plaintext size needs)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import CommandError

from layered_storage.bulk import Shard
from layered_storage.maintenance import inspect, missing_key_ids
from layered_storage.management.base import (
    EXIT_FAILED,
    FileCommand,
    Report,
    Result,
    key_ids_report,
    layered_storage,
    selected_names,
)


class Command(FileCommand):
    help = (
        "Show each file's plaintext and stored sizes, layers, key id and name "
        "binding, read from its headers, then the key ids in use. With no names, "
        "inspect every file in the storage."
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
        **options: Any,
    ) -> None:
        _, layered = layered_storage(storage)

        def show(name: str) -> Result:
            info = inspect(layered, name, size=True)
            return Result("ok", info.describe(), info.as_dict())

        report = Report(self, layered, "inspecting", json_lines=json)
        key_ids: Counter[str] = Counter()
        plaintext = 0
        targets = selected_names(layered, names=names, prefix=prefix, shard=shard)
        for result in report.each(targets, show, jobs=jobs):
            kid = result.fields["key_id"]
            key_ids.update([kid] if kid is not None else [])
            plaintext += not result.fields["layers"]
        done = report.statuses["ok"]
        report.summary(
            f"{done} file(s) inspected: {done - plaintext} layered, {plaintext} "
            f"plaintext; {report.failures} with a header that cannot be read."
        )
        for line in key_ids_report(layered, key_ids):
            report.summary(line)
        missing = missing_key_ids(layered, key_ids)
        if report.failures or missing:
            raise CommandError(
                f"{report.failures} file(s) have headers that cannot be read, "
                f"{sum(key_ids[kid] for kid in missing)} use a key the keyring lacks.",
                returncode=EXIT_FAILED,
            )
