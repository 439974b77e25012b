"""The storage Django's file_storage tests get instead of ``FileSystemStorage``.

``LayeredFileSystemStorage`` takes FileSystemStorage's constructor arguments, builds
a real FileSystemStorage from them and makes it the inner storage of a
LayeredStorage (``inner`` is a cached property, so an instance attribute replaces
the settings lookup). The FileSystemStorage attributes the tests read are proxied to
that inner storage; ``path()`` is deliberately not: a LayeredStorage has no local
path holding the plaintext.

The layer stack comes from the ``LAYERED_SUITE_LAYERS`` environment variable (comma
separated, e.g. ``zstd,aes-gcm``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from django.core.files.base import File
from django.core.files.storage.filesystem import FileSystemStorage

from layered_storage.files import LayeredFile
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

    #: How much the suite exercised layered code (checked by the pytest side, so a
    #: run that never reached LayeredStorage cannot pass).
    stats: ClassVar[dict[str, int]] = {"instances": 0, "saves": 0, "opens": 0}

    # Django < 6.0: the suite's OverwritingStorage class body reads this deprecated
    # FileSystemStorage attribute. It is not forwarded to the inner storage (see the
    # exclusions); allow_overwrite, its replacement, is.
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
        self.inner = RealFileSystemStorage(
            location=location,
            base_url=base_url,
            file_permissions_mode=file_permissions_mode,
            directory_permissions_mode=directory_permissions_mode,
            **extra,
        )
        type(self).stats["instances"] += 1

    def __repr__(self) -> str:
        return f"<LayeredFileSystemStorage layers={self.layer_names}>"

    @property
    def fs(self) -> FileSystemStorage:
        inner = self.inner
        assert isinstance(inner, RealFileSystemStorage)
        return inner

    # -- the layered operations, counted ------------------------------------------

    def _save(self, name: str, content: File) -> str:  # type: ignore[type-arg]
        LayeredFileSystemStorage.stats["saves"] += 1
        return super()._save(name, content)

    def _open(self, name: str, mode: str = "rb") -> LayeredFile:
        LayeredFileSystemStorage.stats["opens"] += 1
        return super()._open(name, mode)

    # -- FileSystemStorage's attributes, read from (and set on) the inner one -------

    @property
    def base_location(self) -> Any:
        return self.fs.base_location

    @property
    def location(self) -> Any:
        return self.fs.location

    @property
    def base_url(self) -> Any:
        return self.fs.base_url

    @base_url.setter
    def base_url(self, value: Any) -> None:
        # FileSystemStorage.base_url is a cached property: assigning replaces it.
        self.fs.base_url = value

    @property
    def file_permissions_mode(self) -> Any:
        return self.fs.file_permissions_mode

    @property
    def directory_permissions_mode(self) -> Any:
        return self.fs.directory_permissions_mode
