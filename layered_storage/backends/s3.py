"""S3 through django-storages: streaming uploads and ranged, streaming reads.

``S3Storage.open()`` downloads the whole object before the first byte, so reads go
around it: one ranged GET at open brings the tail (where an LSE1 object keeps a copy
of its header, the LSZ1 seek table and the final segment) and, in its
Content-Range, the object's size, which is all that ``size()`` needs; a sequential
read then streams on one more GET, up to the tail; a seek opens a new ranged GET,
except for short forward skips (read through) and reads within the tail.
Uploads go through s3transfer as S3Storage's own do, but with at most two parts
buffered and without a Content-Type or Content-Encoding guessed from the name.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from layered_storage.backends.base import STORED_CONTENT_TYPE, Backend
from layered_storage.exceptions import ObjectChangedError
from layered_storage.streams import ByteStream, ProducerStream, SeekableReader

TAIL_FETCH = 256 * 1024
CHUNK = 256 * 1024
SKIP_LIMIT = 1024 * 1024  # read through a forward skip this short instead of a GET
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class S3Backend(Backend):
    """S3Storage: ranged GETs to read, uploads to write.

    S3 makes an upload atomic: the object appears, or is replaced, only when the
    last part is in, and s3transfer aborts a multipart upload that fails. So a
    failed save leaves nothing and deletes nothing (an older version under the same
    name stays as it was), and ``replace`` is an ordinary upload.
    """

    inner: S3Storage
    can_replace = True

    def open(self, name: str) -> ByteStream:
        return S3Reader.open(self.inner, name)

    def save(self, name: str, stream: ProducerStream, *, exact_name: bool) -> str:
        return upload(self.inner, name, stream)

    def replace(self, name: str, stream: ProducerStream) -> None:
        upload(self.inner, name, stream)


def upload(storage: S3Storage, name: str, stream: ByteStream) -> str:
    """Upload ``stream`` as ``name``; return the name, cleaned as S3Storage does.

    A failure part-way makes s3transfer abort the multipart upload, so neither an
    object nor orphaned parts remain.
    """
    cleaned = clean_name(name)
    key = storage._normalize_name(cleaned)
    parameters = dict(storage.get_object_parameters(name))
    # The stored bytes are neither the plaintext's type nor gzip/br/xz, whatever
    # the name suggests (S3Storage would guess both from the suffix).
    parameters["ContentType"] = STORED_CONTENT_TYPE
    parameters.pop("ContentEncoding", None)
    if "ACL" not in parameters and storage.default_acl:
        parameters["ACL"] = storage.default_acl  # as S3Storage's own save does
    storage.bucket.Object(key).upload_fileobj(
        stream, ExtraArgs=parameters, Config=bounded_transfer_config(storage)
    )
    return str(cleaned)


def bounded_transfer_config(storage: S3Storage) -> Any:
    """Return the storage's s3transfer config, buffering at most two parts."""
    bounded = copy.copy(storage.transfer_config)
    # Not a TransferConfig argument, but s3transfer reads the attribute: without it
    # a non-seekable upload may hold ten parts (80 MiB) in memory.
    bounded.max_in_memory_upload_chunks = 2
    return bounded


class S3Reader(SeekableReader):
    """A seekable reader over one S3 object, fetching only what is read."""

    def __init__(
        self, client: Any, request: dict[str, Any], size: int, tail: bytes
    ) -> None:
        super().__init__()
        self._client = client
        self._request = request
        self._size = size
        self._tail = tail
        self._tail_start = size - len(tail)
        self._buffer = b""
        self._buffer_start = 0
        self._body: Any = None
        self._body_position = -1
        #: How many GET requests this reader made (the opening one included), and
        #: how many object bytes it took from them.
        self.requests = 1
        self.received = len(tail)
        #: When the version opened was stored, from the opening GET (so a caller
        #: needs no HEAD request, as S3Storage.get_modified_time makes, for it).
        self.last_modified: datetime | None = None

    @classmethod
    def open(cls, storage: S3Storage, name: str) -> S3Reader:
        """Open ``name`` with one ranged GET of its last ``TAIL_FETCH`` bytes.

        Raises:
            FileNotFoundError: no such object.
        """
        from storages.backends.s3 import _filter_download_params

        key = storage._normalize_name(clean_name(name))
        request = {
            "Bucket": storage.bucket_name,
            "Key": key,
            **_filter_download_params(storage.get_object_parameters(name)),
        }
        client = storage.connection.meta.client
        try:
            response = client.get_object(Range=f"bytes=-{TAIL_FETCH}", **request)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from None
            if status == 416:  # an empty object has no last bytes
                return cls(client, request, 0, b"")
            raise
        with response["Body"] as body:
            tail = body.read()
        size = _total_size(response, len(tail))
        # Later GETs must see this very version: an object replaced meanwhile fails
        # clearly instead of mixing two versions' bytes.
        if response.get("ETag"):
            request["IfMatch"] = response["ETag"]
        reader = cls(client, request, size, tail)
        reader.last_modified = response.get("LastModified")
        return reader

    @property
    def size(self) -> int:
        return self._size

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

    # -- fetching ------------------------------------------------------------------

    def _buffered(self) -> bool:
        offset = self._position - self._buffer_start
        return 0 <= offset < len(self._buffer)

    def _fetch(self, wanted: int) -> None:
        """Put bytes from the current position (before the tail) into the buffer."""
        position = self._position
        skip = position - self._body_position
        if self._body is not None and 0 < skip <= SKIP_LIMIT:
            skipped = len(self._body.read(skip))  # cheaper than a new request
            self.received += skipped
            self._body_position += skipped
        if self._body is None or self._body_position != position:
            self._drop_body()
            # Up to the tail only: those bytes are here already.
            byte_range = f"bytes={position}-{self._tail_start - 1}"
            self._body = self._request_range(byte_range)["Body"]
            self._body_position = position
        data = self._body.read(min(max(wanted, CHUNK), self._tail_start - position))
        self.received += len(data)
        if not data:
            raise OSError(f"{self._request['Key']!r} ended early while being read.")
        self._buffer, self._buffer_start = data, position
        self._body_position += len(data)

    def _request_range(self, byte_range: str) -> dict[str, Any]:
        """Send one ranged GET of the version opened.

        Raises:
            ObjectChangedError: the object was replaced since it was opened.
        """
        self.requests += 1
        try:
            response: dict[str, Any] = self._client.get_object(
                Range=byte_range, **self._request
            )
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412:
                raise ObjectChangedError(
                    f"{self._request['Key']!r} was replaced in the bucket while it was "
                    "being read; open it again."
                ) from None
            raise
        return response

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
            self._body_position = -1


def _total_size(response: dict[str, Any], received: int) -> int:
    """Return the object size from a ranged GET's Content-Range (or what came)."""
    match = _CONTENT_RANGE.fullmatch(response.get("ContentRange") or "")
    return int(match.group(3)) if match else received
