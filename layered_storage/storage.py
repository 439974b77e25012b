"""LayeredStorage: a Django storage that stacks layers over any other storage.

It is a decorator: naming, ``exists``, ``listdir``, ``delete``, ``url`` and times are
delegated to the inner storage (named by its alias in ``settings.STORAGES``); only
``_save``, ``_open`` and ``size`` know about layers. Constructor arguments are
references (an alias, layer names, a keyring setting name), never key material, so
``deconstruct()`` and therefore migrations hold no secret.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.files.base import File
from django.core.files.storage import Storage, storages
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string

from layered_storage import conf
from layered_storage.backends import Backend, NameTakenError, backend_for
from layered_storage.backends.base import is_partial
from layered_storage.content import ContentReader, rewindable, too_large
from layered_storage.exceptions import (
    ConfigurationError,
    FileTooLargeError,
    LayeredStorageError,
)
from layered_storage.files import LayeredFile, is_write_mode
from layered_storage.layers.base import FileContext, LayerSpec, ReadPolicy, build_layers
from layered_storage.pipeline import Pipeline, encryption_layer
from layered_storage.streams import (
    BlockReader,
    ProducerStream,
)

_SAVE_ATTEMPTS = 3


#: Public attributes that a LayeredStorage sets on itself (the rest it forwards).
_OWN_ATTRIBUTES = frozenset({"url_policy", "url_expiry", "permission"})


@deconstructible(path="layered_storage.LayeredStorage")
class LayeredStorage(Storage):
    """Store every file through a stack of layers into an inner storage.

    Args:
        inner: alias of the inner storage in ``settings.STORAGES`` (default
            ``LAYERED_STORAGE["INNER"]``).
        layers: the stack in save order, e.g. ``["zstd", "aes-gcm"]`` (default
            ``LAYERED_STORAGE["LAYERS"]``).
        namespace: label bound into every encrypted file with its name, so a file
            moved between storages fails to open (default
            ``LAYERED_STORAGE["NAMESPACE"]``).
        allow_unencrypted: read files that are not encrypted (default: only when
            the stack has no encryption layer).
        allow_plaintext: read files with no layered header as they are.
        require_name_binding: refuse encrypted files not bound to their name
            (default: whether the stack's encryption layer binds names).
        url_policy: what ``url()`` returns: ``"signed"`` (an expiring signed URL
            to the serving view), ``"protected"`` (a URL to the view, authorised
            by ``permission``), ``"inner"`` (the inner storage's URL of the stored
            bytes) or ``"refuse"`` (ValueError).
        url_expiry: seconds a signed URL stays valid (at least).
        permission: dotted path of a ``(request, storage_alias, name) -> bool``
            callable for ``"protected"`` (default: active staff users).
        max_file_size: refuse to store or read files whose plaintext is larger
            (bytes); a save over it fails and stores nothing.
    """

    def __init__(
        self,
        inner: str | None = None,
        layers: Sequence[LayerSpec] | None = None,
        *,
        namespace: str | None = None,
        allow_unencrypted: bool | None = None,
        allow_plaintext: bool = False,
        require_name_binding: bool | None = None,
        max_file_size: int | None = None,
        url_policy: str = "signed",
        url_expiry: int = 3600,
        permission: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            # The same message as ``manage.py check`` gives, also when a model's
            # FileField builds the storage at import time.
            raise ConfigurationError(_unknown_options(unknown))
        if inner is not None and not isinstance(inner, str):
            raise ConfigurationError(
                "'inner' is the alias of a storage in settings.STORAGES (a string), "
                f"got {type(inner).__name__}.",
                check_id="layered_storage.E001",
            )
        _check_option("namespace", namespace, (str, type(None)))
        _check_option("allow_unencrypted", allow_unencrypted, (bool, type(None)))
        _check_option("allow_plaintext", allow_plaintext, (bool,))
        _check_option("require_name_binding", require_name_binding, (bool, type(None)))
        _check_option("max_file_size", max_file_size, (int, type(None)))
        if max_file_size is not None and max_file_size < 1:
            raise ConfigurationError(
                f"'max_file_size' is a number of bytes above 0, got {max_file_size!r}."
            )
        _check_url_options(url_policy, url_expiry, permission)
        self.url_policy = url_policy
        self.url_expiry = url_expiry
        self.permission = permission
        self._inner_alias = inner
        self._layer_specs = layers
        self._namespace = namespace
        self._allow_unencrypted = allow_unencrypted
        self._allow_plaintext = allow_plaintext
        self._require_name_binding = require_name_binding
        self._max_file_size = max_file_size

    def __repr__(self) -> str:
        return f"<LayeredStorage inner={self.inner_alias!r} layers={self.layer_names}>"

    # -- configuration, resolved lazily -------------------------------------------

    @property
    def inner_alias(self) -> str:
        """Return the alias of the inner storage."""
        alias = self._inner_alias or conf.get_setting("INNER")
        return str(alias)

    @cached_property
    def inner(self) -> Storage:
        """Return the inner storage instance (``storages[alias]``).

        Raises:
            ConfigurationError: unknown alias, or a chain that loops back.
        """
        check_inner_chain(self.inner_alias)
        return storages[self.inner_alias]

    @cached_property
    def pipeline(self) -> Pipeline:
        """Return the layer stack and read policy.

        Raises:
            ConfigurationError: unknown layers or options.
        """
        specs = self._layer_specs
        if specs is None:
            specs = conf.get_setting("LAYERS")
        layers = build_layers(specs)
        if not layers:
            raise ConfigurationError(
                "The layer stack is empty; use at least one layer, e.g. ['zstd', "
                "'aes-gcm'].",
                check_id="layered_storage.E004",
            )
        encryption = encryption_layer(layers)
        allow_unencrypted = (
            encryption is None
            if self._allow_unencrypted is None
            else self._allow_unencrypted
        )
        binds_names = encryption is not None and encryption.bind_name
        require_binding = (
            binds_names
            if self._require_name_binding is None
            else self._require_name_binding
        )
        if require_binding and encryption is not None and not binds_names:
            raise ConfigurationError(
                "The encryption layer has bind_name=False but the storage sets "
                "require_name_binding=True: it would refuse every file it writes.",
                check_id="layered_storage.E004",
            )
        policy = ReadPolicy(
            require_encryption=not allow_unencrypted,
            legacy_plaintext=self._allow_plaintext,
            require_name_binding=require_binding,
            max_file_size=self._max_file_size,
        )
        return Pipeline(layers, policy)

    @property
    def layer_names(self) -> list[str]:
        specs = self._layer_specs
        if specs is None:
            return list(conf.get_setting("LAYERS"))
        return [spec if isinstance(spec, str) else str(spec[0]) for spec in specs]

    @property
    def namespace(self) -> str:
        value = self._namespace
        if value is None:
            value = conf.get_setting("NAMESPACE")
        return str(value)

    def context(self, name: str, content_type: str | None = None) -> FileContext:
        """Return what the layers know about the file ``name``."""
        namespace = self.namespace
        return FileContext(
            name=name,
            namespace=namespace,
            content_type=content_type,
            other_namespaces=tuple(sorted(self._namespaces - {namespace})),
        )

    @cached_property
    def _namespaces(self) -> set[str]:
        """Return the namespaces in the settings (to explain a failed binding)."""
        return conf.configured_namespaces()

    # -- the layered operations -------------------------------------------------

    @cached_property
    def backend(self) -> Backend:
        """Return the adapter that reads and writes the inner storage's bytes."""
        return backend_for(self.inner)

    def _save(self, name: str, content: File) -> str:  # type: ignore[type-arg]
        self._check_content_size(name, content)
        binds_names = self._binds_names()
        for _attempt in range(_SAVE_ATTEMPTS):
            stream = self._encode(name, content)
            try:
                saved = self.backend.save(name, stream, exact_name=binds_names)
            except NameTakenError:
                saved = None
            if saved == name or (saved is not None and not binds_names):
                if self.backend.takes_uploads:
                    _remove_upload(content)
                return saved
            if saved is not None:
                # A generic inner storage stored it under another name (another
                # writer took ``name`` meanwhile), but the file is bound to ``name``
                # and would never open there: it is ours, and useless.
                self.inner.delete(saved)
            if not rewindable(content):
                break
            name = self.get_available_name(name)
        raise LayeredStorageError(
            f"Another writer took the name {name!r} while this file was being "
            "stored, and the content cannot be read again to store it under a new "
            "name; nothing was kept. Save it again."
        )

    def replace(self, name: str, content: File) -> None:  # type: ignore[type-arg]
        """Store ``content`` as the new version of ``name``, all or nothing.

        Whatever happens (an error, a killed process), ``name`` holds the old
        version or the new one, never nothing and never a part.

        Raises:
            ConfigurationError: the inner storage cannot replace a file atomically.
        """
        self._check_content_size(name, content)
        self.backend.replace(name, self._encode(name, content))

    def _encode(self, name: str, content: File) -> ProducerStream:  # type: ignore[type-arg]
        """Return the stored bytes of ``content`` as ``name``, as a stream."""
        context = self.context(name, getattr(content, "content_type", None))
        source = ContentReader(content, name=name, limit=self._max_file_size)
        return self.pipeline.encode(source, context)

    def _check_content_size(self, name: str, content: File) -> None:  # type: ignore[type-arg]
        """Refuse content whose known size is over ``max_file_size`` before any I/O
        (content of unknown size is counted as it is read)."""
        limit = self._max_file_size
        if limit is None:
            return
        try:
            size = content.size
        except (AttributeError, OSError, TypeError, ValueError):
            return
        if isinstance(size, int) and size > limit:
            raise FileTooLargeError(too_large(name, limit))

    def _binds_names(self) -> bool:
        encryption = self.pipeline.encryption
        return encryption is not None and encryption.bind_name

    def open(
        self,
        name: str,
        mode: str = "rb",
        *,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> LayeredFile:
        """Return a LayeredFile that decodes ``name`` as it is read, or (``"wb"``,
        ``"w"``) encodes a new version of it as it is written, stored on close.

        Raises:
            ValueError: an update, append or exclusive mode.
            ConfigurationError: writing over an inner storage that cannot replace a
                file atomically.
        """
        if is_write_mode(mode) and not self.backend.can_replace:
            raise self.backend.cannot_replace(name)
        return LayeredFile(
            lambda: self._decode(name),
            name,
            mode,
            store=lambda plaintext: self.replace(name, File(plaintext, name)),  # type: ignore[arg-type]
            encoding=encoding,
            newline=newline,
        )

    def _open(self, name: str, mode: str = "rb") -> LayeredFile:
        return self.open(name, mode)

    def size(self, name: str) -> int:
        """Return the plaintext length, from the header and tail only."""
        with self._decode(name) as decoded:
            return decoded.size

    def _decode(self, name: str) -> BlockReader:
        """Return a reader of the plaintext of ``name``; it owns the stored file."""
        stored = self.backend.open(name)
        try:
            return self.pipeline.decode(stored, self.context(name))
        except BaseException:
            stored.close()
            raise

    # -- delegated to the inner storage -------------------------------------------

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        # Through the backend: AzureStorage's own lists every blob below ``path``
        # by its full name, and the whole container for "".
        folders, files = self.backend.listdir(path)
        # The temporary file of a write that a killed process never finished.
        return folders, [file for file in files if not is_partial(file)]

    def url(self, name: str | None) -> str:
        """Return the URL of ``name`` under ``url_policy`` (no I/O).

        Raises:
            ValueError: the policy is ``"refuse"``, or no URL can be made (see
                ``layered_storage.tokens.file_url``).
        """
        if self.url_policy == "inner":
            return self.inner.url(name)
        from layered_storage.tokens import NO_URL, file_url

        if self.url_policy == "refuse":
            raise ValueError(NO_URL)
        return file_url(self, name)

    if not TYPE_CHECKING:  # to mypy, a LayeredStorage has only its own attributes

        def __getattr__(self, attribute: str) -> Any:
            """Return a public data attribute of the inner storage (``location``,
            ``base_url``, ``file_permissions_mode``, ``bucket_name``, ...).

            Only what this class lacks comes here. Methods are not forwarded: the
            inner ``open``, ``save`` or ``path`` would bypass the layers.
            """
            if attribute.startswith("_"):
                raise AttributeError(attribute)
            try:
                inner = self.inner
            except ConfigurationError as exc:
                raise AttributeError(f"{attribute!r}: {exc}") from exc
            value = getattr(inner, attribute)
            if callable(value):
                raise AttributeError(
                    f"LayeredStorage does not forward {type(inner).__name__}."
                    f"{attribute}(): it would bypass the layers. Use "
                    f"storage.inner.{attribute} to work on the stored bytes."
                )
            return value

        def __setattr__(self, attribute: str, value: Any) -> None:
            """Assign a forwarded attribute where it is read from: the inner storage.

            Otherwise ``storage.base_url = None`` would change what the wrapper
            shows and not what the inner storage's ``url()`` uses.
            """
            own = (
                attribute.startswith("_")
                or attribute in _OWN_ATTRIBUTES
                or hasattr(type(self), attribute)
                or attribute in self.__dict__
            )
            if not own:
                inner = self.inner
                if hasattr(inner, attribute) and not callable(
                    getattr(inner, attribute)
                ):
                    setattr(inner, attribute, value)
                    return
            super().__setattr__(attribute, value)

    def get_accessed_time(self, name: str) -> datetime:
        return self.inner.get_accessed_time(name)

    def get_created_time(self, name: str) -> datetime:
        return self.inner.get_created_time(name)

    def get_modified_time(self, name: str) -> datetime:
        return self.inner.get_modified_time(name)

    def get_valid_name(self, name: str) -> str:
        return self.inner.get_valid_name(name)

    def get_alternative_name(self, file_root: str, file_ext: str) -> str:
        return self.inner.get_alternative_name(file_root, file_ext)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        if _overrides(self, "get_alternative_name", "get_valid_name"):
            # A subclass customised a step: run Django's algorithm with its steps.
            return super().get_available_name(name, max_length=max_length)
        return self.inner.get_available_name(name, max_length=max_length)

    def generate_filename(self, filename: Any) -> str:
        if _overrides(self, "get_valid_name"):
            return super().generate_filename(filename)
        return self.inner.generate_filename(filename)


def _unknown_options(unknown: dict[str, Any]) -> str:
    """Return the message for options that ``LayeredStorage`` does not take."""
    known = [
        name
        for name in inspect.signature(LayeredStorage.__init__).parameters
        if name not in ("self", "unknown")
    ]
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (
        f"LayeredStorage has no option {', '.join(parts)}; its options are "
        f"{', '.join(known)}."
    )


def _check_option(name: str, value: object, types: tuple[type, ...]) -> None:
    """Raise ConfigurationError (E008) unless ``value`` is one of ``types``."""
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        allowed = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        raise ConfigurationError(f"'{name}' must be {allowed}, got {value!r}.")


URL_POLICIES = ("signed", "protected", "inner", "refuse")


def _check_url_options(policy: str, expiry: int, permission: str | None) -> None:
    """Raise ConfigurationError (E008) for a bad url_policy, url_expiry or
    permission."""
    _check_option("url_policy", policy, (str,))
    if policy not in URL_POLICIES:
        raise ConfigurationError(
            f"'url_policy' is one of {', '.join(map(repr, URL_POLICIES))}, got "
            f"{policy!r}."
        )
    _check_option("url_expiry", expiry, (int,))
    if expiry < 1:
        raise ConfigurationError(
            f"'url_expiry' is a number of seconds above 0, got {expiry!r}."
        )
    _check_option("permission", permission, (str, type(None)))


def _overrides(storage: LayeredStorage, *methods: str) -> bool:
    """Return whether a subclass of ``storage`` overrides any of ``methods``."""
    return any(
        getattr(type(storage), method) is not getattr(LayeredStorage, method)
        for method in methods
    )


def check_inner_chain(alias: str) -> None:
    """Check that ``alias`` exists and does not lead back through layered storages.

    Raises:
        ConfigurationError: an unknown alias (E001) or a loop (E002).
    """
    configured = conf.storages_config()
    seen: list[str] = []
    current: str | None = alias
    while current is not None:
        if current in seen:
            chain = " -> ".join([*seen, current])
            raise ConfigurationError(
                f"The inner storage chain loops: {chain}. A layered storage must "
                "wrap a storage that is not itself or another layered storage "
                "wrapping it.",
                check_id="layered_storage.E002",
            )
        if current not in configured:
            raise ConfigurationError(
                f"The inner storage {current!r} is not an alias in "
                f"settings.STORAGES (aliases: {sorted(configured)}).",
                check_id="layered_storage.E001",
            )
        seen.append(current)
        current = _layered_inner(configured[current])


def _layered_inner(config: dict[str, Any]) -> str | None:
    """Return the inner alias if ``config`` builds a LayeredStorage, else None."""
    try:
        backend = import_string(config.get("BACKEND", ""))
    except ImportError:
        return None
    if not (isinstance(backend, type) and issubclass(backend, LayeredStorage)):
        return None
    options = config.get("OPTIONS", {})
    return str(options.get("inner") or conf.get_setting("INNER"))


def _remove_upload(content: File) -> None:  # type: ignore[type-arg]
    """Remove the temporary file of an upload that is now stored (encoded).

    FileSystemStorage moves an upload's temporary file into place and
    InMemoryStorage deletes it, so after a save no plaintext copy is left in
    FILE_UPLOAD_TEMP_DIR, and code written for them expects that. The content's
    open file still reads (POSIX keeps an unlinked file's data while it is open),
    and TemporaryUploadedFile.close() accepts a file that is already gone.
    """
    temporary_file_path = getattr(content, "temporary_file_path", None)
    if temporary_file_path is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(temporary_file_path())


__all__ = ["LayeredStorage"]
