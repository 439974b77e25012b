"""LayeredFile opened for writing: encoded as written, stored whole on close only."""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage import ConfigurationError, FileTooLargeError, LayeredStorage
from tests.conftest import make_storage
from tests.test_save_safety import stored_names
from tests.test_storage import CustomSaveStorage
from tests.utils import FRAME, SEGMENT, sample

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, SEGMENT + 1, FRAME + 7, 3 * MiB + 5])
def test_written_file_reads_back(any_storage: LayeredStorage, size: int) -> None:
    data = sample(size, size)
    with any_storage.open("out/report.bin", "wb") as file:
        for start in range(0, size, 100_000):  # writes of an odd size
            file.write(data[start : start + 100_000])
        assert file.size == size
    assert any_storage.open("out/report.bin").read() == data
    assert any_storage.size("out/report.bin") == size


def test_text_mode_writes_with_an_encoding(storage: LayeredStorage) -> None:
    text = "héllo wörld\n" * 50_000
    with storage.open("t.txt", "w", encoding="utf-16") as file:
        file.write(text)
    with storage.open("t.txt", "r", encoding="utf-16") as file:
        assert file.read() == text
    assert storage.open("t.txt").read() == text.encode("utf-16")


def test_writing_replaces_the_old_version_only_on_close(
    storage: LayeredStorage,
) -> None:
    old, new = sample(2 * MiB, 1), sample(3 * MiB, 2)
    name = storage.save("doc.txt", ContentFile(old))
    file = storage.open(name, "wb")
    file.write(new[: 2 * MiB])
    assert storage.open(name).read() == old  # readers see the old version meanwhile
    file.write(new[2 * MiB :])
    file.close()
    assert storage.open(name).read() == new
    assert stored_names(storage) == [name]


def writers() -> list[threading.Thread]:
    """Return the threads of writable files still running."""
    return [t for t in threading.enumerate() if t.name == "layered-storage-write"]


def write_then_fail(storage: LayeredStorage, name: str, data: bytes) -> None:
    with storage.open(name, "wb") as file:
        file.write(data)
        raise RuntimeError("report failed")


@pytest.mark.parametrize("size", [100, 3 * MiB])  # stored on close, or by a thread
def test_an_exception_inside_with_stores_nothing(
    storage: LayeredStorage, size: int
) -> None:
    old = sample(MiB, 3)
    name = storage.save("doc.txt", ContentFile(old))
    with pytest.raises(RuntimeError, match="report failed"):
        write_then_fail(storage, name, sample(size, 4))
    assert storage.open(name).read() == old
    with pytest.raises(RuntimeError, match="report failed"):
        write_then_fail(storage, "new.txt", sample(size, 5))
    assert stored_names(storage) == [name]
    assert not writers()  # none left waiting


@pytest.mark.parametrize("size", [100, 3 * MiB])
def test_a_file_never_closed_stores_nothing(storage: LayeredStorage, size: int) -> None:
    file = storage.open("lost.bin", "wb")
    file.write(sample(size, 6))
    del file
    gc.collect()
    for _ in range(100):  # a writing thread ends once it sees the abort
        if not writers():
            break
        threading.Event().wait(0.02)
    assert not writers()
    assert stored_names(storage) == []


def test_field_file_open_for_writing(storage: LayeredStorage) -> None:
    name = storage.save("f.txt", ContentFile(b"first"))
    reader = storage.open(name)
    assert reader.read() == b"first"
    # FieldFile.open("wb") reopens the file it holds in the new mode.
    with reader.open("wb") as writer:
        writer.write(b"second")
    assert storage.open(name).read() == b"second"


def test_a_failed_store_is_raised_on_close_and_keeps_the_old_version(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(
        settings, tmp_path, "filesystem", ["zstd", "aes-gcm"], max_file_size=MiB
    )
    name = storage.save("small.txt", ContentFile(b"old"))

    def write_8_mib() -> None:
        file = storage.open(name, "wb")
        for _ in range(8):
            file.write(sample(MiB, 7))
        file.close()

    # The save stops at the limit; the writer learns it at once or on close.
    with pytest.raises(FileTooLargeError):
        write_8_mib()
    assert storage.open(name).read() == b"old"
    assert stored_names(storage) == [name]


def test_writing_is_refused_where_replacing_is_not_atomic(
    settings: Any, tmp_path: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "custom": {
            "BACKEND": f"{CustomSaveStorage.__module__}.CustomSaveStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    storage = LayeredStorage(inner="custom", layers=["zstd"])
    with pytest.raises(ConfigurationError, match="replace a file atomically"):
        storage.open("a.txt", "wb")


@pytest.mark.parametrize("size", [10, 3 * SEGMENT, 3 * 1024 * 1024])
def test_a_buffer_changed_after_writing_stores_what_was_written(
    storage: LayeredStorage, size: int
) -> None:
    # Large bytes are handed on without a copy; a mutable buffer must be copied.
    buffer = bytearray(b"a" * size)
    with storage.open("m.bin", "wb") as file:
        file.write(buffer)
        file.write(memoryview(buffer))
        buffer[:] = b"b" * size
        file.write(bytes(buffer))
        buffer[:] = b"c" * size
    assert storage.open("m.bin").read() == b"a" * (2 * size) + b"b" * size


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(pieces=st.lists(st.binary(max_size=3 * SEGMENT), max_size=8))
def test_any_sequence_of_writes_round_trips(
    fs_storage: LayeredStorage, pieces: list[bytes]
) -> None:
    with fs_storage.open("h.bin", "wb") as file:
        for piece in pieces:
            file.write(piece)
    assert fs_storage.open("h.bin").read() == b"".join(pieces)
