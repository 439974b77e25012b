"""Over Google Cloud Storage (fake-gcs-server): streaming both ways, few requests,
no litter."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File

from layered_storage import LayeredStorage, ObjectChangedError
from layered_storage.backends import gcs
from layered_storage.backends.gcs import GcsReader
from tests.conftest import make_storage
from tests.memory_probe import GeneratedStream, generated_file
from tests.test_storage import FailingContent
from tests.utils import read_in_steps, sample

pytestmark = pytest.mark.inner("gcs")

MIB = 1024 * 1024


@pytest.fixture
def gcs_storage(settings: Any, tmp_path: Path) -> LayeredStorage:
    return make_storage(settings, tmp_path, "gcs", ["zstd", "aes-gcm"])


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[GcsReader]:
    """Every reader opened during the test (each counts its requests and bytes)."""
    opened: list[GcsReader] = []
    opener = GcsReader.open

    def open_and_remember(storage: Any, name: str) -> GcsReader:
        reader = opener(storage, name)
        opened.append(reader)
        return reader

    monkeypatch.setattr(GcsReader, "open", open_and_remember)
    return opened


def stored(storage: LayeredStorage, name: str) -> Any:
    inner: Any = storage.inner
    return inner.bucket.get_blob(inner._normalize_name(name))


def test_stored_object_carries_no_guessed_type_or_encoding(
    gcs_storage: LayeredStorage,
) -> None:
    for size in (100, 9 * MIB):  # one request, and a resumable upload
        name = gcs_storage.save(f"report-{size}.txt.gz", ContentFile(sample(size)))
        blob = stored(gcs_storage, name)
        assert blob.content_type == "application/x-layered-storage"
        assert blob.content_encoding is None
        assert gcs_storage.open(name).read() == sample(size)


def test_large_save_is_a_resumable_upload_in_chunks(
    gcs_storage: LayeredStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks: list[tuple[int, bool]] = []
    put = gcs._put

    def counted(http: Any, session: str, chunk: bytes, offset: int, **kw: Any) -> int:
        chunks.append((len(chunk), kw["final"]))
        return put(http, session, chunk, offset, **kw)

    monkeypatch.setattr(gcs, "_put", counted)
    data = io.BytesIO(random.Random(1).randbytes(20 * MIB))
    name = gcs_storage.save("big.bin", File(data, "big.bin"))
    full = (gcs.CHUNK_SIZE, False)
    assert chunks[:2] == [full, full]
    assert chunks[2][1] is True
    assert len(chunks) == 3
    assert gcs_storage.size(name) == 20 * MIB


def test_failed_save_leaves_no_object_and_cancels_its_session(
    gcs_storage: LayeredStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[int] = []

    def cancel(http: Any, session: str, name: str) -> None:
        answers.append(http.request("DELETE", session).status_code)

    monkeypatch.setattr(gcs, "_cancel", cancel)
    # Well past the 8 MiB chunk (half of it compressible text), so the upload is
    # resumable before the content fails, whatever the pipeline holds in flight.
    with pytest.raises(ConnectionResetError):
        gcs_storage.save("broken.bin", FailingContent(40 * MIB))
    assert not gcs_storage.exists("broken.bin")
    assert answers == [499]  # GCS's answer to a cancelled upload


def test_replace_swaps_the_object(gcs_storage: LayeredStorage) -> None:
    name = gcs_storage.save("doc.bin", ContentFile(sample(3 * MIB, 1)))
    gcs_storage.replace(name, ContentFile(sample(10 * MIB, 2)))
    assert gcs_storage.open(name).read() == sample(10 * MIB, 2)
    assert gcs_storage.listdir("")[1] == [name]


def test_open_reads_the_first_bytes_without_downloading(
    gcs_storage: LayeredStorage, readers: list[GcsReader]
) -> None:
    name = gcs_storage.save("stream.bin", generated_file(24 * MIB, "stream.bin"))
    with gcs_storage.open(name) as opened:
        assert len(opened.read(100)) == 100
    assert sum(reader.received for reader in readers) < 3 * MIB


def test_sequential_read_streams_on_few_requests(
    gcs_storage: LayeredStorage, readers: list[GcsReader]
) -> None:
    data = sample(12 * MIB)
    name = gcs_storage.save("seq.bin", ContentFile(data))
    with gcs_storage.open(name) as opened:
        assert opened.read() == data
    # The tail at open, then one stream up to it; no byte is fetched twice.
    (reader,) = readers
    assert reader.requests == 2
    assert reader.received == gcs_storage.inner.size(name)


def test_small_file_is_read_with_the_opening_get_alone(
    gcs_storage: LayeredStorage, readers: list[GcsReader]
) -> None:
    data = sample(100_000)
    name = gcs_storage.save("small.bin", ContentFile(data))
    with gcs_storage.open(name) as opened:
        assert opened.read() == data
    assert [reader.requests for reader in readers] == [1]


def test_size_takes_one_small_ranged_get(
    gcs_storage: LayeredStorage, readers: list[GcsReader]
) -> None:
    name = gcs_storage.save("sized.bin", generated_file(24 * MIB, "sized.bin"))
    assert gcs_storage.size(name) == 24 * MIB
    (reader,) = readers
    assert reader.requests == 1
    assert reader.received <= 256 * 1024


def test_random_range_takes_two_gets_including_the_open(
    gcs_storage: LayeredStorage, readers: list[GcsReader]
) -> None:
    size = 32 * MIB
    name = gcs_storage.save("random.bin", generated_file(size, "random.bin"))
    expected = read_in_steps(GeneratedStream(size), MIB)
    offset = 19 * MIB + 12345
    with gcs_storage.open(name) as opened:
        opened.seek(offset)
        assert opened.read(MIB) == expected[offset : offset + MIB]
    (reader,) = readers
    assert reader.requests == 2
    assert reader.received < 12 * MIB


def test_missing_object_raises_file_not_found(gcs_storage: LayeredStorage) -> None:
    with pytest.raises(FileNotFoundError):
        gcs_storage.open("absent.bin")


def test_empty_file_round_trips(gcs_storage: LayeredStorage) -> None:
    storage = LayeredStorage(inner=gcs_storage.inner_alias, layers=["zstd"])
    name = storage.save("empty.bin", ContentFile(b""))
    assert storage.open(name).read() == b""


def test_object_replaced_while_being_read_fails_clearly(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "gcs", ["aes-gcm"])
    data = random.Random(4).randbytes(2 * MIB)
    name = storage.save("moving.bin", ContentFile(data))
    with storage.open(name) as opened:  # the GET that opens it pins the generation
        storage.inner.save(name, ContentFile(b"a different version"))  # overwrites
        with pytest.raises(ObjectChangedError, match="replaced"):
            opened.read()


def test_inspect_reads_the_header_copy_with_one_get(
    gcs_storage: LayeredStorage, readers: list[GcsReader]
) -> None:
    from layered_storage.maintenance import inspect

    name = gcs_storage.save("inspected.bin", generated_file(4 * MIB, "x.bin"))
    info = inspect(gcs_storage, name)
    assert info.layers == ("zstd", "AES-256-GCM")
    assert info.stored_size == gcs_storage.inner.size(name)
    assert [reader.requests for reader in readers] == [1]
