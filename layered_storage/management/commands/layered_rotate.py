"""manage.py layered_rotate: re-encrypt files not written with the primary key."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from layered_storage.maintenance import inspect, needs_rotation, rotate, walk
from layered_storage.management.base import (
    add_storage_argument,
    apply_each,
    layered_storage,
)


class Command(BaseCommand):
    help = (
        "Re-encrypt every file whose header names a key other than the first of the "
        "keyring, so the old keys can be retired. Reports key ids in use that the "
        "keyring lacks. --dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_storage_argument(parser)
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would be rotated"
        )

    def handle(self, *args: Any, storage: str, dry_run: bool, **options: Any) -> None:
        layered = layered_storage(storage)
        encryption = layered.pipeline.encryption
        if encryption is None:
            raise CommandError(f"STORAGES[{storage!r}] has no encryption layer.")
        keyring = encryption.keyring
        infos = [inspect(layered, name) for name in walk(layered)]
        in_use = Counter(info.key_id for info in infos if info.key_id is not None)
        missing = [kid for kid in in_use if bytes.fromhex(kid) not in keyring]
        for kid in missing:
            self.stderr.write(
                f"key {kid} wrote {in_use[kid]} file(s) but is not in the keyring: "
                "those files cannot be read or rotated until it is added back."
            )
        todo = [
            info
            for info in infos
            if needs_rotation(layered, info) and info.key_id not in missing
        ]
        if dry_run:
            self.stdout.write(
                f"{len(todo)} of {len(infos)} files would be re-encrypted with key "
                f"{keyring.primary.label}."
            )
            return
        failures = apply_each(
            self,
            "rotating",
            todo,
            lambda info: rotate(layered, info.name),
            name=lambda info: info.name,
        )
        self.stdout.write(
            f"{len(todo) - failures} of {len(infos)} files re-encrypted with key "
            f"{keyring.primary.label}."
        )
        if failures or missing:
            raise CommandError("Some files could not be rotated; see above.")
