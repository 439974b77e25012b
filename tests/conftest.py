"""Fixtures: layered storages over real inner backends, each isolated per test.

``--inner filesystem,s3`` (or ``LAYERED_TEST_INNER``) picks the inner backends the
suite runs over; the default is all of them: FileSystemStorage, InMemoryStorage,
S3 (SeaweedFS), Azure (azurite) and Google Cloud Storage (fake-gcs-server), each
server started on 127.0.0.1 when first needed. Tests of a backend left out are
deselected, and a test that needs one by name is skipped.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from layered_storage.storage import LayeredStorage

INNER_BACKENDS = ["filesystem", "memory", "s3", "azure", "gcs"]
#: Parameters whose values name inner backends (alone or in a tuple).
_BACKEND_PARAMETERS = {"inner_kind", "kind", "inner", "live"}
_SELECTION_ENV = "LAYERED_TEST_INNER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--inner",
        default=os.environ.get(_SELECTION_ENV, "all"),
        help="comma-separated inner backends to run the suite over: "
        f"{', '.join(INNER_BACKENDS)}, or all (the default)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "inner(kind): the test needs this inner backend")
    chosen = str(config.getoption("--inner"))
    kinds = INNER_BACKENDS if chosen == "all" else chosen.split(",")
    unknown = sorted(set(kinds) - set(INNER_BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"--inner: unknown backend {', '.join(unknown)}; choose among "
            f"{', '.join(INNER_BACKENDS)} or all."
        )
    # In the environment, so subprocesses (live servers, probes) see it too.
    os.environ[_SELECTION_ENV] = ",".join(kinds)


def selected_backends() -> list[str]:
    """Return the inner backends this run covers."""
    chosen = os.environ.get(_SELECTION_ENV, "all")
    return INNER_BACKENDS if chosen == "all" else chosen.split(",")


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    left_out = set(INNER_BACKENDS) - set(selected_backends())
    if not left_out:
        return
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        (deselected if _needs(item) & left_out else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _needs(item: pytest.Item) -> set[str]:
    """Return the inner backends ``item`` runs over (from marks and parameters)."""
    needed = {str(mark.args[0]) for mark in item.iter_markers("inner")}
    callspec = getattr(item, "callspec", None)
    for name, value in (callspec.params if callspec else {}).items():
        if name in _BACKEND_PARAMETERS:
            values = value if isinstance(value, tuple) else (value,)
            needed.update(v for v in values if v in INNER_BACKENDS)
    return needed


def inner_config(kind: str, tmp_path: Path) -> dict[str, Any]:
    """Return the STORAGES entry of a fresh, empty inner storage of ``kind``."""
    if kind not in selected_backends():
        pytest.skip(f"the {kind} backend is left out of this run (--inner)")
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
    # Each test writes under its own prefix, so tests never see each other.
    prefix = f"t-{uuid.uuid4().hex}"
    if kind == "azure":
        azure = emulator("azure")
        return {
            "BACKEND": "storages.backends.azure_storage.AzureStorage",
            "OPTIONS": {
                "connection_string": azure.connection_string,
                "azure_container": azure.container,
                "location": prefix,
            },
        }
    if kind == "gcs":
        gcs = emulator("gcs")
        return {
            "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
            "OPTIONS": {
                "bucket_name": gcs.bucket,
                "project_id": gcs.project,
                "location": prefix,
            },
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
            "location": prefix,
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


def emulator(kind: str) -> Any:
    """Return the Azure or GCS emulator for the tests; fail under CI if none can
    start."""
    from tests.emulators import ensure_azure_server, ensure_gcs_server

    try:
        return ensure_azure_server() if kind == "azure" else ensure_gcs_server()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the {kind} emulator: {exc}")
        pytest.skip(f"no {kind} emulator here: {exc}")


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
