"""The inner-backend interface, and the generic path that serves any storage.

A ``Backend`` is how the layered storage reads and writes stored bytes on one kind of
inner storage. It promises three things that a plain ``Storage`` does not:

- ``open`` returns a seekable binary reader that fetches only what is read;
- ``save`` stores an encoded stream so that a failure leaves nothing behind and
  never touches a file this save did not write;
- ``replace`` swaps a name's stored bytes for a complete new version, so that the
  name never holds nothing or a partial file (key rotation, adoption of plaintext).

Subclasses: ``filesystem.FileSystemBackend`` (a temporary file, then a link or an
atomic rename), ``s3.S3Backend`` (uploads, which S3 makes atomic).
Any other storage gets ``GenericBackend``: its ``save()`` and ``open()``, with the
best cleanup a plain ``Storage`` allows, and no ``replace``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
import secrets
from collections.abc import Iterator
from typing import Any

from django.core.files.base import File
from django.core.files.storage import InMemoryStorage, Storage

from layered_storage.exceptions import ConfigurationError, LayeredStorageError
from layered_storage.streams import ByteStream, ProducerStream

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

    def cannot_replace(self, name: str) -> ConfigurationError:
        """Return the error that says why ``replace`` is refused here."""
        return ConfigurationError(
            f"Rewriting {name!r} in place needs an inner storage that can replace a "
            f"file atomically; {type(self.inner).__name__} cannot (deleting and "
            "saving again could lose the file if the process died in between). "
            "FileSystemStorage and S3Storage can.",
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
