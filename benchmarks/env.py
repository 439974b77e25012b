"""Django configured in code for the benchmarks: temp-dir storages, one fresh key.

The parent process and every memory probe call ``configure`` with the same work
directory and key, so a probe reads what another probe saved.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The environment variable that hands the benchmark key to probe subprocesses.
KEY_ENV = "LAYERED_BENCH_KEY"
#: Stacks measured, by label, in save order.
STACKS: dict[str, list[str]] = {
    "zstd": ["zstd"],
    "aes-gcm": ["aes-gcm"],
    "zstd+aes-gcm": ["zstd", "aes-gcm"],
    "chacha20-poly1305": ["chacha20-poly1305"],
}


def s3_enabled() -> bool:
    """Return whether an S3 endpoint (SeaweedFS) is configured in the environment."""
    return bool(os.environ.get("AWS_ENDPOINT_URL_S3"))


def configure(workdir: Path, key: str) -> None:
    """Configure Django: FileSystemStorage under ``workdir``, ``key`` as the keyring."""
    import django
    from django.conf import settings

    media = workdir / "media"
    upload_tmp = workdir / "upload-tmp"
    for folder in (media, upload_tmp):
        folder.mkdir(parents=True, exist_ok=True)
    storages: dict[str, Any] = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        },
    }
    if s3_enabled():
        storages["s3"] = {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": os.environ.get("S3_BUCKET", "layered-storage-bench")
            },
        }
    settings.configure(
        SECRET_KEY="layered-storage-benchmarks",
        USE_TZ=True,
        INSTALLED_APPS=[],
        STORAGES=storages,
        FILE_UPLOAD_TEMP_DIR=str(upload_tmp),
        LAYERED_STORAGE={"KEYS": [key]},
    )
    django.setup()


def layered(stack: str, inner: str = "default") -> Any:
    """Return a LayeredStorage for the stack labelled ``stack`` over ``inner``."""
    from layered_storage.storage import LayeredStorage

    return LayeredStorage(inner=inner, layers=STACKS[stack])


def plain_fs() -> Any:
    """Return the inner FileSystemStorage itself."""
    from django.core.files.storage import storages

    return storages["default"]


def pzip_storage(workdir: Path, key: str) -> Any:
    """Return a django-pzip-storage PZipStorage keyed with ``key``, or None.

    PZipStorage is a FileSystemStorage subclass: ``location`` is its folder, ``keys``
    a list of key bytes (the first writes, HKDF derives the per-file key). It saves
    ``name`` as ``name + ".pz"``.
    """
    try:
        from pzip_storage import PZipStorage
    except ImportError:
        return None
    location = workdir / "pzip"
    location.mkdir(parents=True, exist_ok=True)
    return PZipStorage(location=str(location), keys=[key.encode("ascii")])


def pzip_unavailable_reason() -> str | None:
    """Return why django-pzip-storage cannot be used here, or None if it can."""
    try:
        import pzip_storage  # noqa: F401
    except ImportError as exc:
        return f"django-pzip-storage is not importable ({exc}); pip install it"
    return None


#: ``(workdir, key, log) -> result``: one part of the benchmarks, measured.
Measure = Callable[[Path, str, Callable[[str], None]], T]


def run_alone(
    name: str,
    measure: Measure[T],
    report: Callable[[T, Callable[[str], None]], None],
    checks: Callable[[T], list[Any]],
    *,
    configure_django: bool = True,
) -> int:
    """Run one part of the benchmarks on its own (``python -m benchmarks.NAME``):
    a temporary folder with a ``data`` folder, a new key, Django configured (unless
    the part does it in its own processes), progress on stderr, then its report and
    checks on stdout."""
    import shutil
    import sys
    import tempfile

    from layered_storage.keys import generate_key

    workdir = Path(tempfile.mkdtemp(prefix=f"layered-bench-{name}-"))
    try:
        (workdir / "data").mkdir()
        key = generate_key()
        if configure_django:
            configure(workdir, key)
        result = measure(workdir, key, lambda message: print(message, file=sys.stderr))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(result, print)
    for check in checks(result):
        print(f"  {check.line()}")
    return 0
