"""The inner-backend interface, and the generic path that serves any storage.

A ``Backend`` is how the layered storage reads and writes stored bytes on one kind of
inner storage. It promises three things that a plain ``Storage`` does not:

- ``open`` returns a seekable binary reader that fetches only what is read;
- ``save`` stores an encoded stream so that a failure leaves nothing behind and
  never touches a file this save did not write;
- ``replace`` swaps a name's stored bytes for a complete new version, so that the
  name never holds nothing or a partial file (key rotation, adoption of plaintext).

Subclasses: ``filesystem.FileSystemBackend`` (a temporary file, then a link or an
atomic rename), and for object stores, whose uploads are atomic, ``s3.S3Backend``,
``azure.AzureBackend`` and ``gcs.GcsBackend``. Object stores read through a
``RangedReader``: the opening request brings the tail and the size, then one
streaming request per position read from. Any other storage gets ``Backend``
itself: its ``save()`` and ``open()``, with the best cleanup a plain ``Storage``
allows, and no ``replace``.

To support another storage, subclass ``Backend`` (override ``open``, ``save``,
``replace`` and set ``can_replace``), and for ranged reads subclass
``RangedReader`` with ``_request_range``; see ``azure.py`` for a small example.
"""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import re
import secrets
from abc import abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol

from django.core.files.base import File
from django.core.files.storage import InMemoryStorage, Storage

from layered_storage.exceptions import ConfigurationError, LayeredStorageError
from layered_storage.streams import ByteStream, ProducerStream, SeekableReader

logger = logging.getLogger(__name__)

#: The content type stored objects carry: the stored bytes are not the plaintext.
#: Not application/octet-stream, which some servers (SeaweedFS) treat as "unknown"
#: and replace with a guess from the name, e.g. application/gzip for "a.txt.gz".
STORED_CONTENT_TYPE = "application/x-layered-storage"
PARTIAL_PREFIX = ".layered-"
PARTIAL_SUFFIX = ".partial"


class NameTakenError(LayeredStorageError):
    """Another writer stored a file under the name while this save was encoding."""


class Backend:
    """Read and write the stored bytes of one inner storage."""

    #: Whether ``replace`` can swap a name's bytes atomically on this storage.
    can_replace = False
    #: Whether a save removes an upload's temporary file once it is stored, as the
    #: inner storage itself does (FileSystemStorage moves it into place,
    #: InMemoryStorage deletes it).
    takes_uploads = False

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def open(self, name: str) -> ByteStream:
        """Return a seekable binary reader over the stored bytes of ``name``.

        Raises:
            FileNotFoundError: the inner storage has no such file (passed through).
            ConfigurationError: the inner storage's files cannot seek.
        """
        # Keep Django's File wrapper: closing it is what the backend expects (closing
        # InMemoryStorage's underlying buffer instead would destroy the stored bytes).
        stored: Any = self.inner.open(name, "rb")
        underlying = getattr(stored, "file", stored)
        if not stored.seekable() or isinstance(underlying, io.TextIOBase):
            stored.close()
            raise ConfigurationError(
                f"{type(self.inner).__name__}.open(name, 'rb') returns a file that "
                "cannot seek or is not binary; layered files need random access to "
                "their header and tail.",
                check_id="layered_storage.E001",
            )
        reader: ByteStream = stored
        return reader

    def save(self, name: str, stream: ProducerStream, *, exact_name: bool) -> str:
        """Store ``stream`` as ``name`` (or, unless ``exact_name``, a free name like
        it); return the name used. On failure nothing this save wrote remains.

        Raises:
            NameTakenError: ``exact_name`` and the name was taken meanwhile.
        """
        # Whatever is at the name before the save started is not ours, and a
        # storage that overwrites in place may be given it: never remove it.
        existed = self.inner.exists(name)
        try:
            return self.inner.save(name, EncodedFile(stream, name))
        except BaseException:
            if not existed:
                self._discard_partial(name, stream)
            raise

    def replace(self, name: str, stream: ProducerStream) -> None:
        """Store ``stream`` as the new version of ``name``, all or nothing.

        Raises:
            ConfigurationError: this inner storage cannot replace a file atomically.
        """
        raise self.cannot_replace(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        """Return the folders and files directly in ``path``, as Django's
        ``Storage.listdir`` does (names relative to ``path``)."""
        return self.inner.listdir(path)

    def cannot_replace(self, name: str) -> ConfigurationError:
        """Return the error that says why ``replace`` is refused here."""
        return ConfigurationError(
            f"Rewriting {name!r} in place needs an inner storage that can replace a "
            f"file atomically; {type(self.inner).__name__} cannot (deleting and "
            "saving again could lose the file if the process died in between). "
            "FileSystemStorage, InMemoryStorage and django-storages' S3, Azure "
            "and Google Cloud storages can.",
            check_id="layered_storage.E001",
        )

    def _discard_partial(self, name: str, stream: ProducerStream) -> None:
        """Delete what a failed save left at ``name`` (free when the save began), if
        its stored bytes begin like those this save produced (for an encrypted file,
        its random salt makes that unique)."""
        if not stream.head:
            return  # nothing was produced, so nothing of this save can be stored
        try:
            if not self.inner.exists(name):
                return
            with self.open(name) as stored:
                head = stored.read(len(stream.head))
            if stream.head.startswith(head):
                self.inner.delete(name)
        except Exception:  # the original error matters more; report this one
            logger.exception("Could not remove the partial file %r.", name)


class MemoryBackend(Backend):
    """InMemoryStorage: the new version is stored whole under a temporary name,
    then copied into place, all in this process's memory.

    Its ``_save`` writes into an existing file in place, so writing to the name
    directly would let a failed save leave a partial file over another writer's.
    The copy cannot fail half-way short of the process dying, and then the whole
    storage goes with it.
    """

    can_replace = True
    takes_uploads = True

    def save(self, name: str, stream: ProducerStream, *, exact_name: bool) -> str:
        with self._complete(name, stream) as complete:
            return self.inner.save(name, complete)

    def replace(self, name: str, stream: ProducerStream) -> None:
        with self._complete(name, stream) as complete:
            if self.inner.exists(name):
                self.inner.delete(name)
            saved = self.inner.save(name, complete)
        if saved != name:
            raise LayeredStorageError(
                f"Replacing {name!r}: the inner storage stored it as {saved!r}."
            )

    @contextlib.contextmanager
    def _complete(self, name: str, stream: ProducerStream) -> Iterator[File]:  # type: ignore[type-arg]
        """Store ``stream`` under a temporary name; yield it open, then remove it."""
        # The name is fresh and random: whatever is stored there is this save's.
        temporary = partial_name(name)
        try:
            temporary = self.inner.save(temporary, EncodedFile(stream, name))
            with self.inner.open(temporary, "rb") as complete:
                yield complete
        finally:
            self.inner.delete(temporary)


def partial_name(name: str) -> str:
    """Return a fresh temporary name beside ``name`` for a write in progress."""
    folder = posixpath.dirname(name)
    return posixpath.join(
        folder, f"{PARTIAL_PREFIX}{secrets.token_hex(8)}{PARTIAL_SUFFIX}"
    )


def is_partial(basename: str) -> bool:
    """Return whether ``basename`` names the temporary file of an unfinished write
    (what a killed process can leave; ``LayeredStorage.listdir`` hides them)."""
    return basename.startswith(PARTIAL_PREFIX) and basename.endswith(PARTIAL_SUFFIX)


class EncodedFile(File):  # type: ignore[type-arg]
    """What a generic inner storage is handed: the encoded stream, no size or path.

    ``size`` is None so backends never measure by seeking, the name is the storage
    name (never a local path that ``os.path.getsize`` could misread), and there is
    no ``temporary_file_path`` for FileSystemStorage to move instead of reading.
    """

    content_type = STORED_CONTENT_TYPE
    DEFAULT_CHUNK_SIZE = 1024 * 1024  # FileSystemStorage writes chunk by chunk

    def __init__(self, stream: ByteStream, name: str) -> None:
        super().__init__(stream, name)  # type: ignore[arg-type]

    @property
    def size(self) -> None:  # type: ignore[override]
        return None

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes | bytearray]:
        """Yield the encoded bytes; without a ``chunk_size``, as the layers produce
        them (about 1 MiB each), saving the copy that cutting exact sizes takes."""
        stream = self.file
        if chunk_size is None and isinstance(stream, ProducerStream):
            yield from stream.chunks()
        else:
            yield from super().chunks(chunk_size)


def is_memory(inner: Storage) -> bool:
    return isinstance(inner, InMemoryStorage)


# -- reading object stores -------------------------------------------------------------

#: What the opening request of a ranged reader fetches: the end of the object, where
#: an LSE1 object keeps a copy of its header, the LSZ1 seek table and the final
#: segment, so that opening (and ``size()``) needs nothing more.
TAIL_FETCH = 256 * 1024
#: How much a ranged reader asks of its stream per read, at least.
READ_CHUNK = 256 * 1024
#: A forward skip this short reads through the open stream instead of a new request.
SKIP_LIMIT = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(-?\d+)/(\d+)")


class Body(Protocol):
    """The streaming body of one ranged response."""

    def read(self, size: int) -> bytes: ...  # up to ``size`` bytes; b"" at the end

    def close(self) -> None: ...


class RangedReader(SeekableReader):
    """A seekable reader over one stored object, fetching only what is read.

    The opening request brought ``tail`` (the object's last bytes) and the size,
    and maybe ``head`` (its first bytes) with ``body`` streaming on from there. A
    read inside either is served from memory; elsewhere a read streams from an open
    ranged request, which a short forward skip reads through and any other move
    replaces. Every request after the opening one is pinned to the version opened
    (subclasses: an ETag or generation precondition), so an object replaced
    meanwhile raises ``ObjectChangedError`` instead of mixing two versions.
    """

    def __init__(
        self,
        name: str,
        size: int,
        tail: bytes,
        *,
        head: bytes = b"",
        body: Body | None = None,
        requests: int = 1,
    ) -> None:
        super().__init__()
        self.name = name
        self._size = size
        self._tail = tail
        self._tail_start = size - len(tail)
        self._buffer = head
        self._buffer_start = 0
        self._body = body
        self._body_position = len(head) if body is not None else -1
        #: How many requests this reader sent (the opening ones included), and how
        #: many object bytes it took from them.
        self.requests = requests
        self.received = len(tail) + len(head)
        #: When the version opened was stored, if the opening response said (so a
        #: caller needs no request of its own for it).
        self.last_modified: datetime | None = None

    @property
    def size(self) -> int:
        return self._size

    @abstractmethod
    def _request_range(self, start: int, end: int) -> Body:
        """Send one request for bytes ``start`` to ``end`` (inclusive) of the version
        opened; return its streaming body.

        Raises:
            ObjectChangedError: the object was replaced or deleted since it opened.
        """

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        if self._position >= self._tail_start:
            data, start = self._tail, self._tail_start
        else:
            if not self._buffered():
                self._fetch(len(view))
            data, start = self._buffer, self._buffer_start
        offset = self._position - start
        count = min(len(view), len(data) - offset)
        view[:count] = data[offset : offset + count]
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed:
            self._drop_body()
            self._buffer = self._tail = b""
        super().close()

    def _buffered(self) -> bool:
        offset = self._position - self._buffer_start
        return 0 <= offset < len(self._buffer)

    def _fetch(self, wanted: int) -> None:
        """Put bytes from the current position (before the tail) into the buffer."""
        position = self._position
        skip = position - self._body_position
        if self._body is not None and 0 < skip <= SKIP_LIMIT:
            skipped = len(read_body(self._body, skip))  # cheaper than a new request
            self.received += skipped
            self._body_position += skipped
        if self._body is None or self._body_position != position:
            self._drop_body()
            # Up to the tail only: those bytes are here already.
            self.requests += 1
            self._body = self._request_range(position, self._tail_start - 1)
            self._body_position = position
        wanted = min(max(wanted, READ_CHUNK), self._tail_start - position)
        data = read_body(self._body, wanted)
        self.received += len(data)
        if not data:
            raise OSError(f"{self.name!r} ended early while being read.")
        self._buffer, self._buffer_start = data, position
        self._body_position += len(data)

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
            self._body_position = -1


def read_body(body: Body, size: int) -> bytes:
    """Return ``size`` bytes from ``body``, fewer only at its end."""
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        part = body.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def total_size(content_range: str | None, received: int) -> int:
    """Return the object size from a ranged response's Content-Range, or
    ``received`` when the response was whole (no Content-Range)."""
    match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
    return int(match.group(3)) if match else received


class ChunkBody:
    """A ``Body`` over an iterator of byte chunks (e.g. an HTTP client's)."""

    def __init__(self, chunks: Iterator[bytes], close: Any = None) -> None:
        self._chunks = chunks
        self._pending = b""
        self._close = close

    def read(self, size: int) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        part, self._pending = self._pending[:size], self._pending[size:]
        return part

    def close(self) -> None:
        self._pending = b""
        if self._close is not None:
            self._close()
