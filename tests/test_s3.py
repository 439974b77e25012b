"""Over S3 (a real SeaweedFS server): streaming both ways, few requests, no litter."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File

from layered_storage import LayeredStorage
from layered_storage.backends.s3 import S3Reader
from tests.conftest import make_storage
from tests.memory_probe import GeneratedStream, generated_file
from tests.test_storage import FailingContent
from tests.utils import read_in_steps, sample

pytestmark = pytest.mark.inner("s3")

MIB = 1024 * 1024


@pytest.fixture
def s3_storage(settings: Any, tmp_path: Path) -> LayeredStorage:
    return make_storage(settings, tmp_path, "s3", ["zstd", "aes-gcm"])


class Traffic:
    """Every GetObject the S3 client sends (seen through botocore's own events), and
    the object bytes the readers took from the responses."""

    def __init__(self) -> None:
        self.ranges: list[str] = []
        self.readers: list[S3Reader] = []

    def before(self, params: dict[str, Any], **_: Any) -> None:
        self.ranges.append(params.get("Range", "whole object"))

    @property
    def received(self) -> int:
        return sum(reader.received for reader in self.readers)


@pytest.fixture
def traffic(
    s3_storage: LayeredStorage, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Traffic]:
    seen = Traffic()
    inner: Any = s3_storage.inner
    events = inner.connection.meta.client.meta.events
    events.register("before-parameter-build.s3.GetObject", seen.before)
    opener = S3Reader.open

    def open_and_remember(storage: Any, name: str) -> S3Reader:
        reader = opener(storage, name)
        seen.readers.append(reader)
        return reader

    monkeypatch.setattr(S3Reader, "open", open_and_remember)
    yield seen
    events.unregister("before-parameter-build.s3.GetObject", seen.before)


def stored_object(storage: LayeredStorage, name: str) -> dict[str, Any]:
    inner: Any = storage.inner
    client = inner.connection.meta.client
    key = inner._normalize_name(name)
    return dict(client.head_object(Bucket=inner.bucket_name, Key=key))


def test_stored_object_carries_no_guessed_type_or_encoding(
    s3_storage: LayeredStorage,
) -> None:
    name = s3_storage.save(
        "report.txt.gz", ContentFile(b"plaintext pretending to be gz")
    )
    head = stored_object(s3_storage, name)
    assert head["ContentType"] == "application/x-layered-storage"
    assert "ContentEncoding" not in head
    assert s3_storage.open(name).read() == b"plaintext pretending to be gz"


def test_large_save_is_a_multipart_upload(s3_storage: LayeredStorage) -> None:
    data = io.BytesIO(random.Random(1).randbytes(20 * MIB))
    name = s3_storage.save("big.bin", File(data, "big.bin"))
    head = stored_object(s3_storage, name)
    assert "-" in head["ETag"]  # multipart ETags end in -<parts>
    assert s3_storage.size(name) == 20 * MIB


@pytest.fixture
def requests_sent(s3_storage: LayeredStorage) -> Iterator[list[str]]:
    """The names of the S3 operations the storage's client sends."""
    sent: list[str] = []

    def before(model: Any, **_: Any) -> None:
        sent.append(model.name)

    inner: Any = s3_storage.inner
    events = inner.connection.meta.client.meta.events
    events.register("before-call.s3", before)
    yield sent
    events.unregister("before-call.s3", before)


def test_small_save_is_one_put_object(
    s3_storage: LayeredStorage, requests_sent: list[str]
) -> None:
    data = sample(3 * MIB)
    name = s3_storage.save("small.txt", ContentFile(data))
    assert requests_sent == ["PutObject"]
    assert "-" not in stored_object(s3_storage, name)["ETag"]
    assert s3_storage.open(name).read() == data


def test_small_save_that_fails_sends_nothing(
    s3_storage: LayeredStorage, requests_sent: list[str]
) -> None:
    with pytest.raises(ConnectionResetError):
        s3_storage.save("broken.txt", FailingContent(MIB))
    assert requests_sent == []


def test_failed_upload_leaves_no_object_and_no_parts(
    s3_storage: LayeredStorage,
) -> None:
    with pytest.raises(ConnectionResetError):
        s3_storage.save("broken.bin", FailingContent(20 * MIB))
    assert not s3_storage.exists("broken.bin")
    inner: Any = s3_storage.inner
    client = inner.connection.meta.client
    uploads = client.list_multipart_uploads(Bucket=inner.bucket_name)
    prefix = inner.location
    assert [u for u in uploads.get("Uploads", []) if u["Key"].startswith(prefix)] == []


def test_open_reads_the_first_bytes_without_downloading(
    s3_storage: LayeredStorage, traffic: Traffic, settings: Any
) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": 2}
    name = s3_storage.save("stream.bin", generated_file(24 * MIB, "stream.bin"))
    with s3_storage.open(name) as opened:
        first = opened.read(100)
    assert len(first) == 100
    # The first plaintext byte needs the whole first frame (1 MiB before
    # compression); read-ahead may have fetched the rest of the window of
    # 2 x workers frames (about 0.55 MiB stored each), never the whole 12 MiB.
    assert traffic.received < 3 * MIB, traffic.ranges


def test_sequential_read_streams_on_few_requests(
    s3_storage: LayeredStorage, traffic: Traffic
) -> None:
    data = sample(12 * MIB)
    name = s3_storage.save("seq.bin", ContentFile(data))
    with s3_storage.open(name) as opened:
        assert opened.read() == data
    # The tail at open, then one stream up to it; no byte is fetched twice.
    assert len(traffic.ranges) == 2, traffic.ranges
    assert all(r.startswith("bytes=") for r in traffic.ranges)
    assert traffic.received == s3_storage.inner.size(name)


def test_small_file_is_read_with_the_opening_get_alone(
    s3_storage: LayeredStorage, traffic: Traffic
) -> None:
    data = sample(100_000)
    name = s3_storage.save("small.bin", ContentFile(data))
    with s3_storage.open(name) as opened:
        assert opened.read() == data
    assert len(traffic.ranges) == 1, traffic.ranges


def test_size_takes_one_small_ranged_get(
    s3_storage: LayeredStorage, traffic: Traffic
) -> None:
    name = s3_storage.save("sized.bin", generated_file(24 * MIB, "sized.bin"))
    assert s3_storage.size(name) == 24 * MIB
    assert len(traffic.ranges) == 1, traffic.ranges
    assert traffic.received <= 256 * 1024


def test_random_range_takes_two_ranged_gets_including_the_open(
    s3_storage: LayeredStorage, traffic: Traffic
) -> None:
    size = 32 * MIB
    name = s3_storage.save("random.bin", generated_file(size, "random.bin"))
    expected = read_in_steps(GeneratedStream(size), MIB)
    offset = 19 * MIB + 12345
    with s3_storage.open(name) as opened:
        opened.seek(offset)
        assert opened.read(MIB) == expected[offset : offset + MIB]
    # The tail (header copy, seek table, size), then the frames: never the start.
    assert len(traffic.ranges) == 2, traffic.ranges
    assert not traffic.ranges[1].startswith("bytes=0-"), traffic.ranges
    assert traffic.received < 12 * MIB


def test_missing_object_raises_file_not_found(s3_storage: LayeredStorage) -> None:
    with pytest.raises(FileNotFoundError):
        s3_storage.open("absent.bin")


def test_object_replaced_while_being_read_fails_clearly(
    settings: Any, tmp_path: Path
) -> None:
    from layered_storage import ObjectChangedError

    storage = make_storage(settings, tmp_path, "s3", ["aes-gcm"])
    data = random.Random(4).randbytes(2 * MIB)
    name = storage.save("moving.bin", ContentFile(data))
    with storage.open(name) as opened:  # the GET that opens it pins the version
        storage.inner.save(name, ContentFile(b"a different version"))  # overwrites
        with pytest.raises(ObjectChangedError, match="replaced"):
            opened.read()


def test_inspect_reads_the_header_copy_with_one_get(
    s3_storage: LayeredStorage, traffic: Traffic
) -> None:
    from layered_storage.maintenance import inspect

    name = s3_storage.save("inspected.bin", generated_file(4 * MIB, "inspected.bin"))
    info = inspect(s3_storage, name)
    assert info.layers == ("zstd", "AES-256-GCM")
    assert info.stored_size == s3_storage.inner.size(name)
    assert len(traffic.ranges) == 1, traffic.ranges
