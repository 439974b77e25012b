"""``python -m layered_storage``: keys and stored files without Django settings.

For recovery and scripts: ``decrypt`` and ``inspect`` read stored bytes fetched by
any means (a copy of the media folder, ``aws s3 cp``, a backup), ``encrypt``
produces bytes a storage can open, ``keygen`` prints new keys. They run the same
pipeline as the storage, so they raise the same errors with the same messages.

Keys come from ``--key-file`` (one key a line, ``#`` comments allowed, as
``layered_keygen`` prints them) or the ``LAYERED_STORAGE_KEYS`` environment variable
(keys separated by commas or spaces), never from an argument, which other users of
the machine can read. A file bound to its name needs that name (``--name``) and
the storage's namespace (``--namespace``); ``inspect`` checks with the key whether
the file is bound to them. Exit status: 0 done, 1 the file failed to decode
(nothing is left at OUT), 2 wrong arguments or keys.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from layered_storage.exceptions import ConfigurationError, LayeredStorageError
from layered_storage.keys import Keyring, parse_keys
from layered_storage.layers.base import FileContext
from layered_storage.maintenance import (
    check_binding,
    inspect_stored,
    new_keys,
    offline_pipeline,
)
from layered_storage.streams import ByteStream

KEYS_ENV = "LAYERED_STORAGE_KEYS"
EXIT_FAILED = 1
EXIT_USAGE = 2
_CHUNK = 1024 * 1024


class UsageError(Exception):
    """Wrong arguments or keys: exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    _configure_django()
    try:
        args.run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LayeredStorageError as exc:
        # As the storage raises it: a script or a person can match the class.
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: "--key K" must never be taken for "--key-file K".
    parser = argparse.ArgumentParser(
        prog="python -m layered_storage",
        description="Keys and layered files without Django settings.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    keygen = commands.add_parser(
        "keygen", help="print new random keys", allow_abbrev=False
    )
    keygen.add_argument("--count", type=int, default=1, help="how many (default 1)")
    keygen.add_argument("--quiet", action="store_true", help="only the keys")
    keygen.set_defaults(run=_keygen)

    decrypt = commands.add_parser(
        "decrypt",
        help="decode stored bytes (IN) to the original file (OUT)",
        allow_abbrev=False,
    )
    _add_file_arguments(decrypt, output=True)
    decrypt.add_argument(
        "--allow-unencrypted",
        action="store_true",
        help="also decode files that are compressed but not encrypted",
    )
    decrypt.set_defaults(run=_decrypt)

    encrypt = commands.add_parser(
        "encrypt",
        help="encode a file (IN) into stored bytes (OUT) a storage opens",
        allow_abbrev=False,
    )
    _add_file_arguments(encrypt, output=True)
    encrypt.add_argument(
        "--layers",
        default="zstd,aes-gcm",
        help="the storage's layers, comma-separated (default zstd,aes-gcm)",
    )
    encrypt.add_argument(
        "--unbound",
        action="store_true",
        help="do not bind the file to its name (for bind_name=False storages)",
    )
    encrypt.set_defaults(run=_encrypt)

    inspect = commands.add_parser(
        "inspect",
        help="show what the headers of stored bytes (IN) declare and, with keys, "
        "whether the file is bound to --name in --namespace",
        allow_abbrev=False,
    )
    _add_file_arguments(inspect, output=False)
    inspect.add_argument("--json", action="store_true", help="print a JSON object")
    inspect.add_argument(
        "--private-names",
        action="store_true",
        help="print no name: the file is shown by a fingerprint of its name, "
        "derived from its key, and its binding by its fingerprint",
    )
    inspect.set_defaults(run=_inspect)
    return parser


def _add_file_arguments(parser: argparse.ArgumentParser, *, output: bool) -> None:
    parser.add_argument(
        "--key-file",
        type=Path,
        help=f"file of keys, one a line (default: ${KEYS_ENV})",
    )
    parser.add_argument("--name", help="the file's name in its storage")
    parser.add_argument(
        "--namespace", default="", help="the storage's namespace (default '')"
    )
    parser.add_argument("input", nargs="?", default="-", help="IN (default: stdin)")
    if output:
        parser.add_argument(
            "output", nargs="?", default="-", help="OUT (default: stdout)"
        )


def _configure_django() -> None:
    """Give Django empty settings unless a caller configured it: nothing here reads
    a project's settings, and the layers read theirs through django.conf."""
    from django.conf import settings

    if not settings.configured:
        settings.configure()


# -- the commands ---------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> None:
    for line in new_keys(args.count, quiet=args.quiet):
        print(line)


def _decrypt(args: argparse.Namespace) -> None:
    keyring = _keyring(args.key_file)
    if keyring is None and not args.allow_unencrypted:
        raise UsageError(f"decrypt needs keys: give --key-file or set ${KEYS_ENV}.")
    layers = ["aes-gcm"] if keyring is not None else ["zstd"]
    pipeline = offline_pipeline(
        keyring, layers, allow_unencrypted=args.allow_unencrypted
    )
    with _seekable_input(args.input) as stored:
        _check_name(stored, args.name)
        context = FileContext(name=args.name or "", namespace=args.namespace)
        with (
            pipeline.decode(stored, context) as plaintext,
            _output(args.output) as out,
        ):
            shutil.copyfileobj(plaintext, out, _CHUNK)


def _encrypt(args: argparse.Namespace) -> None:
    layers = [layer.strip() for layer in args.layers.split(",") if layer.strip()]
    specs: list[str | tuple[str, dict[str, bool]]] = [
        (layer, {"bind_name": False}) if args.unbound and layer != "zstd" else layer
        for layer in layers
    ]
    pipeline = offline_pipeline(_keyring(args.key_file), specs)
    encryption = pipeline.encryption
    if encryption is not None and encryption.bind_name and args.name is None:
        raise UsageError(
            "encrypt binds the file to its name: give --name NAME (and --namespace "
            "NS if the storage sets one), or --unbound."
        )
    context = FileContext(name=args.name or "", namespace=args.namespace)
    with _input(args.input) as source, _output(args.output) as out:
        shutil.copyfileobj(pipeline.encode(source, context), out, _CHUNK)


def _inspect(args: argparse.Namespace) -> None:
    keyring = _keyring(args.key_file)
    with _seekable_input(args.input) as stored:
        info = inspect_stored(stored, args.name or args.input)
        if info.header is not None:
            try:
                binding = check_binding(
                    info.header, keyring, args.name, [args.namespace]
                )
            except ValueError as exc:  # a NUL in the name or namespace
                raise UsageError(str(exc)) from None
            info = info.with_binding(binding)
        if keyring is not None and info.layered:
            context = FileContext(name=args.name or "", namespace=args.namespace)
            pipeline = offline_pipeline(keyring, ["aes-gcm"], allow_unencrypted=True)
            try:
                with pipeline.decode(stored, context) as plaintext:
                    info = info.with_size(plaintext.size)
            except LayeredStorageError as exc:
                info = info.with_size(None, f"{type(exc).__name__}: {exc}")
        elif not info.layered:
            info = info.with_size(info.stored_size)
        else:
            info = info.with_size(None, "no key given")
    private = args.private_names
    if args.json:
        print(json.dumps({"name": info.name, **info.as_dict(private=private)}))
    else:
        print(info.describe(private=private))


# -- keys, names, files ---------------------------------------------------------------


def _keyring(key_file: Path | None) -> Keyring | None:
    """Return the keys of ``key_file``, else of ``$LAYERED_STORAGE_KEYS``, or None.

    Raises:
        UsageError: an unreadable key file.
        ConfigurationError: a malformed key (its value is never shown).
    """
    if key_file is not None:
        try:
            text, source = key_file.read_text(), f"the key file {key_file}"
        except OSError as exc:
            raise UsageError(f"cannot read the key file: {exc}") from None
    elif os.environ.get(KEYS_ENV, "").strip():
        text, source = os.environ[KEYS_ENV], f"${KEYS_ENV}"
    else:
        return None
    lines = (line.partition("#")[0] for line in text.splitlines())
    values = [value for line in lines for value in re.split(r"[\s,]+", line) if value]
    return parse_keys(values, source=source)


def _check_name(stored: ByteStream, name: str | None) -> None:
    """Refuse a file bound to its name when no name is given (else the header
    would fail to authenticate with a message about renamed files)."""
    if name is not None:
        return
    with contextlib.suppress(LayeredStorageError):
        bound = inspect_stored(stored, "").name_bound
        stored.seek(0)
        if bound:
            raise UsageError(
                "this file is bound to its name in the storage: give --name NAME "
                "(and --namespace NS if the storage sets one)."
            )


@contextlib.contextmanager
def _input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        file = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    with file:
        yield file


@contextlib.contextmanager
def _seekable_input(path: str) -> Iterator[BinaryIO]:
    """Open ``path`` (``-``: stdin); a pipe is copied to a temporary file first,
    since reading starts from the end. Those are stored bytes, never plaintext."""
    with _input(path) as source:
        if source.seekable():
            yield source
            return
        with tempfile.TemporaryFile() as spooled:
            shutil.copyfileobj(source, spooled, _CHUNK)
            spooled.seek(0)
            yield spooled


@contextlib.contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    """Write to ``path`` (``-``: stdout) all or nothing: a file is written beside
    ``path`` and put in place only once complete, readable by its owner only."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
        )
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
    try:
        with os.fdopen(descriptor, "wb") as out:
            yield out
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


if __name__ == "__main__":
    sys.exit(main())
