"""What the maintenance commands share: the storage and files to work on, running
an operation over them, and reporting.

Each command parses its arguments and calls ``maintenance``; choosing the storage,
streaming and sharding the names, running ``--jobs`` files at a time, printing one
line or JSON object per file, failures and the progress bar are done here, once
for all of them. Exit status: 0 when every file succeeded, ``EXIT_FAILED`` when
the run completed but some files failed (each is reported), ``EXIT_USAGE`` for
wrong arguments or configuration, ``EXIT_REFUSED`` when a command refused to
change anything (a key that files use is missing from the keyring).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from layered_storage import conf
from layered_storage.bulk import Shard, in_shard, run_each, walk
from layered_storage.exceptions import ConfigurationError
from layered_storage.keys import Keyring
from layered_storage.maintenance import (
    Inventory,
    keyring_of,
    missing_key_ids,
    take_inventory,
)
from layered_storage.management.progress import Progress
from layered_storage.storage import LayeredStorage

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


# -- arguments ----------------------------------------------------------------------


def add_storage_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--storage",
        default=None,
        help="alias of a LayeredStorage in settings.STORAGES (default: the only one)",
    )


def add_run_arguments(parser: CommandParser, *, names: bool = False) -> None:
    """Add the arguments that choose the files and how the run goes."""
    add_storage_argument(parser)
    if names:
        parser.add_argument(
            "names", nargs="*", help="stored file names (default: every file)"
        )
    parser.add_argument(
        "--prefix",
        default="",
        help="only files whose name starts with this, e.g. 'scans/2024/'",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="only part I of N (0 <= I < N), chosen by a stable hash of each name: "
        "N machines or Job indexes running 0/N .. N-1/N cover every file once",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="work on N files at a time (default 1; 16 suits S3)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per file on stdout (summary on stderr)",
    )


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--jobs is a number of files >= 1: {text!r}")
    return int(text)


# -- the storage and its files --------------------------------------------------


def layered_aliases() -> list[str]:
    """Return the aliases in settings.STORAGES whose backend is a LayeredStorage."""
    found = []
    for alias, config in conf.storages_config().items():
        try:
            backend = import_string(config.get("BACKEND", ""))
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, LayeredStorage):
            found.append(alias)
    return found


def layered_storage(alias: str | None) -> tuple[str, LayeredStorage]:
    """Return the layered storage named ``alias`` (None: the only one) and its
    alias, or a CommandError that names the layered aliases there are."""
    aliases = layered_aliases()
    listed = ", ".join(map(repr, aliases)) or "none"
    if alias is None:
        if len(aliases) != 1:
            raise CommandError(
                "Choose a storage with --storage: settings.STORAGES has "
                f"{len(aliases) or 'no'} LayeredStorage aliases ({listed}).",
                returncode=EXIT_USAGE,
            )
        alias = aliases[0]
    try:
        storage = storages[alias]
    except Exception as exc:
        raise CommandError(
            f"No storage {alias!r} in settings.STORAGES ({exc}); its LayeredStorage "
            f"aliases: {listed}.",
            returncode=EXIT_USAGE,
        ) from exc
    if not isinstance(storage, LayeredStorage):
        raise CommandError(
            f"STORAGES[{alias!r}] is a {type(storage).__name__}, not a "
            f"LayeredStorage; the LayeredStorage aliases are: {listed}.",
            returncode=EXIT_USAGE,
        )
    return alias, storage


def selected_names(
    storage: LayeredStorage,
    *,
    names: Iterable[str] = (),
    prefix: str = "",
    shard: Shard | None = None,
) -> Iterator[str]:
    """Yield ``names`` (default: every file, as listed), those under ``prefix`` and
    in ``shard`` only."""
    listed = list(names) or walk(storage, prefix)
    for name in listed:
        if name.startswith(prefix) and in_shard(name, shard):
            yield name


# -- running and reporting ------------------------------------------------------


@dataclass
class Result:
    """What an operation did with one file: a ``status`` word for the summary and
    the JSON object, the line to print (None: none) and the JSON fields."""

    status: str
    line: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


class Report:
    """Run an operation over files and report each: the line or JSON object on
    stdout, failures on stderr, and progress on stderr when it is a terminal."""

    def __init__(
        self,
        command: BaseCommand,
        storage: LayeredStorage,
        label: str,
        *,
        json_lines: bool = False,
        total: int | None = None,
    ) -> None:
        self.command = command
        self.storage = storage
        self.json_lines = json_lines
        self.statuses: Counter[str] = Counter()
        self.failures = 0
        self.progress = Progress(label, command.stderr, total)

    def each(
        self,
        names: Iterable[str],
        operation: Callable[[str], Result],
        *,
        jobs: int = 1,
    ) -> Iterator[Result]:
        """Run ``operation`` on each name, report it, and yield each result."""
        out, err = self.command.stdout.write, self.command.stderr.write
        try:
            outcomes = run_each(names, operation, jobs=jobs, storage=self.storage)
            for outcome in outcomes:
                name, error = outcome.name, outcome.error
                if error is not None:
                    self.failures += 1
                    self.progress.advance(failed=True)
                    kind = type(error).__name__
                    self.progress.line(err, f"FAILED {name}: {kind}: {error}")
                    if self.json_lines:
                        failed = {"error": kind, "message": str(error)}
                        self.progress.line(out, _json(name, "failed", failed))
                    continue
                result = outcome.value
                assert result is not None, "internal error: no result"
                self.statuses[result.status] += 1
                self.progress.advance()
                if self.json_lines:
                    self.progress.line(out, _json(name, result.status, result.fields))
                elif result.line is not None:
                    self.progress.line(out, result.line)
                yield result
        finally:
            self.progress.close()

    def run(
        self,
        names: Iterable[str],
        operation: Callable[[str], Result],
        *,
        jobs: int = 1,
    ) -> None:
        """Run ``operation`` on each name and report it."""
        for _ in self.each(names, operation, jobs=jobs):
            pass

    def summary(self, text: str) -> None:
        """Print the closing line: on stdout, or stderr when stdout is JSON."""
        stream = self.command.stderr if self.json_lines else self.command.stdout
        stream.write(text, style_func=_plain)


def _json(name: str, status: str, fields: dict[str, Any]) -> str:
    return json.dumps({"name": name, "status": status, **fields})


def _plain(text: str) -> str:
    return text


def inventory_of(
    command: BaseCommand, storage: LayeredStorage, names: Iterable[str], *, jobs: int
) -> Inventory:
    """Return the inventory of ``names`` from their headers, with progress (read
    failures are counted, not reported: the run that follows reports them)."""
    progress = Progress("reading headers", command.stderr)
    try:
        return take_inventory(
            storage,
            names,
            jobs=jobs,
            observe=lambda outcome: progress.advance(failed=outcome.error is not None),
        )
    finally:
        progress.close()


def key_ids_report(storage: LayeredStorage, key_ids: Counter[str]) -> list[str]:
    """Return lines naming each key id in use, its file count and its standing."""
    if not key_ids:
        return ["key ids in use: none (no encrypted files)"]
    keyring = keyring_of(storage)
    primary = keyring.primary.label if keyring is not None else None
    missing = set(missing_key_ids(storage, key_ids))
    lines = ["key ids in use:"]
    for kid, count in sorted(key_ids.items(), key=lambda item: (-item[1], item[0])):
        if kid in missing:
            standing = "NOT IN THE KEYRING: these files cannot be read"
        elif kid == primary:
            standing = "primary (writes new files)"
        else:
            standing = "in the keyring"
        lines.append(f"  {kid}  {count:>8} file(s)  {standing}")
    return lines


def refuse_if_keys_missing(
    command: BaseCommand, storage: LayeredStorage, inventory: Inventory, verb: str
) -> None:
    """Raise a CommandError (``EXIT_REFUSED``) if files use a key the keyring lacks,
    after printing the key ids in use."""
    missing = missing_key_ids(storage, inventory.key_ids)
    if not missing:
        return
    for line in key_ids_report(storage, inventory.key_ids):
        command.stderr.write(line, style_func=_plain)
    files = sum(inventory.key_ids[kid] for kid in missing)
    raise CommandError(
        f"Refusing to {verb}: {files} file(s) use key(s) {', '.join(missing)}, which "
        "the keyring lacks, so they could not be read or rotated. Add those keys "
        "back to the keyring (after the first key) and run again; nothing was "
        "changed.",
        returncode=EXIT_REFUSED,
    )


def keyring_or_error(storage: LayeredStorage, alias: str) -> Keyring:
    """Return the keyring of the encrypting storage ``alias``, or a CommandError."""
    encryption = storage.pipeline.encryption
    if encryption is None:
        raise CommandError(
            f"STORAGES[{alias!r}] has no encryption layer.", returncode=EXIT_USAGE
        )
    return encryption.keyring


class FileCommand(BaseCommand):
    """A command over the files of one layered storage: ``run`` does the work, and
    a configuration error anywhere ends it with ``EXIT_USAGE``."""

    #: Whether file names may be given as arguments.
    accepts_names = False

    def add_arguments(self, parser: CommandParser) -> None:
        add_run_arguments(parser, names=self.accepts_names)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            self.run(*args, **options)
        except ConfigurationError as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from exc

    def run(self, *args: Any, **options: Any) -> None:
        raise NotImplementedError
