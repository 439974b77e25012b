"""Opening a layered file for serving, and the body that streams its plaintext.

``open_served`` reads what the response headers need (the end of the stored file:
size, the authenticated header for the ETag) and keeps the reader for the body. A
``RangeBody`` yields exactly the requested bytes from it, decrypting only the
segments they are in, as a plain iterator for WSGI or an asynchronous one for ASGI,
and has no ``fileno`` for a server's sendfile to find.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest

from layered_storage import http
from layered_storage.exceptions import TruncatedFileError
from layered_storage.layers.encryption import DecryptingReader
from layered_storage.streams import BlockReader

if TYPE_CHECKING:
    from layered_storage.storage import LayeredStorage

logger = logging.getLogger(__name__)

#: Plaintext bytes per chunk of a response body.
CHUNK = 256 * 1024


# -- opening -----------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedFile:
    """A plaintext reader of a file, with what its headers need."""

    reader: BlockReader
    size: int
    etag: http.EntityTag | None
    last_modified: int | None


def open_served(storage: LayeredStorage, name: str) -> OpenedFile:
    """Open ``name`` for serving: header and tail only, the last segment verified.

    Raises:
        FileNotFoundError: no such file.
        LayeredStorageError: the file cannot be authenticated or read.
    """
    reader = storage._decode(name)
    try:
        size = reader.size  # authenticates the final segment
        modified = _modified_time(storage, name, reader)
        etag = _etag(reader, size, modified)
    except BaseException:
        reader.close()
        raise
    return OpenedFile(reader, size, etag, None if modified is None else int(modified))


def _modified_time(
    storage: LayeredStorage, name: str, reader: BlockReader
) -> float | None:
    """Return when the stored file was written, from its reader when that knows
    (an S3 object's opening GET), else from the inner storage."""
    known = getattr(_stored_stream(reader), "last_modified", None)
    if isinstance(known, datetime):
        return known.timestamp()
    try:
        return storage.get_modified_time(name).timestamp()
    except (NotImplementedError, AttributeError):
        return None


def _etag(reader: BlockReader, size: int, modified: float | None) -> http.EntityTag:
    """Return a strong ETag, derived one way from what identifies this version.

    An encrypted file's header carries a fresh random salt and a commitment to it
    on every write, so its hash changes with every write and needs nothing but the
    header; other files fall back on size and modification time, as web servers do.
    """
    header = _encryption_header(reader)
    if header is not None:
        material = b"lse1\x00" + header
    elif modified is not None:
        material = f"plain\x00{size}\x00{modified!r}".encode()
    else:
        material = f"plain\x00{size}".encode()
    digest = hashlib.sha256(b"layered_storage etag\x00" + material).digest()
    return http.EntityTag('"' + base64.urlsafe_b64encode(digest[:18]).decode() + '"')


def _encryption_header(reader: BlockReader) -> bytes | None:
    """Return the authenticated LSE1 header of the file ``reader`` decodes."""
    current: object = reader
    while current is not None:
        if isinstance(current, DecryptingReader):
            return current._header_bytes
        current = getattr(current, "_source", None)
    return None


def _stored_stream(reader: BlockReader) -> object:
    """Return the stream of stored bytes under ``reader``'s chain of decoders (each
    decoder, and a decrypted payload held whole, knows its ``_source``)."""
    current: object = reader
    while (below := getattr(current, "_source", None)) is not None:
        current = below
    return current


# -- the body ----------------------------------------------------------------------


def response_body(
    request: HttpRequest, reader: BlockReader, name: str, start: int, length: int
) -> SyncBody | AsyncBody:
    """Return the body of ``length`` bytes from ``start``, its first chunk read.

    Reading it here means a file whose first segment fails is answered 500 with
    no body at all.
    """
    body_class = AsyncBody if isinstance(request, ASGIRequest) else SyncBody
    body = body_class(reader, name, start, length)
    try:
        body.prefetch()
    except BaseException:
        body.close()
        raise
    return body


class RangeBody:
    """Exactly ``length`` plaintext bytes of ``reader`` from ``start``, then close.

    Bytes come only from segments that authenticated; a failure part-way is logged
    and raised, so the server cuts the connection short of Content-Length (the
    client sees an incomplete response, never unverified bytes). Closing is
    idempotent and waits for a read in progress in another thread.
    """

    def __init__(self, reader: BlockReader, name: str, start: int, length: int):
        self._reader = reader
        self._name = name
        self._remaining = length
        self._first: bytes | None = None
        self._lock = threading.Lock()
        self.closed = False
        if length:
            reader.seek(start)

    def prefetch(self) -> None:
        self._first = self._read()

    def next_chunk(self) -> bytes:
        """Return the next chunk, or b"" at the end."""
        with self._lock:
            if self._first is not None:
                chunk, self._first = self._first, None
                return chunk
            return self._read()

    def _read(self) -> bytes:
        if self.closed or not self._remaining:
            return b""
        try:
            chunk = self._reader.read(min(CHUNK, self._remaining))
            if not chunk:
                raise TruncatedFileError(
                    f"{self._name!r} ended {self._remaining} bytes early while being "
                    "served: it changed while being read."
                )
        except Exception as exc:
            logger.error("Stopped serving %r part-way: %s", self._name, exc)
            raise
        self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._first = None
                self._reader.close()
                stored = _stored_stream(self._reader)
                requests = getattr(stored, "requests", None)
                if requests is not None:
                    logger.debug(
                        "Served %r with %d GET requests, %d bytes received.",
                        self._name,
                        requests,
                        getattr(stored, "received", 0),
                    )


class SyncBody(RangeBody):
    """The body as a plain iterator, for WSGI."""

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.next_chunk():
            yield chunk


class AsyncBody(RangeBody):
    """The body as an asynchronous iterator, for ASGI: reads and decryption run in
    a worker thread, never on the event loop."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = sync_to_async(self.next_chunk, thread_sensitive=False)
        try:
            while chunk := await read():
                yield chunk
        finally:
            # A client that went away cancels Django's task without closing the
            # response; closing here releases the stored file all the same.
            await sync_to_async(self.close, thread_sensitive=False)()
