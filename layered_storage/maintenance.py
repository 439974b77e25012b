"""Maintenance over a whole storage: walk it, inspect, verify and rotate files.

These are what the ``layered_inspect``, ``layered_verify`` and ``layered_rotate``
commands run. They read headers through the same decoders as ``open()``, so an
inspection or a verification trusts nothing that ``open()`` would not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from layered_storage.format import lse1, lsz1
from layered_storage.storage import LayeredStorage
from layered_storage.streams import read_exactly, read_tail

_COPY_CHUNK = 1024 * 1024


def walk(storage: LayeredStorage, folder: str = "") -> Iterator[str]:
    """Yield the name of every file below ``folder``, depth first, sorted."""
    folders, files = storage.listdir(folder)
    prefix = f"{folder.rstrip('/')}/" if folder else ""
    for file in sorted(files):
        yield prefix + file
    for sub in sorted(folders):
        yield from walk(storage, prefix + sub)


@dataclass(frozen=True)
class FileInfo:
    """What the headers of one stored file say (nothing is decrypted for it)."""

    name: str
    stored_size: int
    layers: tuple[str, ...]
    key_id: str | None = None
    aead: str | None = None
    name_bound: bool | None = None


def inspect(storage: LayeredStorage, name: str) -> FileInfo:
    """Return what the headers of ``name`` declare, reading only its last bytes
    (the trailer of an encrypted file) or else its first ones.

    Raises:
        FileNotFoundError: no such file.
        FormatError: a header this version cannot parse.
    """
    with storage.backend.open(name) as stored:
        tail, stored_size = read_tail(stored, lse1.TRAILER_SIZE)
        if lse1.ends_with_trailer(tail):
            head = lse1.trailer_header(tail, file_name=name)
        else:
            stored.seek(0)
            head = read_exactly(stored, lse1.DIRECT_HEADER_SIZE)
    if head.startswith(lse1.MAGIC):
        header = lse1.parse_header(head, file_name=name)
        inner = ("zstd",) if header.payload_type == lse1.PAYLOAD_LSZ1 else ()
        return FileInfo(
            name=name,
            stored_size=stored_size,
            layers=(*inner, lse1.AEAD_NAMES[header.aead_id]),
            key_id=header.key_id.hex(),
            aead=lse1.AEAD_NAMES[header.aead_id],
            name_bound=header.name_bound,
        )
    if lsz1.is_lsz1(head):
        return FileInfo(name=name, stored_size=stored_size, layers=("zstd",))
    return FileInfo(name=name, stored_size=stored_size, layers=())


def verify(storage: LayeredStorage, name: str) -> int:
    """Read ``name`` to the end, authenticating every byte; return its size.

    Raises:
        LayeredStorageError: the file fails to decode (tampered, truncated, ...).
    """
    total = 0
    with storage.open(name) as opened:
        while chunk := opened.read(_COPY_CHUNK):
            total += len(chunk)
    return total


def needs_rotation(storage: LayeredStorage, info: FileInfo) -> bool:
    """Return whether ``info``'s file is not written with the storage's primary key."""
    encryption = storage.pipeline.encryption
    if encryption is None:
        return False
    return info.key_id != encryption.keyring.primary.label


def rotate(storage: LayeredStorage, name: str) -> None:
    """Re-encrypt ``name`` in place with the primary key (and current layers).

    The new version is encoded from the old one as it is read, written whole beside
    it, and only then put in its place (``LayeredStorage.replace``): if reading the
    old version fails, or the process dies at any point, ``name`` keeps the old
    version; nothing is ever deleted first.

    Raises:
        LayeredStorageError: the file cannot be read (it stays as it was).
        ConfigurationError: the inner storage cannot replace a file atomically.
    """
    with storage.open(name) as plaintext:
        storage.replace(name, plaintext)
