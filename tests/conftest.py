"""Fixtures: layered storages over real inner backends, each isolated per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from layered_storage.storage import LayeredStorage

INNER_BACKENDS = ["filesystem", "memory", "s3"]


def inner_config(kind: str, tmp_path: Path) -> dict[str, Any]:
    """Return the STORAGES entry of a fresh, empty inner storage of ``kind``."""
    if kind == "filesystem":
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "inner"), "base_url": "/media/"},
        }
    if kind == "memory":
        return {
            "BACKEND": "django.core.files.storage.InMemoryStorage",
            "OPTIONS": {"location": f"mem-{uuid.uuid4().hex}", "base_url": "/media/"},
        }
    server = s3_server()
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": server.bucket,
            "endpoint_url": server.endpoint_url,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "region_name": server.region,
            # Each test writes under its own prefix, so tests never see each other.
            "location": f"t-{uuid.uuid4().hex}",
        },
    }


def s3_server() -> Any:
    """Return the S3 server for the tests; fail under CI if none can start."""
    from tests.s3server import ensure_s3_server

    try:
        return ensure_s3_server()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the S3 test server: {exc}")
        pytest.skip(f"no S3 server here: {exc}")


@pytest.fixture(params=INNER_BACKENDS)
def inner_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_storage(
    settings: Any,
    tmp_path: Path,
    kind: str,
    layers: list[Any],
    **options: Any,
) -> LayeredStorage:
    """Register a fresh inner storage of ``kind`` and return a layered one over it.

    Assigning STORAGES (pytest-django restores it after the test) makes Django drop
    its cached storage instances, so every test starts with an empty inner storage.
    """
    alias = f"inner-{kind}"
    settings.STORAGES = {**settings.STORAGES, alias: inner_config(kind, tmp_path)}
    return LayeredStorage(inner=alias, layers=layers, **options)


@pytest.fixture
def storage(settings: Any, tmp_path: Path, inner_kind: str) -> LayeredStorage:
    """A ``["zstd", "aes-gcm"]`` storage over each real inner backend."""
    return make_storage(settings, tmp_path, inner_kind, ["zstd", "aes-gcm"])


STACKS = [["zstd"], ["aes-gcm"], ["chacha20-poly1305"], ["zstd", "aes-gcm"]]


@pytest.fixture(params=STACKS, ids=["+".join(stack) for stack in STACKS])
def any_storage(
    request: pytest.FixtureRequest,
    settings: Any,
    tmp_path: Path,
    inner_kind: str,
) -> LayeredStorage:
    """Every supported stack over each real inner backend."""
    return make_storage(settings, tmp_path, inner_kind, list(request.param))


@pytest.fixture
def fs_storage(settings: Any, tmp_path: Path) -> LayeredStorage:
    """A ``["zstd", "aes-gcm"]`` storage over FileSystemStorage only."""
    return make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
