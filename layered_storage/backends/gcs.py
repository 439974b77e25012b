"""Google Cloud Storage through django-storages: resumable uploads, ranged reads.

``GoogleCloudStorage.open()`` downloads the whole object before the first byte, so
reads go around it: one GET of the last ``TAIL_FETCH`` bytes (a suffix range)
brings the tail and, in its Content-Range, the size, with the object's generation;
later GETs ask for that generation, so an object replaced meanwhile fails instead of
mixing two versions. A sequential read streams on one more GET.

Saves send the encoded stream as one resumable upload in chunks of ``CHUNK_SIZE``
(one in memory at a time; a stream that fits in one chunk is one multipart
request). The object appears, or replaces the old one, only when the last chunk is
in; a failed save cancels its session, so nothing remains that could finish it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from django.utils.http import parse_http_date_safe
from google.api_core.exceptions import PreconditionFailed, from_http_response
from storages.backends.gcloud import GoogleCloudStorage
from storages.utils import clean_name

from layered_storage.backends.base import (
    STORED_CONTENT_TYPE,
    TAIL_FETCH,
    Backend,
    Body,
    NameTakenError,
    RangedReader,
    read_body,
    total_size,
)
from layered_storage.exceptions import ObjectChangedError
from layered_storage.streams import ProducerStream, read_exactly

logger = logging.getLogger(__name__)

#: Resumable upload chunk: a multiple of 256 KiB, as GCS requires.
CHUNK_SIZE = 8 * 1024 * 1024
#: Seconds to connect, and to wait for each response.
TIMEOUT = (10, 120)


class GcsBackend(Backend):
    """GoogleCloudStorage: ranged GETs to read, resumable uploads to write."""

    inner: GoogleCloudStorage
    can_replace = True

    def open(self, name: str) -> GcsReader:
        return GcsReader.open(self.inner, name)

    def save(self, name: str, stream: ProducerStream, *, exact_name: bool) -> str:
        # Without file_overwrite, GoogleCloudStorage picks free names: never replace.
        create_only = not self.inner.file_overwrite
        return upload(self.inner, name, stream, create_only=create_only)

    def replace(self, name: str, stream: ProducerStream) -> None:
        upload(self.inner, name, stream, create_only=False)


def upload(
    storage: GoogleCloudStorage,
    name: str,
    stream: ProducerStream,
    *,
    create_only: bool,
) -> str:
    """Store ``stream`` as ``name``; return the name, cleaned as the storage does.

    Raises:
        NameTakenError: ``create_only``, and an object has that name.
    """
    cleaned = clean_name(name)
    key = storage._normalize_name(cleaned)
    blob = storage.bucket.blob(key)
    parameters = dict(storage.get_object_parameters(key))
    acl = parameters.pop("acl", storage.default_acl)
    # The stored bytes are neither the plaintext's type nor gzip, whatever the name
    # suggests (GoogleCloudStorage guesses both from the suffix).
    parameters.pop("content_type", None)
    parameters.pop("content_encoding", None)
    for field, value in parameters.items():
        setattr(blob, field, value)
    blob.content_type = STORED_CONTENT_TYPE
    precondition = {"if_generation_match": 0} if create_only else {}
    first = read_exactly(stream, CHUNK_SIZE)
    try:
        if len(first) < CHUNK_SIZE:  # all of it: one request
            blob.upload_from_string(
                first,
                content_type=STORED_CONTENT_TYPE,
                predefined_acl=acl,
                timeout=TIMEOUT,
                **precondition,
            )
            return str(cleaned)
        session = blob.create_resumable_upload_session(
            content_type=STORED_CONTENT_TYPE,
            client=storage.client,
            predefined_acl=acl,
            timeout=TIMEOUT,
            **precondition,
        )
        http = storage.client._http
        try:
            _send(http, session, first, stream)
        except BaseException:
            _cancel(http, session, name)
            raise
    except PreconditionFailed:
        raise NameTakenError(f"{name!r} is taken.") from None
    return str(cleaned)


def _send(http: Any, session: str, first: bytes, stream: ProducerStream) -> None:
    """Send ``first`` and the rest of ``stream`` to the resumable ``session``."""
    offset = 0
    chunk = first
    while len(chunk) == CHUNK_SIZE:
        offset = _put(http, session, chunk, offset, final=False)
        chunk = read_exactly(stream, CHUNK_SIZE)
    _put(http, session, chunk, offset, final=True)


def _put(http: Any, session: str, chunk: bytes, offset: int, *, final: bool) -> int:
    """Send ``chunk`` (at ``offset``) until the server has it; return the new offset.

    Raises:
        GoogleAPICallError: the server refused it (``PreconditionFailed``: the
            object exists, for a create-only upload).
    """
    end = offset + len(chunk)
    sent = 0
    while True:
        part = chunk[sent:]
        total = str(end) if final else "*"
        first_byte = offset + sent
        span = f"{first_byte}-{end - 1}" if part else "*"
        response = http.request(
            "PUT",
            session,
            data=part,
            headers={"Content-Range": f"bytes {span}/{total}"},
            timeout=TIMEOUT,
        )
        if final and response.status_code in (200, 201):
            return end
        if response.status_code != 308:
            raise _error(response)
        # The server may keep fewer bytes than it was sent: send the rest again.
        persisted = _persisted(response.headers.get("Range"))
        if persisted >= end and not final:
            return end
        if persisted <= first_byte and part:
            raise OSError(f"The upload session kept none of bytes {span}.")
        sent = persisted - offset


def _persisted(value: str | None) -> int:
    """Return how many bytes a resumable session holds, from its ``Range`` header."""
    if not value or "-" not in value:
        return 0
    return int(value.rsplit("-", 1)[1]) + 1


def _cancel(http: Any, session: str, name: str) -> None:
    """Cancel ``session`` so that nothing can finish the upload (GCS answers 499)."""
    try:
        http.request("DELETE", session, timeout=TIMEOUT).close()
    except Exception:  # the original error matters more; report this one
        logger.exception("Could not cancel the upload session of %r.", name)


class GcsReader(RangedReader):
    """A seekable reader over one object: GETs of the generation opened."""

    def __init__(
        self,
        http: Any,
        url: str,
        key: str,
        generation: str | None,
        size: int,
        tail: bytes,
    ) -> None:
        super().__init__(key, size, tail)
        self._http = http
        self._url = url
        self._generation = generation

    @classmethod
    def open(cls, storage: GoogleCloudStorage, name: str) -> GcsReader:
        """Open ``name`` with one suffix-ranged GET of its last ``TAIL_FETCH`` bytes.

        Raises:
            FileNotFoundError: no such object.
        """
        key = storage._normalize_name(clean_name(name))
        client = storage.client
        base = client._connection.API_BASE_URL
        bucket = quote(storage.bucket_name, safe="")
        url = f"{base}/download/storage/v1/b/{bucket}/o/{quote(key, safe='')}"
        http = client._http
        response = _get(http, f"{url}?alt=media", f"bytes=-{TAIL_FETCH}")
        if response.status_code == 404:
            response.close()
            raise FileNotFoundError(f"File does not exist: {name}")
        generation = response.headers.get("X-Goog-Generation")
        if response.status_code == 416:  # an empty object has no last bytes
            response.close()
            return cls(http, url, key, generation, 0, b"")
        if response.status_code not in (200, 206):
            raise _error(response)
        try:
            tail = read_body(response.raw, TAIL_FETCH)
        finally:
            response.close()
        size = total_size(response.headers.get("Content-Range"), len(tail))
        reader = cls(http, url, key, generation, size, tail)
        modified = parse_http_date_safe(response.headers.get("Last-Modified", ""))
        if modified is not None:
            reader.last_modified = datetime.fromtimestamp(modified, timezone.utc)
        return reader

    def _request_range(self, start: int, end: int) -> Body:
        url = f"{self._url}?alt=media"
        if self._generation:
            url += f"&generation={self._generation}"
        response = _get(self._http, url, f"bytes={start}-{end}")
        served = response.headers.get("X-Goog-Generation")
        changed = response.status_code in (404, 412) or (
            response.status_code < 300 and served != self._generation
        )
        if changed:
            response.close()
            raise ObjectChangedError(
                f"{self.name!r} was replaced or deleted in the bucket while it was "
                "being read; open it again."
            )
        if response.status_code not in (200, 206):
            raise _error(response)
        return _ResponseBody(response)


class _ResponseBody:
    """The raw (never decompressed) body of a streaming ``requests`` response."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, size: int) -> bytes:
        data: bytes = self._response.raw.read(size)
        return data

    def close(self) -> None:
        self._response.close()


def _error(response: Any) -> Exception:
    """Return google-api-core's exception for a failed response."""
    error: Exception = from_http_response(response)  # type: ignore[no-untyped-call]
    return error


def _get(http: Any, url: str, byte_range: str) -> Any:
    # identity: GCS would otherwise be free to gzip the response on the way.
    headers = {"Range": byte_range, "Accept-Encoding": "identity"}
    return http.request("GET", url, headers=headers, stream=True, timeout=TIMEOUT)
