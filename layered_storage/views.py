"""Serving layered files over HTTP: the views behind ``url()``, and ``serve()``.

``serve(request, storage, name)`` answers a GET or HEAD of one file with the
plaintext, honouring Range and conditional requests (see ``http.py``); the two
views in ``urls.py`` check a signed token or a permission callable, then call it.
The body (``serving.py``) decrypts only the segments the answer needs and has no
``fileno``.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.core.files.storage import storages
from django.core.signing import BadSignature
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    StreamingHttpResponse,
)
from django.utils.http import http_date
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from layered_storage import conf, http
from layered_storage.exceptions import LayeredStorageError
from layered_storage.serving import OpenedFile, open_served, response_body
from layered_storage.tokens import FileToken

if TYPE_CHECKING:
    from layered_storage.storage import LayeredStorage

logger = logging.getLogger(__name__)

METHODS = ("GET", "HEAD")
#: Cache-Control of an answer that a cookie authorised.
PRIVATE = "private, no-cache"
#: What every answer that carries file bytes says to browsers and proxies.
SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # nginx would otherwise spill a large response, plaintext, to a temp file.
    "X-Accel-Buffering": "no",
}
#: For types that run script: nothing loads, and the document is sandboxed.
ACTIVE_CSP = "default-src 'none'; sandbox"

Permission = Callable[[HttpRequest, str, str], bool]


# -- the views of urls.py ----------------------------------------------------------


@csrf_exempt  # reads only: a POST is answered 405, not refused as a forgery
def signed_file(request: HttpRequest, token: str, filename: str) -> HttpResponseBase:
    """Serve the file that a signed URL from ``url()`` names, until it expires."""
    if request.method not in METHODS:
        return _not_allowed()
    try:
        grant = FileToken.unsign(token)
    except BadSignature:
        return _refusal(403, "This link is not valid.")
    if posixpath.basename(grant.name) != filename:
        return _refusal(404, "Not found.")
    now = time.time()
    if grant.expires <= now:
        return _refusal(410, "This link has expired.")
    storage = served_storage(grant.alias, "signed")
    if storage is None:
        return _refusal(404, "Not found.")
    max_age = int(grant.expires - now)
    return serve(
        request, storage, grant.name, cache_control=f"private, max-age={max_age}"
    )


@csrf_exempt
def protected_file(request: HttpRequest, alias: str, name: str) -> HttpResponseBase:
    """Serve ``name`` of a ``"protected"`` storage to whom its permission allows.

    The permission is asked before anything about the file is looked up, so a
    refused request learns nothing of whether it exists.
    """
    if request.method not in METHODS:
        return _not_allowed()
    storage = served_storage(alias, "protected")
    if storage is None:
        return _refusal(404, "Not found.")
    if not permission(storage)(request, alias, name):
        response = _refusal(403, "You may not read this file.")
        response["Vary"] = "Cookie"
        return response
    return serve(request, storage, name)


def served_storage(alias: str, policy: str) -> LayeredStorage | None:
    """Return storage ``alias`` if it is a layered storage serving under ``policy``."""
    from layered_storage.storage import LayeredStorage

    if alias not in conf.storages_config():
        return None
    storage = storages[alias]
    if not isinstance(storage, LayeredStorage) or storage.url_policy != policy:
        return None
    return storage


def permission(storage: LayeredStorage) -> Permission:
    """Return the callable that authorises requests to ``storage``'s files."""
    if storage.permission is None:
        return is_staff
    check: Permission = import_string(storage.permission)
    return check


def is_staff(request: HttpRequest, storage_alias: str, name: str) -> bool:
    """The default permission: an active staff user."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


# -- serving one file --------------------------------------------------------------


def serve(
    request: HttpRequest,
    storage: LayeredStorage,
    name: str,
    *,
    filename: str | None = None,
    attachment: bool | None = None,
    cache_control: str = PRIVATE,
) -> HttpResponseBase:
    """Return the response to a GET or HEAD of ``name`` in ``storage``.

    For views that check their own permissions first. ``filename`` is the name
    shown for saving (default: the basename of ``name``); ``attachment`` forces
    (True) or forbids (False) a download where the type allows showing it inline
    (default: inline for images, video, audio, PDF and plain text, and
    ``?download=1`` forces a download); ``cache_control`` replaces the default
    ``"private, no-cache"`` (answers then vary by cookie).
    """
    if request.method not in METHODS:
        return _not_allowed()
    # GZipMiddleware would compress the body and drop its Content-Length, which
    # breaks ranges: this view's answers are never content-encoded, so it drops
    # the request's offer to accept them.
    request.META.pop("HTTP_ACCEPT_ENCODING", None)
    try:
        opened = open_served(storage, name)
    except FileNotFoundError:
        return _refusal(404, "Not found.")
    except LayeredStorageError as exc:
        return _unreadable(name, exc)
    try:
        return _respond(request, opened, name, filename, attachment, cache_control)
    except LayeredStorageError as exc:  # the first chunk failed: no byte went out
        opened.reader.close()
        return _unreadable(name, exc)
    except BaseException:
        opened.reader.close()
        raise


def _respond(
    request: HttpRequest,
    opened: OpenedFile,
    name: str,
    filename: str | None,
    attachment: bool | None,
    cache_control: str,
) -> HttpResponseBase:
    """Return the answer for an opened file; the reader goes to the body or is
    closed here."""
    headers = {key.lower(): value for key, value in request.headers.items()}
    validators = http.Validators(opened.etag, opened.last_modified)
    common = _validator_headers(opened, cache_control)
    status = http.precondition_status(headers, validators)
    if status is not None:
        opened.reader.close()
        response: HttpResponseBase = (
            HttpResponseNotModified() if status == 304 else HttpResponse(status=status)
        )
        return _with(response, common)
    size = opened.size
    choice = http.select_range(headers, size, validators)
    if choice.status == 416:
        opened.reader.close()
        response = HttpResponse(status=416, content_type="text/plain")
        return _with(response, {**common, "Content-Range": f"bytes */{size}"})
    content_type = http.content_type(name)
    if attachment is None:
        attachment = request.GET.get("download") in ("1", "true")
    inline = http.is_inline(content_type) and not attachment
    fields = {
        **common,
        **SAFETY_HEADERS,
        "Content-Disposition": http.content_disposition(
            filename or posixpath.basename(name), attachment=not inline
        ),
    }
    if http.is_active(content_type):
        fields["Content-Security-Policy"] = ACTIVE_CSP
    byte_range = choice.range or http.ByteRange(0, size - 1)
    if choice.range is not None:
        fields["Content-Range"] = choice.range.content_range(size)
    length = byte_range.length if size else 0
    fields["Content-Length"] = str(length)
    if request.method == "HEAD":
        opened.reader.close()
        response = HttpResponse(status=choice.status, content_type=content_type)
        return _with(response, fields)
    body = response_body(request, opened.reader, name, byte_range.start, length)
    response = StreamingHttpResponse(
        body, status=choice.status, content_type=content_type
    )
    return _with(response, fields)


def _validator_headers(opened: OpenedFile, cache_control: str) -> dict[str, str]:
    """Return the headers that every answer about the file carries (304 too)."""
    fields = {"Accept-Ranges": "bytes", "Cache-Control": cache_control}
    if cache_control == PRIVATE:
        fields["Vary"] = "Cookie"
    if opened.etag is not None:
        fields["ETag"] = str(opened.etag)
    if opened.last_modified is not None:
        fields["Last-Modified"] = http_date(opened.last_modified)
    return fields


def _with(response: HttpResponseBase, fields: dict[str, str]) -> HttpResponseBase:
    for key, value in fields.items():
        response[key] = value
    return response


def _not_allowed() -> HttpResponse:
    response = _refusal(405, "Only GET and HEAD are allowed.")
    response["Allow"] = ", ".join(METHODS)
    return response


def _refusal(status: int, message: str) -> HttpResponse:
    response = HttpResponse(
        message + "\n", status=status, content_type="text/plain; charset=utf-8"
    )
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _unreadable(name: str, exc: Exception) -> HttpResponse:
    # The message names the file and the failure, never bytes of it.
    logger.error("Could not serve %r: %s", name, exc)
    return _refusal(500, "The file could not be read.")


__all__ = ["serve"]
