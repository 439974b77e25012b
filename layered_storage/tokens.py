"""File URLs: what ``LayeredStorage.url()`` returns and the signed token in it.

A signed URL is ``<include>/<token>/<basename>``: the token signs (with
``SECRET_KEY``, through ``django.core.signing`` and a salt of its own purpose) the
storage alias, the file name and an expiry time. The expiry is rounded up to a
bucket of a tenth of the lifetime (at least a minute), so the same file gets the
same URL for minutes and browsers and proxies can cache it; a timestamp signer
would change it every second. Nothing here does I/O: the admin's change list calls
``url()`` once per row.
"""

from __future__ import annotations

import math
import posixpath
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage, storages
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from layered_storage import conf

if TYPE_CHECKING:
    from layered_storage.storage import LayeredStorage

#: The purpose the signatures are bound to: no other signed value of the project
#: (a session, a password reset link) is ever accepted as a file token.
SALT = "layered_storage.tokens.file-url"
#: Django's own words for a storage without URLs (FileSystemStorage without
#: base_url); ``url()`` raises only ValueError, which templates and the admin expect.
NO_URL = "This file is not accessible via a URL."


@dataclass(frozen=True)
class FileToken:
    """What a signed URL grants: reading ``name`` of storage ``alias`` until
    ``expires`` (Unix time, seconds)."""

    alias: str
    name: str
    expires: int

    def sign(self) -> str:
        value = [self.alias, self.name, self.expires]
        return signing.Signer(salt=SALT).sign_object(value, compress=True)

    @classmethod
    def unsign(cls, token: str) -> FileToken:
        """Return the token that ``token`` signs.

        Raises:
            django.core.signing.BadSignature: not a token this project signed.
        """
        value: Any = signing.Signer(salt=SALT).unsign_object(token)
        if not (
            isinstance(value, list)
            and len(value) == 3
            and isinstance(value[0], str)
            and isinstance(value[1], str)
            and isinstance(value[2], int)
        ):
            raise signing.BadSignature("A file token holds alias, name and expiry.")
        return cls(value[0], value[1], value[2])


def expiry_time(lifetime: int, now: float) -> int:
    """Return when a URL made at ``now`` expires: at least ``lifetime`` seconds
    later, rounded up to a bucket of ``max(60, lifetime // 10)`` seconds."""
    bucket = max(60, lifetime // 10)
    return math.ceil((now + lifetime) / bucket) * bucket


def file_url(storage: LayeredStorage, name: str | None) -> str:
    """Return the URL of ``name`` under ``storage``'s policy (signed or protected).

    Raises:
        ValueError: no name, a storage that is not an entry of ``STORAGES``, or a
            URLconf without ``include("layered_storage.urls")``.
    """
    if not name:
        raise ValueError(NO_URL)
    basename = posixpath.basename(name)
    if not basename:
        raise ValueError(f"{NO_URL} {name!r} names a folder.")
    alias = storage_alias(storage)
    try:
        if storage.url_policy == "protected":
            return reverse("layered_storage:protected", args=[alias, name])
        expires = expiry_time(storage.url_expiry, time.time())
        token = FileToken(alias, name, expires).sign()
        return reverse("layered_storage:signed", args=[token, basename])
    except NoReverseMatch:
        raise ValueError(
            f"{NO_URL} The URLconf does not include layered_storage.urls; add "
            'path("files/", include("layered_storage.urls")) to it.'
        ) from None


def storage_alias(storage: LayeredStorage) -> str:
    """Return the alias of ``storage`` in ``settings.STORAGES``: the entry that
    built it, else one configured with the same class and arguments.

    Raises:
        ValueError: no entry matches, so the view could not find the storage.
    """
    from layered_storage.storage import LayeredStorage

    candidates: dict[str, Storage] = {}
    for alias, config in conf.storages_config().items():
        try:
            backend = import_string(config.get("BACKEND", ""))
            if isinstance(backend, type) and issubclass(backend, LayeredStorage):
                candidates[alias] = storages[alias]
        except (ImportError, TypeError, ImproperlyConfigured):
            continue  # the system checks report broken entries
    for alias, candidate in candidates.items():
        if candidate is storage:
            return alias
    signature = storage.deconstruct()  # type: ignore[attr-defined]
    for alias, candidate in candidates.items():
        if candidate.deconstruct() == signature:  # type: ignore[attr-defined]
            return alias
    raise ValueError(
        f"{NO_URL} {storage!r} is not an entry of settings.STORAGES, so no URL can "
        "name it; configure it there and use storage=storages[alias] (or a callable "
        "returning it) on the field."
    )
