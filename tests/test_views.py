"""Serving through Django's test client: every status, header and body rule."""

from __future__ import annotations

import gc
import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, storages
from django.core.signals import request_finished
from django.http import Http404, HttpRequest, HttpResponseBase
from django.test import AsyncClient, Client
from django.urls import include, path, reverse
from django.utils.http import http_date

from layered_storage import LayeredStorage
from layered_storage.exceptions import ConfigurationError, DecryptionError
from layered_storage.tokens import FileToken, expiry_time
from layered_storage.views import serve
from tests.conftest import inner_config
from tests.utils import FRAME, SEGMENT, sample, stored_bytes, tamper

# Closing a response sends request_finished, which looks at the database connection.
pytestmark = pytest.mark.django_db

LAYERED = "layered_storage.LayeredStorage"
SIZE = 2 * FRAME + 3 * SEGMENT + 7  # crosses frame and segment boundaries
TRAILER = 92


def own_view(request: HttpRequest, name: str) -> HttpResponseBase:
    """A view a project writes around its own permission rules."""
    if request.GET.get("deny"):
        raise Http404("no")
    storage = storages["files"]
    assert isinstance(storage, LayeredStorage)
    return serve(request, storage, name, filename="Rapport été.pdf")


urlpatterns = [
    path("files/", include("layered_storage.urls")),
    path("own/<path:name>", own_view),
]


def allow_named_public(request: HttpRequest, storage_alias: str, name: str) -> bool:
    if name.startswith("hidden/"):
        raise Http404("hidden")
    return name.startswith("public/")


class CountingFileSystemStorage(FileSystemStorage):
    """A FileSystemStorage that counts the stored bytes read and the files open."""

    files: ClassVar[list[CountingFileIO]] = []

    def _open(self, name: str, mode: str = "rb") -> File:  # type: ignore[type-arg]
        raw = CountingFileIO(self.path(name), "rb")
        type(self).files.append(raw)
        return File(raw, name)

    @classmethod
    def bytes_read(cls) -> int:
        return sum(file.count for file in cls.files)

    @classmethod
    def open_files(cls) -> list[CountingFileIO]:
        return [file for file in cls.files if not file.closed]


class CountingFileIO(io.FileIO):
    count = 0

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer) or 0
        self.count += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.count += len(data or b"")
        return data or b""


def serving(
    settings: Any,
    tmp_path: Path,
    kind: str = "filesystem",
    layers: list[Any] | None = None,
    **options: Any,
) -> LayeredStorage:
    """Register an inner storage and a served layered one as ``files``; return it."""
    settings.ROOT_URLCONF = __name__
    inner = inner_config(kind, tmp_path)
    if kind == "filesystem":
        inner["BACKEND"] = f"{__name__}.CountingFileSystemStorage"
    settings.STORAGES = {
        **settings.STORAGES,
        "files-inner": inner,
        "files": {
            "BACKEND": LAYERED,
            "OPTIONS": {
                "inner": "files-inner",
                "layers": layers or ["zstd", "aes-gcm"],
                **options,
            },
        },
    }
    CountingFileSystemStorage.files = []
    storage = storages["files"]
    assert isinstance(storage, LayeredStorage)
    return storage


@pytest.fixture(params=["filesystem", "s3"])
def files(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> Any:
    return serving(settings, tmp_path, str(request.param))


@pytest.fixture
def fs_files(settings: Any, tmp_path: Path) -> LayeredStorage:
    return serving(settings, tmp_path)


def body(response: Any) -> bytes:
    """Return the whole body; consuming it makes the test client close it."""
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def drain(chunks: Any, into: bytearray) -> None:
    for chunk in chunks:
        into += chunk


def saved(storage: LayeredStorage, name: str, data: bytes) -> str:
    return storage.save(name, ContentFile(data))


# -- url() --------------------------------------------------------------------------


def test_signed_url_ends_with_basename_and_is_stable(fs_files: LayeredStorage) -> None:
    saved(fs_files, "docs/2024/report.pdf", b"%PDF")
    CountingFileSystemStorage.files = []
    url = fs_files.url("docs/2024/report.pdf")
    assert CountingFileSystemStorage.files == []  # no I/O
    assert fs_files.url("docs/2024/missing.pdf").endswith("/missing.pdf")
    assert url.startswith("/files/")
    assert url.endswith("/report.pdf")
    assert fs_files.url("docs/2024/report.pdf") == url


def test_signed_url_stays_the_same_for_at_least_a_minute() -> None:
    for lifetime in (1, 60, 600, 3600, 86400):
        start = 1_700_000_000
        expiries = [expiry_time(lifetime, start + second) for second in range(3 * 3600)]
        runs = [len(list(group)) for group in _runs(expiries)]
        assert all(run >= 60 for run in runs[1:-1])
        assert all(
            expires >= start + second + lifetime
            for second, expires in enumerate(expiries)
        )
        assert all(
            expires <= start + second + lifetime + max(60, lifetime // 10)
            for second, expires in enumerate(expiries)
        )


def _runs(values: list[int]) -> Iterator[list[int]]:
    run: list[int] = []
    for value in values:
        if run and value != run[-1]:
            yield run
            run = []
        run.append(value)
    if run:
        yield run


def test_url_policies(settings: Any, tmp_path: Path) -> None:
    storage = serving(settings, tmp_path, url_policy="inner")
    assert storage.url("a.pdf") == storage.inner.url("a.pdf") == "/media/a.pdf"
    storage = serving(settings, tmp_path, url_policy="refuse")
    with pytest.raises(ValueError, match="This file is not accessible via a URL"):
        storage.url("a.pdf")
    storage = serving(settings, tmp_path, url_policy="protected")
    assert storage.url("dir/a b.pdf") == "/files/p/files/dir/a%20b.pdf"


def test_url_raises_only_value_error(fs_files: LayeredStorage, settings: Any) -> None:
    with pytest.raises(ValueError, match="not accessible"):
        fs_files.url(None)
    with pytest.raises(ValueError, match="names a folder"):
        fs_files.url("dir/")
    unregistered = LayeredStorage(inner="files-inner", layers=["aes-gcm"])
    with pytest.raises(ValueError, match=r"not an entry of settings\.STORAGES"):
        unregistered.url("a.pdf")
    # Built the same way as the entry: found by its arguments.
    twin = LayeredStorage(inner="files-inner", layers=["zstd", "aes-gcm"])
    assert twin.url("a.pdf") == fs_files.url("a.pdf")
    settings.ROOT_URLCONF = "django.contrib.auth.urls"  # without the include
    with pytest.raises(ValueError, match=r"include\(\"layered_storage.urls\"\)"):
        fs_files.url("a.pdf")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url_policy": "public"}, "'url_policy' is one of"),
        ({"url_policy": None}, "'url_policy' must be str"),
        ({"url_expiry": 0}, "'url_expiry' is a number of seconds"),
        ({"url_expiry": 1.5}, "'url_expiry' must be int"),
        ({"url_expiry": True}, "'url_expiry' must be int"),
        ({"permission": len}, "'permission' must be str or None"),
    ],
)
def test_url_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        LayeredStorage(inner="default", **options)
    assert caught.value.check_id == "layered_storage.E008"


# -- the signed view: statuses and headers ------------------------------------------


def test_get_serves_plaintext_with_every_header(files: LayeredStorage) -> None:
    data = sample(SIZE)
    name = saved(files, "docs/report.pdf", data)
    response = Client().get(files.url(name))
    assert response.status_code == 200
    assert body(response) == data
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Length"] == str(SIZE)
    assert response["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[A-Za-z0-9_-]{24}"', response["ETag"])
    modified = int(files.get_modified_time(name).timestamp())
    assert response["Last-Modified"] == http_date(modified)  # on S3, without a HEAD
    assert response["Content-Disposition"] == 'inline; filename="report.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Accel-Buffering"] == "no"
    assert re.fullmatch(r"private, max-age=\d+", response["Cache-Control"])
    assert 3600 <= int(response["Cache-Control"].split("=")[1]) <= 3600 + 360
    assert not response.has_header("Content-Encoding")
    assert not response.has_header("Content-Security-Policy")
    assert not response.has_header("Vary")


def test_head_answers_the_headers_and_reads_only_the_tail(
    fs_files: LayeredStorage,
) -> None:
    data = sample(SIZE)
    name = saved(fs_files, "clip.mp4", data)
    url = fs_files.url(name)
    get = Client().get(url)
    body(get)
    CountingFileSystemStorage.files = []
    head = Client().head(url)
    assert head.status_code == 200
    assert head.content == b""
    for header in ("Content-Type", "Content-Length", "ETag", "Content-Disposition"):
        assert head[header] == get[header]
    assert CountingFileSystemStorage.bytes_read() < 64 * 1024
    assert CountingFileSystemStorage.open_files() == []
    ranged = Client().head(url, headers={"Range": "bytes=5-9"})
    assert ranged.status_code == 206
    assert ranged["Content-Range"] == f"bytes 5-9/{SIZE}"
    assert ranged["Content-Length"] == "5"


RANGES = [
    ("bytes=0-0", 0, 0),
    ("bytes=-1", SIZE - 1, SIZE - 1),
    ("bytes=0-", 0, SIZE - 1),
    (f"bytes={SIZE - 10}-{SIZE + 1000}", SIZE - 10, SIZE - 1),  # end clamped
    (f"bytes={SEGMENT - 3}-{SEGMENT + 2}", SEGMENT - 3, SEGMENT + 2),
    (f"bytes={3 * SEGMENT - 1}-{3 * SEGMENT}", 3 * SEGMENT - 1, 3 * SEGMENT),
    (f"bytes={FRAME - 5}-{FRAME + 4}", FRAME - 5, FRAME + 4),
    (f"bytes={FRAME - 1}-", FRAME - 1, SIZE - 1),
    (
        f"bytes={2 * FRAME - SEGMENT}-{2 * FRAME + SEGMENT}",
        2 * FRAME - SEGMENT,
        2 * FRAME + SEGMENT,
    ),
    ("bytes=100-199,150-300", 100, 300),  # overlapping ranges coalesce
    (f"bytes=-{SIZE + 5}", 0, SIZE - 1),
]


def test_ranges_are_byte_exact(files: LayeredStorage) -> None:
    data = sample(SIZE, seed=1)
    url = files.url(saved(files, "data.bin", data))
    client = Client()
    for header, start, end in RANGES:
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
        assert response["Content-Length"] == str(end - start + 1)
        assert body(response) == data[start : end + 1], header


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,10-20", "bytes=5-1", "items=0-1", "bytes=abc", "bytes=-", "bytes"],
)
def test_ignored_ranges_answer_everything(
    fs_files: LayeredStorage, header: str
) -> None:
    data = sample(3 * SEGMENT)
    url = fs_files.url(saved(fs_files, "a.bin", data))
    response = Client().get(url, headers={"Range": header})
    assert response.status_code == 200
    assert not response.has_header("Content-Range")
    assert body(response) == data


@pytest.mark.parametrize(
    "header", [f"bytes={3 * SEGMENT}-", "bytes=-0", "bytes=9999999-"]
)
def test_unsatisfiable_range_is_416(fs_files: LayeredStorage, header: str) -> None:
    url = fs_files.url(saved(fs_files, "a.bin", sample(3 * SEGMENT)))
    response = Client().get(url, headers={"Range": header})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{3 * SEGMENT}"
    assert response["Accept-Ranges"] == "bytes"
    assert response.has_header("ETag")
    assert response.content == b""
    assert CountingFileSystemStorage.open_files() == []


def test_empty_file_ignores_range(fs_files: LayeredStorage) -> None:
    url = fs_files.url(saved(fs_files, "empty.txt", b""))
    for headers in ({}, {"Range": "bytes=0-0"}, {"Range": "bytes=-1"}):
        response = Client().get(url, headers=headers)
        assert response.status_code == 200
        assert response["Content-Length"] == "0"
        assert body(response) == b""


def test_conditional_requests(files: LayeredStorage) -> None:
    data = sample(2 * SEGMENT)
    url = files.url(saved(files, "a.txt", data))
    client = Client()
    first = client.get(url)
    body(first)
    etag, modified = first["ETag"], first["Last-Modified"]

    def status(**headers: str) -> tuple[int, Any]:
        response = client.get(url, headers=headers)
        content = body(response)
        return response.status_code, (response, content)

    code, (response, content) = status(If_None_Match=etag, Range="bytes=0-0")
    assert code == 304  # before Range
    assert content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"].startswith("private, max-age=")
    assert status(If_None_Match=f"W/{etag}")[0] == 304  # weak comparison
    assert status(If_None_Match='"other"')[0] == 200
    assert status(If_Modified_Since=modified)[0] == 304
    assert status(If_Modified_Since="Thu, 01 Jan 1970 00:00:00 GMT")[0] == 200
    assert status(If_Match='"other"')[0] == 412
    assert status(If_Match=etag)[0] == 200
    assert status(If_Unmodified_Since="Thu, 01 Jan 1970 00:00:00 GMT")[0] == 412
    assert status(If_Unmodified_Since=modified)[0] == 200
    code, (response, content) = status(Range="bytes=0-9", If_Range=etag)
    assert (code, content) == (206, data[:10])
    code, (response, content) = status(Range="bytes=0-9", If_Range='"stale"')
    assert (code, content) == (200, data)
    assert status(Range="bytes=0-9", If_Range=modified)[0] == 206
    assert status(Range="bytes=0-9", If_Range=f"W/{etag}")[0] == 200


def test_etag_is_stable_and_changes_on_every_write(files: LayeredStorage) -> None:
    data = sample(SEGMENT)
    name = saved(files, "a.txt", data)
    client = Client()
    etags = {client.head(files.url(name))["ETag"] for _ in range(2)}
    assert len(etags) == 1
    files.delete(name)
    assert saved(files, "a.txt", data) == name  # the same bytes again
    assert client.head(files.url(name))["ETag"] not in etags


def test_etag_of_unencrypted_files(settings: Any, tmp_path: Path) -> None:
    storage = serving(settings, tmp_path, layers=["zstd"])
    url = storage.url(saved(storage, "a.txt", b"hello"))
    response = Client().get(url)
    assert body(response) == b"hello"
    etag = response["ETag"]
    assert Client().get(url, headers={"If-None-Match": etag}).status_code == 304


def test_missing_file_is_404(files: LayeredStorage) -> None:
    response = Client().get(files.url("nowhere/a.pdf"))
    assert response.status_code == 404
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch", "options"])
def test_other_methods_are_405(fs_files: LayeredStorage, method: str) -> None:
    url = fs_files.url(saved(fs_files, "a.txt", b"a"))
    response = getattr(Client(), method)(url)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_bad_tokens(fs_files: LayeredStorage) -> None:
    name = saved(fs_files, "dir/a.txt", b"secret")
    url = fs_files.url(name)
    token = url.split("/")[2]
    client = Client()
    forged = FileToken("files", "dir/other.txt", int(time.time()) + 60).sign()
    assert client.get(f"/files/{token[:-2]}xx/a.txt").status_code == 403
    assert client.get(f"/files/{forged[:-3]}{token[-3:]}/a.txt").status_code == 403
    assert client.get(f"/files/{token}/b.txt").status_code == 404
    # Signed for another purpose (a session, a reset link): refused.
    from django.core import signing

    other = signing.Signer().sign_object(["files", name, int(time.time()) + 60])
    assert client.get(f"/files/{other}/a.txt").status_code == 403


def test_expired_link_is_410(fs_files: LayeredStorage) -> None:
    name = saved(fs_files, "a.txt", b"secret")
    token = FileToken("files", name, int(time.time()) - 1).sign()
    response = Client().get(reverse("layered_storage:signed", args=[token, "a.txt"]))
    assert response.status_code == 410
    assert response["Cache-Control"] == "no-store"
    assert b"secret" not in response.content


def test_signed_link_stops_when_the_policy_changes(
    settings: Any, tmp_path: Path
) -> None:
    storage = serving(settings, tmp_path)
    url = storage.url(saved(storage, "a.txt", b"a"))
    settings.STORAGES["files"]["OPTIONS"]["url_policy"] = "refuse"
    settings.STORAGES = dict(settings.STORAGES)  # drops the cached instances
    assert Client().get(url).status_code == 404


# -- what the body is ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "disposition", "csp"),
    [
        ("a.pdf", "application/pdf", "inline", False),
        ("a.png", "image/png", "inline", False),
        ("a.mp4", "video/mp4", "inline", False),
        ("a.txt", "text/plain", "inline", False),
        ("a.svg", "image/svg+xml", "attachment", True),
        ("a.html", "text/html", "attachment", True),
        ("a.xml", "application/xml", "attachment", True),
        ("a.zip", "application/zip", "attachment", False),
        ("a.tar.gz", "application/gzip", "attachment", False),
        ("noext", "application/octet-stream", "attachment", False),
    ],
)
def test_type_and_disposition(
    fs_files: LayeredStorage, name: str, content_type: str, disposition: str, csp: bool
) -> None:
    data = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    url = fs_files.url(saved(fs_files, name, data))
    response = Client().get(url)
    assert body(response) == data
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'{disposition}; filename="{name}"'
    assert not response.has_header("Content-Encoding")
    if csp:
        assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    else:
        assert not response.has_header("Content-Security-Policy")
    download = Client().get(url + "?download=1")
    body(download)
    assert download["Content-Disposition"] == f'attachment; filename="{name}"'


def test_unicode_name_has_an_ascii_fallback(fs_files: LayeredStorage) -> None:
    url = fs_files.url(saved(fs_files, "dir/Été 报告.pdf", b"%PDF"))
    assert url.endswith("/%C3%89t%C3%A9%20%E6%8A%A5%E5%91%8A.pdf")
    response = Client().get(url)
    assert body(response) == b"%PDF"
    assert response["Content-Disposition"] == (
        'inline; filename="Ete __.pdf"; '
        "filename*=UTF-8''%C3%89t%C3%A9%20%E6%8A%A5%E5%91%8A.pdf"
    )


def test_tampered_header_is_500_before_any_byte(
    files: LayeredStorage, caplog: pytest.LogCaptureFixture
) -> None:
    data = sample(3 * SEGMENT)
    name = saved(files, "a.pdf", data)
    url = files.url(name)

    def flip_trailer(stored: bytearray) -> bytes:
        stored[-TRAILER + 40] ^= 1  # the salt in the header copy of the trailer
        return bytes(stored)

    tamper(files.inner, name, flip_trailer)
    with caplog.at_level(logging.ERROR, logger="layered_storage.views"):
        response = Client().get(url)
    assert response.status_code == 500
    assert not response.streaming
    assert response.content == b"The file could not be read.\n"
    assert "failed header authentication" in caplog.text
    assert repr(name) in caplog.text


def test_tampered_final_segment_is_500_before_any_byte(files: LayeredStorage) -> None:
    data = sample(3 * SEGMENT + 100)
    name = saved(files, "a.pdf", data)

    def flip_final(stored: bytearray) -> bytes:
        stored[-TRAILER - 20] ^= 1  # in the final segment, before the trailer
        return bytes(stored)

    tamper(files.inner, name, flip_final)
    for method in ("get", "head"):
        response = getattr(Client(), method)(files.url(name))
        assert response.status_code == 500
        assert not response.streaming


def test_unknown_key_is_500(
    fs_files: LayeredStorage, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = saved(fs_files, "a.pdf", b"%PDF secret")
    url = fs_files.url(name)
    other_key = "q" * 42 + "Y="
    settings.LAYERED_STORAGE = {"KEYS": [other_key]}  # the writing key is gone
    settings.STORAGES = dict(settings.STORAGES)  # rebuild the storages
    with caplog.at_level(logging.ERROR, logger="layered_storage.views"):
        response = Client().get(url)
    assert response.status_code == 500
    assert b"secret" not in response.content
    assert "which is not in the keyring" in caplog.text


def test_tampered_leading_header_is_500_before_any_byte(
    fs_files: LayeredStorage,
) -> None:
    name = saved(fs_files, "a.pdf", sample(3 * SEGMENT))

    def flip_head(stored: bytearray) -> bytes:
        stored[40] ^= 1
        return bytes(stored)

    tamper(fs_files.inner, name, flip_head)
    response = Client().get(fs_files.url(name))
    assert response.status_code == 500
    assert CountingFileSystemStorage.open_files() == []


@pytest.mark.parametrize("layers", [["aes-gcm"], ["zstd", "aes-gcm"]])
def test_mid_file_tampering_cuts_the_body_short(
    settings: Any, tmp_path: Path, layers: list[str]
) -> None:
    storage = serving(settings, tmp_path, layers=layers)
    data = sample(8 * FRAME)
    name = saved(storage, "a.bin", data)
    stored = stored_bytes(storage.inner, name)
    # Past the first frames, which the first chunk and the read-ahead reach.
    middle = len(stored) * 85 // 100

    def flip_middle(stored: bytearray) -> bytes:
        stored[middle] ^= 1
        return bytes(stored)

    tamper(storage.inner, name, flip_middle)
    response: Any = Client().get(storage.url(name))
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(data))
    received = bytearray()
    with pytest.raises(DecryptionError, match="failed authentication at segment"):
        drain(response.streaming_content, received)
    assert 0 < len(received) < len(data)
    assert received == data[: len(received)]  # only verified bytes went out
    response.close()
    assert CountingFileSystemStorage.open_files() == []


def test_body_has_no_fileno_and_closes_once(fs_files: LayeredStorage) -> None:
    data = sample(3 * SEGMENT)
    url = fs_files.url(saved(fs_files, "a.bin", data))
    finished: list[Any] = []

    def count(**kwargs: Any) -> None:
        finished.append(kwargs)

    request_finished.connect(count)
    try:
        response: Any = Client().get(url, headers={"Range": "bytes=10-"})
        assert getattr(response, "file_to_stream", None) is None  # no sendfile path
        iterator = response.streaming_content
        assert not hasattr(iterator, "fileno")
        finished.clear()
        assert b"".join(iterator) == data[10:]  # the test client closes at the end
        assert len(finished) == 1
        assert CountingFileSystemStorage.open_files() == []
        # Nothing closes again later: no __del__ that would fire request_finished
        # from the garbage collector, in another request's time.
        del response, iterator
        gc.collect()
        assert len(finished) == 1
    finally:
        request_finished.disconnect(count)
    assert len(CountingFileSystemStorage.files) == 1


def test_abandoned_body_closes_the_stored_file(fs_files: LayeredStorage) -> None:
    url = fs_files.url(saved(fs_files, "a.bin", sample(SIZE)))
    response: Any = Client().get(url)
    iterator = iter(response.streaming_content)
    next(iterator)
    assert len(CountingFileSystemStorage.open_files()) == 1
    response.close()  # what a WSGI server does when the client goes away
    assert CountingFileSystemStorage.open_files() == []


def test_range_reads_only_the_segments_it_needs(settings: Any, tmp_path: Path) -> None:
    storage = serving(settings, tmp_path, layers=["aes-gcm"])
    data = sample(40 * SEGMENT)
    url = storage.url(saved(storage, "a.bin", data))
    CountingFileSystemStorage.files = []
    start = 20 * SEGMENT + 100
    response = Client().get(url, headers={"Range": f"bytes={start}-{start + 999}"})
    assert body(response) == data[start : start + 1000]
    # The tail (header copy, final segment) and the one segment the range is in.
    tail = TRAILER + (40 * SEGMENT % SEGMENT) + 16
    assert CountingFileSystemStorage.bytes_read() <= 2 * tail + SEGMENT + 16


def test_s3_range_costs_few_gets(settings: Any, tmp_path: Path, caplog: Any) -> None:
    storage = serving(settings, tmp_path, "s3")
    data = sample(8 * FRAME)
    url = storage.url(saved(storage, "big.bin", data))
    start = 3 * FRAME + 12345
    with caplog.at_level(logging.DEBUG, logger="layered_storage.serving"):
        response = Client().get(
            url, headers={"Range": f"bytes={start}-{start + FRAME - 1}"}
        )
        assert body(response) == data[start : start + FRAME]
    records = [r for r in caplog.records if "GET requests" in r.getMessage()]
    assert len(records) == 1
    assert records[0].args is not None
    requests = records[0].args[1]
    assert isinstance(requests, int)
    assert requests <= 3


# -- the protected policy and serve() -------------------------------------------------


def test_protected_asks_permission_before_existence(
    settings: Any, tmp_path: Path, django_user_model: Any
) -> None:
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    storage = serving(settings, tmp_path, url_policy="protected")
    url = storage.url(saved(storage, "a.txt", b"secret"))
    anonymous = Client()
    assert anonymous.get(url).status_code == 403
    assert anonymous.get(storage.url("missing.txt")).status_code == 403
    staff = Client()
    staff.force_login(django_user_model.objects.create(username="s", is_staff=True))
    response = staff.get(url)
    assert body(response) == b"secret"
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Vary"] == "Cookie"
    assert staff.get(storage.url("missing.txt")).status_code == 404
    user = Client()
    user.force_login(django_user_model.objects.create(username="u"))
    assert user.get(url).status_code == 403


def test_protected_with_own_permission(settings: Any, tmp_path: Path) -> None:
    storage = serving(
        settings,
        tmp_path,
        url_policy="protected",
        permission=f"{__name__}.allow_named_public",
    )
    client = Client()
    assert body(client.get(storage.url(saved(storage, "public/a.txt", b"a")))) == b"a"
    assert client.get(storage.url(saved(storage, "b.txt", b"b"))).status_code == 403
    assert (
        client.get(storage.url(saved(storage, "hidden/c.txt", b"c"))).status_code == 404
    )
    # A signed-policy storage is not served by the protected route, nor vice versa.
    assert client.get("/files/p/files-inner/public/a.txt").status_code == 404


def test_serve_in_a_view_of_your_own(fs_files: LayeredStorage) -> None:
    name = saved(fs_files, "docs/a.pdf", b"%PDF-1.7")
    response = Client().get(f"/own/{name}", headers={"Range": "bytes=1-3"})
    assert response.status_code == 206
    assert body(response) == b"PDF"
    assert response["Content-Disposition"] == (
        'inline; filename="Rapport ete.pdf"; '
        "filename*=UTF-8''Rapport%20%C3%A9t%C3%A9.pdf"
    )
    assert response["Cache-Control"] == "private, no-cache"
    assert Client().get(f"/own/{name}?deny=1").status_code == 404


def test_gzip_middleware_leaves_the_body_alone(
    fs_files: LayeredStorage, settings: Any
) -> None:
    settings.MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware"]
    data = b"compressible " * 10000
    url = fs_files.url(saved(fs_files, "a.txt", data))
    client = Client(headers={"Accept-Encoding": "gzip"})
    response = client.get(url)
    assert not response.has_header("Content-Encoding")
    assert response["Content-Length"] == str(len(data))
    assert body(response) == data
    ranged = client.get(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert body(ranged) == data[:10]


# -- ASGI ---------------------------------------------------------------------------


async def _aget(url: str, **headers: str) -> tuple[Any, bytes]:
    response: Any = await AsyncClient().get(url, headers=headers)
    chunks = []
    if response.streaming:
        assert response.is_async  # never a sync iterator Django would buffer
        async for chunk in response.streaming_content:
            chunks.append(chunk)
    else:
        chunks.append(response.content)
    return response, b"".join(chunks)


def test_asgi_streams_an_async_iterator(fs_files: LayeredStorage) -> None:
    data = sample(SIZE)
    url = fs_files.url(saved(fs_files, "a.bin", data))
    response, content = async_to_sync(_aget)(url)
    assert (response.status_code, content) == (200, data)
    response.close()
    response, content = async_to_sync(_aget)(
        url, Range=f"bytes={FRAME - 3}-{FRAME + 2}"
    )
    assert (response.status_code, content) == (206, data[FRAME - 3 : FRAME + 3])
    response, content = async_to_sync(_aget)(url, Range="bytes=99999999-")
    assert response.status_code == 416
    assert CountingFileSystemStorage.open_files() == []


def test_asgi_mid_file_tampering_raises(settings: Any, tmp_path: Path) -> None:
    storage = serving(settings, tmp_path, layers=["aes-gcm"])
    data = sample(SIZE)
    name = saved(storage, "a.bin", data)
    middle = len(stored_bytes(storage.inner, name)) // 2

    def flip_middle(stored: bytearray) -> bytes:
        stored[middle] ^= 1
        return bytes(stored)

    tamper(storage.inner, name, flip_middle)
    with pytest.raises(DecryptionError):
        async_to_sync(_aget)(storage.url(name))
    assert CountingFileSystemStorage.open_files() == []
