"""Maintenance over a whole storage: walk it, inspect, verify and rotate files.

These are what the ``layered_inspect``, ``layered_verify`` and ``layered_rotate``
commands run. They read headers through the same decoders as ``open()``, so an
inspection or a verification trusts nothing that ``open()`` would not.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from django.core.files.base import File

from layered_storage.backends import open_stored, save_stored
from layered_storage.exceptions import LayeredStorageError
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
    with open_stored(storage.inner, name) as stored:
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

    The stored bytes are first copied to a local temporary file (ciphertext only),
    the new version is encoded from that copy, and if saving it fails the original
    bytes are put back, so a failure never loses the file.

    Raises:
        LayeredStorageError: the file cannot be read, or the inner storage stored the
            new version under another name.
    """
    inner = storage.inner
    with tempfile.TemporaryFile(prefix="layered-rotate-") as original:
        with open_stored(inner, name) as stored:
            shutil.copyfileobj(stored, original, _COPY_CHUNK)
        verify_copy = _CopyStorage(storage, name, original)
        verify_copy.check()
        inner.delete(name)
        try:
            saved = storage.save(name, File(verify_copy.plaintext(), name))
        except BaseException:
            original.seek(0)
            if inner.exists(name):
                inner.delete(name)
            save_stored(inner, name, original)  # the stored bytes, as they were
            raise
        if saved != name:
            raise LayeredStorageError(
                f"Rotating {name!r}: the inner storage stored it as {saved!r}."
            )


class _CopyStorage:
    """Decode a local copy of a stored file as if it were still at ``name``."""

    def __init__(
        self, storage: LayeredStorage, name: str, copy: io.BufferedRandom
    ) -> None:
        self._storage = storage
        self._name = name
        self._copy = copy

    def plaintext(self) -> io.BufferedReader:
        self._copy.seek(0)
        decoded = self._storage.pipeline.decode(
            _Unclosable(self._copy), self._storage.context(self._name)
        )
        return io.BufferedReader(decoded)

    def check(self) -> None:
        with self.plaintext() as plain:
            while plain.read(_COPY_CHUNK):
                pass


class _Unclosable(io.RawIOBase):
    """A view of a file that the decoder may close without closing the file."""

    def __init__(self, file: io.BufferedRandom) -> None:
        super().__init__()
        self._file = file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()
