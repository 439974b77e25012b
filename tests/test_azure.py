"""Over Azure Blob Storage (azurite): streaming both ways, few requests, no litter."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File

from layered_storage import LayeredStorage, ObjectChangedError
from layered_storage.backends.azure import AzureReader
from tests.conftest import make_storage
from tests.memory_probe import GeneratedStream, generated_file
from tests.test_storage import FailingContent
from tests.utils import read_in_steps, sample

pytestmark = pytest.mark.inner("azure")

MIB = 1024 * 1024


@pytest.fixture
def azure_storage(settings: Any, tmp_path: Path) -> LayeredStorage:
    return make_storage(settings, tmp_path, "azure", ["zstd", "aes-gcm"])


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[AzureReader]:
    """Every reader opened during the test (each counts its requests and bytes)."""
    opened: list[AzureReader] = []
    opener = AzureReader.open

    def open_and_remember(storage: Any, name: str) -> AzureReader:
        reader = opener(storage, name)
        opened.append(reader)
        return reader

    monkeypatch.setattr(AzureReader, "open", open_and_remember)
    return opened


def blob(storage: LayeredStorage, name: str) -> Any:
    inner: Any = storage.inner
    return inner.client.get_blob_client(inner._get_valid_path(name))


def test_stored_blob_carries_no_guessed_type_or_encoding(
    azure_storage: LayeredStorage,
) -> None:
    name = azure_storage.save("report.txt.gz", ContentFile(b"pretending to be gz"))
    settings = blob(azure_storage, name).get_blob_properties().content_settings
    assert settings.content_type == "application/x-layered-storage"
    assert settings.content_encoding is None
    assert azure_storage.open(name).read() == b"pretending to be gz"


def test_large_save_commits_staged_blocks(azure_storage: LayeredStorage) -> None:
    data = io.BytesIO(random.Random(1).randbytes(20 * MIB))
    name = azure_storage.save("big.bin", File(data, "big.bin"))
    committed, uncommitted = blob(azure_storage, name).get_block_list("all")
    assert len(committed) == 3  # 8 MiB blocks
    assert uncommitted == []
    assert azure_storage.size(name) == 20 * MIB


def test_failed_save_leaves_no_blob(azure_storage: LayeredStorage) -> None:
    with pytest.raises(ConnectionResetError):
        azure_storage.save("broken.bin", FailingContent(20 * MIB))
    assert not azure_storage.exists("broken.bin")
    assert azure_storage.listdir("") == ([], [])


def test_save_never_replaces_a_blob_without_overwrite_files(
    azure_storage: LayeredStorage,
) -> None:
    first = azure_storage.save("same.bin", ContentFile(b"first"))
    second = azure_storage.save("same.bin", ContentFile(b"second"))
    assert first != second
    assert azure_storage.open(first).read() == b"first"
    assert azure_storage.open(second).read() == b"second"


def test_replace_swaps_the_blob(azure_storage: LayeredStorage) -> None:
    name = azure_storage.save("doc.bin", ContentFile(sample(3 * MIB, 1)))
    azure_storage.replace(name, ContentFile(sample(10 * MIB, 2)))
    assert azure_storage.open(name).read() == sample(10 * MIB, 2)
    assert azure_storage.listdir("")[1] == [name]


def test_open_reads_the_first_bytes_without_downloading(
    azure_storage: LayeredStorage, readers: list[AzureReader]
) -> None:
    name = azure_storage.save("stream.bin", generated_file(24 * MIB, "stream.bin"))
    with azure_storage.open(name) as opened:
        assert len(opened.read(100)) == 100
    assert sum(reader.received for reader in readers) < 3 * MIB


def test_sequential_read_streams_on_the_opening_get(
    azure_storage: LayeredStorage, readers: list[AzureReader]
) -> None:
    data = sample(12 * MIB)
    name = azure_storage.save("seq.bin", ContentFile(data))
    with azure_storage.open(name) as opened:
        assert opened.read() == data
    # The opening GET streams on, and one more fetched the tail.
    (reader,) = readers
    assert reader.requests == 2
    assert reader.received == azure_storage.inner.size(name)


def test_small_file_is_read_with_the_opening_get_alone(
    azure_storage: LayeredStorage, readers: list[AzureReader]
) -> None:
    data = sample(100_000)
    name = azure_storage.save("small.bin", ContentFile(data))
    with azure_storage.open(name) as opened:
        assert opened.read() == data
    assert [reader.requests for reader in readers] == [1]


def test_size_takes_two_small_gets(
    azure_storage: LayeredStorage, readers: list[AzureReader]
) -> None:
    # Azure has no suffix ranges: the size comes with the first bytes, the tail
    # (which an encrypted size needs, verified) with a second GET.
    name = azure_storage.save("sized.bin", generated_file(24 * MIB, "sized.bin"))
    assert azure_storage.size(name) == 24 * MIB
    (reader,) = readers
    assert reader.requests == 2
    assert reader.received <= 2 * 256 * 1024 + 64 * 1024  # the connection's read-ahead


def test_random_range_takes_three_gets_including_the_open(
    azure_storage: LayeredStorage, readers: list[AzureReader]
) -> None:
    size = 32 * MIB
    name = azure_storage.save("random.bin", generated_file(size, "random.bin"))
    expected = read_in_steps(GeneratedStream(size), MIB)
    offset = 19 * MIB + 12345
    with azure_storage.open(name) as opened:
        opened.seek(offset)
        assert opened.read(MIB) == expected[offset : offset + MIB]
    (reader,) = readers
    assert reader.requests == 3
    assert reader.received < 12 * MIB


def test_missing_blob_raises_file_not_found(azure_storage: LayeredStorage) -> None:
    with pytest.raises(FileNotFoundError):
        azure_storage.open("absent.bin")


def test_empty_file_round_trips(azure_storage: LayeredStorage) -> None:
    storage = LayeredStorage(inner=azure_storage.inner_alias, layers=["zstd"])
    name = storage.save("empty.bin", ContentFile(b""))
    assert storage.open(name).read() == b""


def test_blob_replaced_while_being_read_fails_clearly(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "azure", ["aes-gcm"])
    data = random.Random(4).randbytes(8 * MIB)
    name = storage.save("moving.bin", ContentFile(data))
    with storage.open(name) as opened:  # the GETs that open it pin the ETag
        # Far from the opening GET's stream (which goes on serving the old
        # version's bytes, consistently): a new GET, refused.
        opened.seek(5 * MIB)
        blob(storage, name).upload_blob(b"a different version", overwrite=True)
        with pytest.raises(ObjectChangedError, match="replaced"):
            opened.read()


def test_inspect_reads_head_and_tail_only(
    azure_storage: LayeredStorage, readers: list[AzureReader]
) -> None:
    from layered_storage.maintenance import inspect

    name = azure_storage.save("inspected.bin", generated_file(4 * MIB, "x.bin"))
    info = inspect(azure_storage, name)
    assert info.layers == ("zstd", "AES-256-GCM")
    assert info.stored_size == azure_storage.inner.size(name)
    assert [reader.requests for reader in readers] == [2]
