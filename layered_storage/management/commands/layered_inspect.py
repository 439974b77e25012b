"""manage.py layered_inspect: what the headers of stored files say, what each
encrypted file is bound to, and the key ids in use (nothing is decrypted but what
the plaintext size needs)."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from django.core.management.base import CommandError, CommandParser

from layered_storage.binding import STATUSES
from layered_storage.bulk import Shard
from layered_storage.exceptions import ConfigurationError, LayeredStorageError
from layered_storage.format import lse1
from layered_storage.maintenance import inspect, missing_key_ids
from layered_storage.management.base import (
    EXIT_FAILED,
    EXIT_USAGE,
    FileCommand,
    Report,
    Result,
    key_ids_report,
    layered_storage,
    selected_names,
)

#: How the summary names each binding status.
_BINDING_COUNTS = {
    "verified": "verified",
    "other-namespace": "under another namespace",
    "mismatch": "bound to another name (likely copied or renamed)",
    "unbound": "not name-bound",
    "unchecked": "not checked (no key)",
}


class Command(FileCommand):
    help = (
        "Show each file's plaintext and stored sizes, layers, key id and what it is "
        "bound to (checked with the key: its name in this storage's namespace, "
        "else which namespace of the settings), then the key ids in use. With no "
        "names, inspect every file in the storage."
    )
    accepts_names = True

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--as-name",
            type=_name,
            default=None,
            metavar="NAME",
            help="check whether the one file named is bound to NAME instead of its "
            "own name (a file renamed or copied from NAME)",
        )
        parser.add_argument(
            "--namespace",
            type=_name,
            default=None,
            metavar="NS",
            help="check the binding in namespace NS first, instead of the "
            "storage's (the other namespaces of the settings are tried after)",
        )
        parser.add_argument(
            "--private-names",
            action="store_true",
            help="print no file names: each file is shown by a fingerprint of its "
            "name, derived from its key, and a binding by its fingerprint",
        )

    def run(
        self,
        *args: Any,
        storage: str | None,
        names: list[str],
        prefix: str,
        shard: Shard | None,
        jobs: int,
        json: bool,
        as_name: str | None,
        namespace: str | None,
        private_names: bool,
        **options: Any,
    ) -> None:
        _, layered = layered_storage(storage)
        if as_name is not None and len(names) != 1:
            raise CommandError(
                "--as-name checks one file: give exactly one file name with it.",
                returncode=EXIT_USAGE,
            )

        def show(name: str) -> Result:
            try:
                info = inspect(
                    layered,
                    name,
                    size=True,
                    binding=True,
                    as_name=as_name,
                    namespace=namespace,
                )
            except ConfigurationError:
                raise
            except (LayeredStorageError, FileNotFoundError) as exc:
                if not private_names:
                    raise  # reported with the name and the message
                # The report would name the file, and so do most messages.
                kind = type(exc).__name__
                return Result(
                    "failed",
                    f"(name withheld): header cannot be read ({kind})",
                    {"name": None, "error": kind},
                )
            fields = info.as_dict(private=private_names)
            return Result("ok", info.describe(private=private_names), fields)

        report = Report(self, layered, "inspecting", json_lines=json)
        key_ids: Counter[str] = Counter()
        bindings: Counter[str] = Counter()
        plaintext = 0
        targets = selected_names(layered, names=names, prefix=prefix, shard=shard)
        for result in report.each(targets, show, jobs=jobs):
            if result.status != "ok":
                continue
            kid = result.fields["key_id"]
            key_ids.update([kid] if kid is not None else [])
            plaintext += not result.fields["layers"]
            if "binding" in result.fields:
                bindings[result.fields["binding"]["status"]] += 1
        done = report.statuses["ok"]
        failures = report.failures + report.statuses["failed"]
        report.summary(
            f"{done} file(s) inspected: {done - plaintext} layered, {plaintext} "
            f"plaintext; {failures} with a header that cannot be read."
        )
        if bindings:
            counts = ", ".join(
                f"{bindings[status]} {_BINDING_COUNTS[status]}"
                for status in STATUSES
                if bindings[status]
            )
            report.summary(f"name binding: {counts}")
        for line in key_ids_report(layered, key_ids):
            report.summary(line)
        missing = missing_key_ids(layered, key_ids)
        if failures or missing:
            raise CommandError(
                f"{failures} file(s) have headers that cannot be read, "
                f"{sum(key_ids[kid] for kid in missing)} use a key the keyring lacks.",
                returncode=EXIT_FAILED,
            )


def _name(text: str) -> str:
    """Return ``text`` if it can be bound (as a name or a namespace)."""
    try:
        lse1.binding_context(text, "")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
