"""The storage Django's tests get instead of ``FileSystemStorage``, and the counters.

``LayeredFileSystemStorage`` takes FileSystemStorage's constructor arguments, builds
a real FileSystemStorage from them and makes it the inner storage of a
LayeredStorage (``inner`` is a cached property, so an instance attribute replaces
the settings lookup). The FileSystemStorage attributes the tests read
(``location``, ``base_url``, ...) come through LayeredStorage's own forwarding;
``path()`` deliberately does not: a LayeredStorage has no local path holding the
plaintext.

A subclass that configures FileSystemStorage itself, through the class attribute
``OS_OPEN_FLAGS`` (Django < 6.0, deprecated), configures the inner storage: it is
built from a FileSystemStorage subclass with the same flags, so an
``OverwritingStorage`` in a test overwrites, as it would over a real one.

``count_layered_calls`` counts the layered operations of every LayeredStorage
(those built from ``settings.STORAGES`` included) per test suite, so a run that
never reached LayeredStorage cannot pass.

The layer stack comes from the ``LAYERED_SUITE_LAYERS`` environment variable (comma
separated, e.g. ``zstd,aes-gcm``).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django.core.files.storage.filesystem import FileSystemStorage

from layered_storage.storage import LayeredStorage

LAYERS_ENV = "LAYERED_SUITE_LAYERS"

#: The real class, bound before the suite's imports see the substitute.
RealFileSystemStorage = FileSystemStorage


def configured_layers() -> list[str]:
    """Return the layer stack named by ``LAYERED_SUITE_LAYERS``."""
    value = os.environ.get(LAYERS_ENV, "")
    layers = [name.strip() for name in value.split(",") if name.strip()]
    if not layers:
        raise RuntimeError(f"Set {LAYERS_ENV}, e.g. {LAYERS_ENV}=zstd,aes-gcm.")
    return layers


class LayeredFileSystemStorage(LayeredStorage):
    """A LayeredStorage over a FileSystemStorage built from the same arguments."""

    # Django < 6.0: the suite's OverwritingStorage class body reads this deprecated
    # FileSystemStorage attribute; a subclass that changes it gets an inner
    # storage with its flags (see _inner_class).
    if hasattr(RealFileSystemStorage, "OS_OPEN_FLAGS"):
        OS_OPEN_FLAGS: ClassVar[int] = RealFileSystemStorage.OS_OPEN_FLAGS

    def __init__(
        self,
        location: Any = None,
        base_url: Any = None,
        file_permissions_mode: int | None = None,
        directory_permissions_mode: int | None = None,
        allow_overwrite: bool = False,
    ) -> None:
        # Django's suite asserts FileSystemStorage's URLs: the explicit "inner" policy.
        super().__init__(layers=configured_layers(), url_policy="inner")
        # allow_overwrite exists from Django 5.1; older suites never pass it.
        extra = {"allow_overwrite": True} if allow_overwrite else {}
        # FileSystemStorage warns its caller about overridden OS_OPEN_FLAGS; the
        # caller is this constructor's, as if the test had built it directly.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.inner = _inner_class(type(self))(
                location=location,
                base_url=base_url,
                file_permissions_mode=file_permissions_mode,
                directory_permissions_mode=directory_permissions_mode,
                **extra,
            )
        for warning in caught:
            warnings.warn(warning.message, warning.category, stacklevel=2)

    def __repr__(self) -> str:
        return f"<LayeredFileSystemStorage layers={self.layer_names}>"


_INNER_CLASSES: dict[int, type[FileSystemStorage]] = {}


def _inner_class(storage_class: type) -> type[FileSystemStorage]:
    """Return FileSystemStorage, or a subclass with ``storage_class``'s
    ``OS_OPEN_FLAGS`` when it changes them."""
    flags = getattr(storage_class, "OS_OPEN_FLAGS", None)
    if flags is None or flags == getattr(RealFileSystemStorage, "OS_OPEN_FLAGS", None):
        return RealFileSystemStorage
    if flags not in _INNER_CLASSES:
        _INNER_CLASSES[flags] = type(
            f"InnerFileSystemStorage{flags:#x}",
            (RealFileSystemStorage,),
            {"OS_OPEN_FLAGS": flags, "__module__": __name__},
        )
    return _INNER_CLASSES[flags]


#: Layered operations per suite: ``{suite: {"saves": n, "opens": n, ...}}``.
Counts = dict[str, dict[str, int]]


@contextmanager
def count_layered_calls(current_suite: Callable[[], str]) -> Iterator[Counts]:
    """Count LayeredStorage saves, reads and writes, under ``current_suite()``.

    Saves are ``_save`` calls (``Storage.save``); ``opens`` and ``writes`` are
    ``open()`` calls for reading and for writing (``FieldFile.open`` and
    ``Storage.open`` both end there); ``attributes`` are reads of an inner
    storage's attribute through the wrapper (``location``, ``base_url``, ...).
    """
    counts: Counts = defaultdict(dict.fromkeys(COUNTED, 0).copy)
    originals = {name: vars(LayeredStorage)[name] for name in _METHODS}

    def counted(method: str) -> Callable[..., Any]:
        original = originals[method]

        @functools.wraps(original)
        def wrapper(self: LayeredStorage, *args: Any, **kwargs: Any) -> Any:
            kind = _METHODS[method]
            if method == "open":
                mode = kwargs.get("mode", args[1] if len(args) > 1 else "rb")
                kind = "writes" if "w" in str(mode) else "opens"
            result = original(self, *args, **kwargs)
            counts[current_suite()][kind] += 1  # calls that succeeded
            return result

        return wrapper

    for method in _METHODS:
        setattr(LayeredStorage, method, counted(method))
    try:
        yield counts
    finally:
        for method, original in originals.items():
            setattr(LayeredStorage, method, original)


#: The LayeredStorage methods counted, and what each call counts as.
_METHODS = {
    "_save": "saves",
    "open": "opens",  # or "writes", by mode
    "size": "sizes",
    "url": "urls",
    "__getattr__": "attributes",  # an attribute forwarded to the inner storage
}
COUNTED = ("saves", "opens", "writes", "sizes", "urls", "attributes")
