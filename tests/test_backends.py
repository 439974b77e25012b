"""The generic inner-backend adapter: what a storage is handed to save."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage

from layered_storage import LayeredStorage
from layered_storage.backends import EncodedFile
from layered_storage.format import lse1
from layered_storage.layers.base import FileContext, ReadPolicy
from layered_storage.layers.encryption import AesGcmLayer, EncryptingStream
from layered_storage.pipeline import Pipeline
from layered_storage.streams import WholeStream
from tests.conftest import make_storage
from tests.utils import SEGMENT

CONTEXT = FileContext(name="scans/0042.pdf", namespace="media")
DATA = random.Random(9).randbytes(3 * 1024 * 1024 + 5)


def encoded() -> EncodedFile:
    pipeline = Pipeline([AesGcmLayer()], ReadPolicy())
    return EncodedFile(pipeline.encode(io.BytesIO(DATA), CONTEXT), CONTEXT.name)


def decoded(stored: bytes) -> bytes:
    pipeline = Pipeline([AesGcmLayer()], ReadPolicy())
    with pipeline.decode(io.BytesIO(stored), CONTEXT) as reader:
        return reader.read()


def test_chunks_are_the_pieces_the_layers_produce() -> None:
    pieces = list(encoded().chunks())
    assert isinstance(pieces[0], bytes)
    # Sealed batches are handed on whole, not cut into 1 MiB chunks: 3 MiB is a
    # one-segment batch, two full ones and the rest.
    batch = EncryptingStream.BATCH * (SEGMENT + lse1.TAG_SIZE)
    assert [len(piece) for piece in pieces].count(batch) == 2
    assert decoded(b"".join(pieces)) == DATA


def test_chunks_of_an_asked_size_are_cut_exactly() -> None:
    pieces = list(encoded().chunks(1000))
    assert {len(piece) for piece in pieces[:-1]} == {1000}
    assert decoded(b"".join(pieces)) == DATA


# -- FileSystemStorage ---------------------------------------------------------------


def test_filesystem_open_reads_a_small_file_whole_and_a_large_one_as_it_goes(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    small = storage.save("small.txt", ContentFile(b"small" * 1000))
    large = storage.save("large.bin", ContentFile(DATA))
    opened = storage.backend.open(small)
    assert isinstance(opened, WholeStream)
    assert opened.closed is False
    assert opened.getvalue() == Path(storage.inner.path(small)).read_bytes()
    with storage.backend.open(large) as stream:
        assert not isinstance(stream, WholeStream)
        assert (
            stream.seek(0, io.SEEK_END)
            == Path(storage.inner.path(large)).stat().st_size
        )
    assert storage.open(small).read() == b"small" * 1000
    assert storage.open(large).read() == DATA


def test_filesystem_open_fails_as_the_storage_does(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    storage.save("folder/a.txt", ContentFile(b"a"))
    with pytest.raises(FileNotFoundError):
        storage.open("missing.txt")
    with pytest.raises(IsADirectoryError):
        storage.open("folder")


class LoggingFileSystemStorage(FileSystemStorage):
    """A FileSystemStorage that opens its own way."""

    opened: ClassVar[list[str]] = []

    def _open(self, name: str, mode: str = "rb") -> File:  # type: ignore[type-arg]
        self.opened.append(name)
        return File(open(self.path(name), mode))


def test_filesystem_open_leaves_a_customised_open_in_charge(
    settings: Any, tmp_path: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "logging": {
            "BACKEND": f"{__name__}.LoggingFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "logging")},
        },
    }
    storage = LayeredStorage(inner="logging", layers=["zstd", "aes-gcm"])
    name = storage.save("a.txt", ContentFile(b"through _open"))
    assert storage.open(name).read() == b"through _open"
    assert LoggingFileSystemStorage.opened == [name]


def test_filesystem_save_of_more_tiny_chunks_than_one_writev_takes(
    settings: Any, tmp_path: Path
) -> None:
    # 1280 frames of zeros compress to a few bytes each: far more chunks than the
    # 1024 one writev takes before 256 KiB of them are gathered.
    storage = make_storage(
        settings, tmp_path, "filesystem", [("zstd", {"frame_log2": 12})]
    )
    data = bytes(5 * 1024 * 1024)
    name = storage.save("zeros.bin", ContentFile(data))
    assert storage.open(name).read() == data
    assert os.listdir(storage.inner.path("")) == ["zeros.bin"]
