"""S3 through django-storages: streaming uploads and ranged, streaming reads.

``S3Storage.open()`` downloads the whole object before the first byte, so reads go
around it: one ranged GET at open brings the tail (where an LSE1 object keeps a copy
of its header, the LSZ1 seek table and the final segment) and, in its
Content-Range, the object's size, which is all that ``size()`` needs; a sequential
read then streams on one more GET, up to the tail; a seek opens a new ranged GET,
except for short forward skips (read through) and reads within the tail.
A file that fits under the multipart threshold is stored with one PutObject;
larger uploads go through s3transfer as S3Storage's own do, but with at most two
parts buffered. Neither carries a Content-Type or Content-Encoding guessed from the
name.
"""

from __future__ import annotations

import copy
import io
from typing import Any

from botocore.exceptions import ClientError
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

from layered_storage.backends.base import (
    STORED_CONTENT_TYPE,
    TAIL_FETCH,
    Backend,
    Body,
    RangedReader,
    total_size,
)
from layered_storage.exceptions import ObjectChangedError
from layered_storage.streams import ByteStream, PrefixedStream, ProducerStream


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


def upload(storage: S3Storage, name: str, stream: ProducerStream) -> str:
    """Upload ``stream`` as ``name``; return the name, cleaned as S3Storage does.

    A stream that ends within the transfer config's multipart threshold is sent
    once it is whole; a longer one as a multipart upload, which s3transfer aborts
    if it fails part-way. Either way no object and no orphaned parts remain after a
    failure.
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
    config = bounded_transfer_config(storage)
    head, ended = _read_up_to(stream, config.multipart_threshold)
    if ended:
        # One PutObject, without s3transfer's thread pool and futures: a small
        # file is stored in about half the time.
        client = storage.connection.meta.client
        client.put_object(Bucket=storage.bucket_name, Key=key, Body=head, **parameters)
    else:
        storage.bucket.Object(key).upload_fileobj(
            # s3transfer cuts parts with read(part size) and sends a short read as
            # a short part; BufferedReader reads whole parts across the seam.
            io.BufferedReader(PrefixedStream(head, stream)),
            ExtraArgs=parameters,
            Config=config,
        )
    return str(cleaned)


def _read_up_to(stream: ProducerStream, limit: int) -> tuple[bytes, bool]:
    """Read ``stream`` until it ends or more than ``limit`` bytes are in; return
    those bytes and whether the stream ended."""
    pieces = []
    count = 0
    for piece in stream.chunks():
        pieces.append(piece)
        count += len(piece)
        if count > limit:
            return b"".join(pieces), False
    return b"".join(pieces), True


def bounded_transfer_config(storage: S3Storage) -> Any:
    """Return the storage's s3transfer config, buffering at most two parts."""
    bounded = copy.copy(storage.transfer_config)
    # Not a TransferConfig argument, but s3transfer reads the attribute: without it
    # a non-seekable upload may hold ten parts (80 MiB) in memory.
    bounded.max_in_memory_upload_chunks = 2
    return bounded


class S3Reader(RangedReader):
    """A seekable reader over one S3 object: ranged GETs pinned with IfMatch."""

    def __init__(
        self, client: Any, request: dict[str, Any], size: int, tail: bytes
    ) -> None:
        super().__init__(request["Key"], size, tail)
        self._client = client
        self._request = request

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
        size = total_size(response.get("ContentRange"), len(tail))
        # Later GETs must see this very version: an object replaced meanwhile fails
        # clearly instead of mixing two versions' bytes.
        if response.get("ETag"):
            request["IfMatch"] = response["ETag"]
        reader = cls(client, request, size, tail)
        reader.last_modified = response.get("LastModified")
        return reader

    def _request_range(self, start: int, end: int) -> Body:
        try:
            response = self._client.get_object(
                Range=f"bytes={start}-{end}", **self._request
            )
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412:
                raise ObjectChangedError(
                    f"{self._request['Key']!r} was replaced in the bucket while it was "
                    "being read; open it again."
                ) from None
            raise
        body: Body = response["Body"]
        return body
