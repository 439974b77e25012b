"""Azure Blob Storage through django-storages: staged blocks up, ranged streams down.

``AzureStorage.open()`` downloads the whole blob before the first byte, so reads go
around it. Azure has no suffix ranges (``bytes=-N``), so the opening GET asks for
the whole blob and reads only its first ``TAIL_FETCH`` bytes: that brings the size
(and, for a small blob, everything); a larger blob then takes one ranged GET of its
tail, and a sequential read streams on from the opening GET, so it costs the same
two requests as on S3. Later requests carry ``If-Match`` with the ETag opened.

Saves stage the encoded stream as blocks of ``BLOCK_SIZE`` (one in memory at a
time) and commit the block list, which makes the new blob appear, or replace the old
one, atomically; a stream that fits in one block is one Put Blob. The blob gets the
stored content type and no Content-Encoding, whatever the name suggests.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timezone
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
)
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobClient, BlobPrefix, ContentSettings
from django.utils.http import parse_http_date_safe
from storages.backends.azure_storage import AzureStorage
from storages.utils import clean_name

from layered_storage.backends.base import (
    STORED_CONTENT_TYPE,
    TAIL_FETCH,
    Backend,
    Body,
    ChunkBody,
    NameTakenError,
    RangedReader,
    read_body,
    total_size,
)
from layered_storage.exceptions import ObjectChangedError
from layered_storage.streams import ProducerStream, read_exactly

#: Staged block size: 50,000 blocks of 8 MiB allow blobs of 390 GiB.
BLOCK_SIZE = 8 * 1024 * 1024


class AzureBackend(Backend):
    """AzureStorage: ranged GETs to read, staged blocks and a commit to write.

    A failed save commits nothing, so no blob appears and none is changed; the
    blocks it staged stay uncommitted, invisible (no blob, not listed) until the
    service discards them (a week later, or at the name's next commit).
    """

    inner: AzureStorage
    can_replace = True

    def open(self, name: str) -> AzureReader:
        return AzureReader.open(self.inner, name)

    def save(self, name: str, stream: ProducerStream, *, exact_name: bool) -> str:
        # Without overwrite_files, AzureStorage never replaces a blob: neither do we.
        return upload(self.inner, name, stream, overwrite=self.inner.overwrite_files)

    def replace(self, name: str, stream: ProducerStream) -> None:
        upload(self.inner, name, stream, overwrite=True)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        # AzureStorage.listdir returns every blob below ``path`` by its full name
        # (and, for "", every blob in the container, whatever its location).
        prefix = self.inner._normalize_name(clean_name(path)).strip("/")
        prefix = f"{prefix}/" if prefix else ""
        folders: list[str] = []
        files: list[str] = []
        listing = self.inner.client.walk_blobs(name_starts_with=prefix, delimiter="/")
        for item in listing:
            relative = str(item.name)[len(prefix) :]
            if isinstance(item, BlobPrefix):
                folders.append(relative.rstrip("/"))
            else:
                files.append(relative)
        return folders, files


def upload(
    storage: AzureStorage, name: str, stream: ProducerStream, *, overwrite: bool
) -> str:
    """Store ``stream`` as ``name``; return the name, cleaned as AzureStorage does.

    Raises:
        NameTakenError: not ``overwrite``, and a blob has that name.
    """
    cleaned = clean_name(name)
    blob = storage.client.get_blob_client(storage._get_valid_path(name))
    settings = content_settings(storage, name)
    condition = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
    first = read_exactly(stream, BLOCK_SIZE)
    try:
        if len(first) < BLOCK_SIZE:  # all of it: one request
            blob.upload_blob(
                first,
                overwrite=overwrite,
                content_settings=settings,
                timeout=storage.timeout,
            )
            return str(cleaned)
        blocks = _stage_blocks(storage, blob, first, stream)
        blob.commit_block_list(
            blocks, content_settings=settings, timeout=storage.timeout, **condition
        )
    except (ResourceExistsError, ResourceModifiedError) as error:
        raise NameTakenError(f"{name!r} is taken: {error.reason}") from None
    return str(cleaned)


def _stage_blocks(
    storage: AzureStorage, blob: BlobClient, first: bytes, stream: ProducerStream
) -> list[str]:
    """Stage ``first`` and the rest of ``stream`` as blocks; return their ids."""
    # Ids unique to this save, so two writers staging on one name never mix blocks.
    prefix = secrets.token_hex(8)
    blocks: list[str] = []
    block = first
    while block:
        block_id = base64.b64encode(f"{prefix}-{len(blocks):06d}".encode()).decode()
        blob.stage_block(block_id, block, timeout=storage.timeout)
        blocks.append(block_id)
        block = read_exactly(stream, BLOCK_SIZE)
    return blocks


def content_settings(storage: AzureStorage, name: str) -> ContentSettings:
    """Return the storage's content settings for ``name`` with the stored type.

    The stored bytes are neither the plaintext's type nor gzip, whatever the name
    suggests (AzureStorage guesses both from the suffix).
    """
    parameters: dict[str, Any] = {"cache_control": storage.cache_control}
    parameters.update(storage.get_object_parameters(name))
    parameters["content_type"] = STORED_CONTENT_TYPE
    parameters.pop("content_encoding", None)
    return ContentSettings(**parameters)


class AzureReader(RangedReader):
    """A seekable reader over one blob: GETs pinned to its ETag with If-Match."""

    def __init__(
        self,
        blob: BlobClient,
        etag: str | None,
        size: int,
        tail: bytes,
        **opened: Any,
    ) -> None:
        super().__init__(blob.blob_name, size, tail, **opened)
        self._blob = blob
        self._etag = etag

    @classmethod
    def open(cls, storage: AzureStorage, name: str) -> AzureReader:
        """Open ``name``: one GET streaming the whole blob, of which only the first
        ``TAIL_FETCH`` bytes are read now, then, for a larger blob, a ranged GET of
        its last ``TAIL_FETCH`` bytes.

        Raises:
            FileNotFoundError: no such blob.
        """
        blob = storage.client.get_blob_client(storage._get_valid_path(name))
        response = _get(blob, "bytes=0-", None)
        if response.status_code == 404:
            response.close()
            raise FileNotFoundError(f"File does not exist: {name}")
        if response.status_code == 416:  # an empty blob has no first byte
            response.close()
            return cls(blob, response.headers.get("ETag"), 0, b"")
        _raise_for_status(response, name)
        headers = response.headers
        size = total_size(
            headers.get("Content-Range"), int(headers.get("Content-Length", 0))
        )
        etag = headers.get("ETag")
        body = ChunkBody(response.iter_raw(), response.close)
        if size <= TAIL_FETCH:
            with_body = read_body(body, size)
            body.close()
            reader = cls(blob, etag, size, with_body)
        else:
            head = read_body(body, TAIL_FETCH)
            reader = cls(blob, etag, size, b"", head=head, body=body)
            tail_start = max(size - TAIL_FETCH, len(head))
            tail_body = reader._request_range(tail_start, size - 1)
            try:
                tail = read_body(tail_body, size - tail_start)
            finally:
                tail_body.close()
            reader._set_tail(tail)
            reader.requests += 1
            reader.received += len(tail)
        reader.last_modified = _modified(headers.get("Last-Modified"))
        return reader

    def _set_tail(self, tail: bytes) -> None:
        self._tail = tail
        self._tail_start = self._size - len(tail)

    def _request_range(self, start: int, end: int) -> Body:
        response = _get(self._blob, f"bytes={start}-{end}", self._etag)
        if response.status_code in (404, 412):
            response.close()
            raise ObjectChangedError(
                f"{self.name!r} was replaced or deleted in the container while it "
                "was being read; open it again."
            )
        _raise_for_status(response, self.name)
        return ChunkBody(response.iter_raw(), response.close)


def _get(blob: BlobClient, byte_range: str, etag: str | None) -> Any:
    """Send one streaming GET of ``byte_range`` through the blob client's pipeline
    (its authentication, retries and transport)."""
    headers = {"x-ms-range": byte_range, "x-ms-version": blob.api_version}
    if etag:
        headers["If-Match"] = etag
    request = HttpRequest("GET", blob.url, headers=headers)
    # The SDK's downloader reads a first chunk of up to 32 MiB into memory and
    # cannot stream one request: send the request itself.
    return blob._client._send_request(request, stream=True)


def _raise_for_status(response: Any, name: str) -> None:
    if response.status_code >= 400:
        response.read()
        raise HttpResponseError(
            message=f"Reading {name!r} from Azure failed.", response=response
        )


def _modified(value: str | None) -> datetime | None:
    timestamp = parse_http_date_safe(value) if value else None
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc)
