"""System checks: every misconfiguration of a layered storage, with a hint.

``manage.py check`` builds each layered storage in ``settings.STORAGES`` the way a
request would and reports, instead of a traceback at the first save:

- ``layered_storage.E001``: the inner alias is not in ``STORAGES`` (or unusable).
- ``layered_storage.E002``: the inner chain loops back to a layered storage.
- ``layered_storage.E003``: an unknown layer.
- ``layered_storage.E004``: invalid layer options or stack.
- ``layered_storage.E005``: an encryption layer but no keys.
- ``layered_storage.E006``: a key that is not base64 or not 32 bytes.
- ``layered_storage.E007``: the same key twice.
- ``layered_storage.E008``: invalid storage options or ``LAYERED_STORAGE``.
- ``layered_storage.W001``: compression after encryption (gains nothing).
- ``layered_storage.E009``: ``url()`` points at the serving view, which the URLconf
  does not include.
- ``layered_storage.W002``: reading plaintext or unencrypted files is allowed.
- ``layered_storage.W003``: ``url()`` refuses, and the admin (which links every
  file through ``url()``) is installed.
- ``layered_storage.W004``: GZipMiddleware is on while files are served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from layered_storage import conf
from layered_storage.exceptions import ConfigurationError

HINTS = {
    "layered_storage.E001": "Set OPTIONS['inner'] to the alias of another entry of "
    "STORAGES, e.g. a FileSystemStorage or S3Storage.",
    "layered_storage.E002": "Point OPTIONS['inner'] at a storage that does not lead "
    "back here.",
    "layered_storage.E003": "Use 'zstd', 'aes-gcm' or 'chacha20-poly1305', or the "
    "dotted path of a subclass of one of their classes (files must stay readable, "
    "and this release reads the LSZ1 and LSE1 formats only).",
    "layered_storage.E004": "See the layer reference in the docs for each option's "
    "type and range.",
    "layered_storage.E005": "Run 'manage.py layered_keygen' and put the key in "
    "LAYERED_STORAGE['KEYS'] (read it from the environment or a secret manager).",
    "layered_storage.E006": "Keys are 32 random bytes in url-safe base64; "
    "'manage.py layered_keygen' prints one.",
    "layered_storage.E007": "Remove the duplicate key from the list.",
    "layered_storage.E008": "See the settings reference in the docs.",
    "layered_storage.E009": 'Add path("files/", include("layered_storage.urls")) to '
    "the URLconf (any prefix works), or set OPTIONS['url_policy'] to 'inner' or "
    "'refuse'.",
}

#: Arguments that the serving routes accept, to reverse them without a file.
_ROUTE_ARGUMENTS = {"signed": ["token", "name.pdf"], "protected": ["alias", "a.pdf"]}
GZIP_MIDDLEWARE = "django.middleware.gzip.GZipMiddleware"


@checks.register(checks.Tags.compatibility)
def check_layered_storages(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report every misconfigured layered storage in ``settings.STORAGES``."""
    from layered_storage.storage import LayeredStorage

    messages: list[checks.CheckMessage] = []
    try:
        conf.layered_settings()
    except ConfigurationError as exc:
        return [_error(exc, "LAYERED_STORAGE")]
    served = False
    for alias, config in conf.storages_config().items():
        try:
            backend = import_string(config.get("BACKEND", ""))
        except ImportError:
            continue  # Django reports unusable backends itself
        if isinstance(backend, type) and issubclass(backend, LayeredStorage):
            options = config.get("OPTIONS", {})
            messages.extend(check_storage(alias, backend, options))
            served |= options.get("url_policy", "signed") in _ROUTE_ARGUMENTS
    if served and GZIP_MIDDLEWARE in _middleware():
        messages.append(
            checks.Warning(
                "GZipMiddleware is in MIDDLEWARE: it compresses streaming responses "
                "and drops their Content-Length, which breaks HTTP ranges (video "
                "seeking, PDF viewers). The layered file views turn it off for their "
                "own answers; other file views are exposed.",
                hint="Compress at the web server for text types only, or remove "
                "GZipMiddleware (it is also a BREACH risk on pages with secrets).",
                id="layered_storage.W004",
            )
        )
    return messages


def _middleware() -> list[str]:
    try:
        return list(conf.named_setting("MIDDLEWARE"))
    except ConfigurationError:
        return []


def check_serving(label: str, storage: Any) -> list[checks.CheckMessage]:
    """Return the check messages about how ``storage``'s files are served."""
    policy = storage.url_policy
    messages: list[checks.CheckMessage] = []
    if policy in _ROUTE_ARGUMENTS:
        try:
            reverse(f"layered_storage:{policy}", args=_ROUTE_ARGUMENTS[policy])
        except (NoReverseMatch, ImproperlyConfigured, AttributeError, ImportError):
            messages.append(
                checks.Error(
                    f"{label} has url_policy {policy!r}, but the URLconf does not "
                    "include layered_storage.urls, so url() cannot name a file.",
                    hint=HINTS["layered_storage.E009"],
                    id="layered_storage.E009",
                )
            )
    if policy == "protected" and storage.permission is not None:
        try:
            import_string(storage.permission)
        except ImportError as exc:
            messages.append(
                checks.Error(
                    f"{label} has a permission that cannot be imported: {exc}.",
                    hint="Set OPTIONS['permission'] to the dotted path of a "
                    "callable (request, storage_alias, name) -> bool.",
                    id="layered_storage.E008",
                )
            )
    if policy == "refuse" and apps.is_installed("django.contrib.admin"):
        messages.append(
            checks.Warning(
                f"{label} has url_policy 'refuse', and django.contrib.admin is "
                "installed: the change form of a model with a file on this storage "
                "calls url() and fails with ValueError.",
                hint="Use url_policy 'signed' (the default) or 'protected' so the "
                "admin links to the plaintext.",
                id="layered_storage.W003",
            )
        )
    return messages


def check_storage(
    alias: str, backend: type[Any], options: dict[str, Any]
) -> list[checks.CheckMessage]:
    """Return the check messages for one layered storage entry."""
    label = f"STORAGES[{alias!r}]"
    try:
        storage = backend(**options)
    except TypeError as exc:
        return [
            checks.Error(
                f"{label} has invalid OPTIONS: {exc}.",
                hint=HINTS["layered_storage.E008"],
                id="layered_storage.E008",
            )
        ]
    except ConfigurationError as exc:
        return [_error(exc, label)]
    messages: list[checks.CheckMessage] = []
    for step in ("inner", "pipeline"):
        try:
            getattr(storage, step)
        except ConfigurationError as exc:
            messages.append(_error(exc, label))
    if messages:
        return messages
    layers = storage.pipeline.layers
    kinds = [layer.kind for layer in layers]
    if "encryption" in kinds:
        try:
            storage.pipeline.keyring()
        except ConfigurationError as exc:
            messages.append(_error(exc, label))
        if "compression" in kinds and kinds.index("compression") > kinds.index(
            "encryption"
        ):
            messages.append(
                checks.Warning(
                    f"{label} compresses after encrypting: encrypted bytes do not "
                    "compress, and the compressed container is left unauthenticated.",
                    hint="List the layers as ['zstd', 'aes-gcm'] (save order).",
                    id="layered_storage.W001",
                )
            )
    messages.extend(check_serving(label, storage))
    policy = storage.pipeline.policy
    if policy.legacy_plaintext or (
        "encryption" in kinds and not policy.require_encryption
    ):
        messages.append(
            checks.Warning(
                f"{label} reads files that are not encrypted (allow_plaintext or "
                "allow_unencrypted), so anyone who can write to the inner storage "
                "can plant content.",
                hint="Use these options only while migrating old files, then remove "
                "them.",
                id="layered_storage.W002",
            )
        )
    return messages


def _error(exc: ConfigurationError, label: str) -> checks.Error:
    return checks.Error(
        f"{label}: {exc}", hint=HINTS.get(exc.check_id), id=exc.check_id
    )
