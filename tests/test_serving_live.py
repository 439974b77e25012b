"""Serving through real servers: gunicorn (WSGI, sendfile on) and uvicorn (ASGI),
over FileSystemStorage and S3, hit by a real HTTP client on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import storages

from layered_storage import LayeredStorage
from layered_storage.tokens import FileToken
from tests.conftest import inner_config
from tests.live import LiveServer, migrate, running
from tests.utils import FRAME, SEGMENT, sample, stored_bytes, tamper

SIZE = 2 * FRAME + 3 * SEGMENT + 7
MiB = 1024 * 1024
#: The file whose serving must keep the server's memory flat; large enough to dwarf
#: every buffer. LAYERED_LIVE_LARGE_MIB=1024 runs the 1 GiB measurement of the docs.
LARGE = int(os.environ.get("LAYERED_LIVE_LARGE_MIB", "256")) * MiB
RSS_GROWTH_LIMIT = 64 * MiB

RANGES = [
    (0, 0),
    (SIZE - 1, SIZE - 1),
    (SEGMENT - 3, SEGMENT + 2),
    (3 * SEGMENT - 1, 3 * SEGMENT),
    (FRAME - 5, FRAME + 4),
    (2 * FRAME - SEGMENT, 2 * FRAME + SEGMENT),
    (FRAME - 1, SIZE - 1),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The test project's database, log and asset folders (one per module)."""
    folder = tmp_path_factory.mktemp("live")
    live = {"db": str(folder / "db.sqlite3"), "log": str(folder / "django.log")}
    migrate(live)
    return live


@pytest.fixture(
    scope="module",
    params=[
        ("gunicorn", "filesystem"),
        ("uvicorn", "filesystem"),
        ("gunicorn", "s3"),
        ("uvicorn", "s3"),
    ],
    ids=lambda p: "-".join(p),
)
def live(
    request: pytest.FixtureRequest,
    project: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    flavor, kind = request.param
    folder = tmp_path_factory.mktemp(f"{flavor}-{kind}")
    live = {**project, "inner": inner_config(kind, folder)}
    with running(flavor, live, folder / "server.log") as server:
        yield server, live


@pytest.fixture
def served(
    live: tuple[LiveServer, dict[str, Any]], settings: Any
) -> tuple[LiveServer, LayeredStorage]:
    """The server, and this process's view of the storage it serves."""
    server, config = live
    settings.STORAGES = {
        **settings.STORAGES,
        "inner": config["inner"],
        "private": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": "inner", "layers": ["zstd", "aes-gcm"]},
        },
    }
    storage = storages["private"]
    assert isinstance(storage, LayeredStorage)
    return server, storage


def test_statuses_headers_and_ranges(served: tuple[LiveServer, LayeredStorage]) -> None:
    server, storage = served
    data = sample(SIZE, seed=3)
    name = storage.save(f"live/{uuid.uuid4().hex}/report.pdf", ContentFile(data))
    url = storage.url(name)

    response, body = server.request("GET", url)
    assert response.status == 200
    assert body == data  # plaintext, though sendfile is on
    headers = response.headers
    assert headers["Content-Length"] == str(SIZE)
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Disposition"] == 'inline; filename="report.pdf"'
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Content-Encoding" not in headers
    etag = headers["ETag"]
    assert re.fullmatch(r'"[\w-]{24}"', etag)

    head, head_body = server.request("HEAD", url)
    assert (head.status, head_body) == (200, b"")
    assert head.headers["Content-Length"] == str(SIZE)
    assert head.headers["ETag"] == etag

    for start, end in RANGES:
        response, body = server.request("GET", url, {"Range": f"bytes={start}-{end}"})
        assert response.status == 206, (start, end)
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
        assert body == data[start : end + 1], (start, end)
    response, body = server.request("GET", url, {"Range": "bytes=-1"})
    assert (response.status, body) == (206, data[-1:])
    response, body = server.request("GET", url, {"Range": f"bytes={SIZE - 2}-99999999"})
    assert (response.status, body) == (206, data[-2:])
    response, body = server.request("GET", url, {"Range": "bytes=0-1,5-6"})
    assert (response.status, body) == (200, data)
    response, body = server.request("GET", url, {"Range": f"bytes={SIZE}-"})
    assert (response.status, body) == (416, b"")
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    response, body = server.request(
        "GET", url, {"If-None-Match": etag, "Range": "bytes=0-0"}
    )
    assert (response.status, body) == (304, b"")
    assert response.headers["ETag"] == etag
    response, _ = server.request("GET", url, {"If-Match": '"other"'})
    assert response.status == 412
    response, body = server.request(
        "GET", url, {"Range": "bytes=0-9", "If-Range": '"old"'}
    )
    assert (response.status, body) == (200, data)

    response, _ = server.request("POST", url)
    assert response.status == 405
    assert response.headers["Allow"] == "GET, HEAD"
    token, basename = url.split("/")[2:4]
    assert server.request("GET", f"/files/x{token}/{basename}")[0].status == 403
    assert server.request("GET", f"/files/{token}/other.pdf")[0].status == 404
    expired = FileToken("private", name, int(time.time()) - 1).sign()
    response, _ = server.request("GET", f"/files/{expired}/{basename}")
    assert response.status == 410
    assert response.headers["Cache-Control"] == "no-store"
    assert server.request("GET", storage.url(name + ".missing.pdf"))[0].status == 404
    response, _ = server.request("GET", url + "?download=1")
    assert (
        response.headers["Content-Disposition"] == 'attachment; filename="report.pdf"'
    )
    # The protected policy asks the permission (staff only) before any lookup.
    for protected in (f"/files/p/protected/{name}", "/files/p/protected/missing.pdf"):
        response, body = server.request("GET", protected)
        assert response.status == 403
        assert data[:100] not in body
    empty = storage.save(f"live/{uuid.uuid4().hex}/empty.txt", ContentFile(b""))
    response, body = server.request("GET", storage.url(empty), {"Range": "bytes=0-0"})
    assert (response.status, body) == (200, b"")
    assert response.headers["Content-Length"] == "0"


def test_tampering(served: tuple[LiveServer, LayeredStorage]) -> None:
    server, storage = served
    data = random.Random(4).randbytes(8 * FRAME)
    name = storage.save(f"live/{uuid.uuid4().hex}/a.bin", ContentFile(data))
    stored = stored_bytes(storage.inner, name)
    url = storage.url(name)

    def flip(offset: int) -> Any:
        def change(stored: bytearray) -> bytes:
            stored[offset] ^= 1
            return bytes(stored)

        return change

    # Mid-file: the answer starts, then the connection is cut short of its length.
    tamper(storage.inner, name, flip(len(stored) * 85 // 100))
    connection = server.connection()
    connection.request("GET", url)
    response = connection.getresponse()
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(data))
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    partial = cut.value.partial
    assert 0 < len(partial) < len(data)
    assert partial == data[: len(partial)]
    connection.close()

    # The header: 500 before any byte of the file.
    tamper(storage.inner, name, flip(len(stored) - 50))
    response, body = server.request("GET", url)
    assert response.status == 500
    assert body == b"The file could not be read.\n"


def test_disconnect_leaves_no_open_inner_file(
    served: tuple[LiveServer, LayeredStorage], live: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, storage = served
    config = live[1]["inner"]
    if "location" not in config["OPTIONS"] or config["BACKEND"].endswith("S3Storage"):
        pytest.skip("open files are seen in /proc for FileSystemStorage")
    location = config["OPTIONS"]["location"]
    data = random.Random(5).randbytes(32 * MiB)
    name = storage.save(f"live/{uuid.uuid4().hex}/a.bin", ContentFile(data))
    request = f"GET {storage.url(name)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for _attempt in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(request.encode())
            received = b""
            while len(received) < 64 * 1024:
                received += client.recv(64 * 1024)
            assert received.startswith(b"HTTP/1.1 200")
            assert server.open_files(location)  # it is being served
        # The client is gone after 64 KiB (and some headers).
        deadline = time.monotonic() + 10
        while server.open_files(location) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.open_files(location) == []
    # And the server still serves.
    response, body = server.request("GET", storage.url(name), {"Range": "bytes=0-9"})
    assert (response.status, body) == (206, data[:10])


class RandomFile(io.RawIOBase):
    """``size`` pseudo-random bytes made 1 MiB block by block as they are read, so
    the file is never held whole and any part of it can be made again alone."""

    def __init__(self, size: int, seed: int) -> None:
        self._size = size
        self._seed = seed
        self._position = 0

    def readable(self) -> bool:
        return True

    def block(self, index: int) -> bytes:
        return random.Random(self._seed * 1_000_003 + index).randbytes(MiB)

    def part(self, start: int, length: int) -> bytes:
        first, last = start // MiB, (start + length - 1) // MiB
        joined = b"".join(self.block(i) for i in range(first, last + 1))
        offset = start - first * MiB
        return joined[offset : offset + length]

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._size - self._position)
        if count <= 0:
            return 0
        index, offset = divmod(self._position, MiB)
        count = min(count, MiB - offset)
        buffer[:count] = self.block(index)[offset : offset + count]
        self._position += count
        return count


def random_digest(size: int, seed: int) -> str:
    digest = hashlib.sha256()
    source = RandomFile(size, seed)
    for index in range(size // MiB):
        digest.update(source.block(index))
    return digest.hexdigest()


@pytest.mark.slow
def test_serving_a_large_file_keeps_memory_flat(
    served: tuple[LiveServer, LayeredStorage], live: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, storage = served
    if live[1]["inner"]["BACKEND"].endswith("S3Storage"):
        pytest.skip("measured over FileSystemStorage; S3 is measured for requests")
    name = storage.save(
        f"live/{uuid.uuid4().hex}/large.bin",
        File(RandomFile(LARGE, 6)),  # type: ignore[arg-type]
    )
    url = storage.url(name)
    # Warm up: imports, thread pools, buffers of a first large answer.
    server.request("GET", url, {"Range": f"bytes=0-{8 * MiB - 1}"})
    before = server.status("VmHWM")
    connection = server.connection(timeout=300)
    connection.request("GET", url)
    response = connection.getresponse()
    digest = hashlib.sha256()
    received = 0
    while chunk := response.read(MiB):
        digest.update(chunk)
        received += len(chunk)
    connection.close()
    growth = server.status("VmHWM") - before
    grew = f"{growth / MiB:.1f} MiB"
    print(f"\n{server.flavor}: served {received} bytes, peak RSS grew {grew}")
    assert received == LARGE
    assert digest.hexdigest() == random_digest(LARGE, 6)
    assert growth < RSS_GROWTH_LIMIT


@pytest.mark.slow
def test_s3_range_of_a_large_object_costs_at_most_3_gets(
    served: tuple[LiveServer, LayeredStorage], live: tuple[LiveServer, dict[str, Any]]
) -> None:
    server, storage = served
    if not live[1]["inner"]["BACKEND"].endswith("S3Storage"):
        pytest.skip("S3 only")
    if server.flavor != "gunicorn":
        pytest.skip("the count does not depend on the server; uploaded once")
    name = storage.save(
        f"live/{uuid.uuid4().hex}/large.bin",
        File(RandomFile(LARGE, 7)),  # type: ignore[arg-type]
    )
    start = 100 * MiB + 12345
    expected = RandomFile(LARGE, 7).part(start, MiB)
    log = Path(live[1]["log"])
    mark = log.stat().st_size if log.exists() else 0
    response, body = server.request(
        "GET", storage.url(name), {"Range": f"bytes={start}-{start + MiB - 1}"}
    )
    assert (response.status, body) == (206, expected)
    time.sleep(0.2)
    text = log.read_text()[mark:]
    counts = [int(n) for n in re.findall(r"with (\d+) GET requests", text)]
    print(f"\na 1 MiB range of a {LARGE // MiB} MiB S3 object: {counts} GETs")
    assert len(counts) == 1
    assert counts[0] <= 3
