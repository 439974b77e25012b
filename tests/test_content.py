"""ContentReader: how the caller's content is read when it is saved."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import IO, Any, cast

import pytest
from django.core.files.base import ContentFile, File

from layered_storage.content import ContentReader
from layered_storage.exceptions import FileTooLargeError
from tests.conftest import make_storage
from tests.utils import FRAME, SEGMENT, sample


def test_in_memory_content_is_handed_on_without_a_copy() -> None:
    data = b"in memory, all of it" * 1000
    reader = ContentReader(ContentFile(data))
    assert reader.read(len(data) + 1) is data
    assert reader.read(10) == b""
    assert reader.tell() == len(data)


def test_in_memory_content_larger_than_a_read_is_read_in_pieces() -> None:
    data = bytes(range(256)) * 40
    reader = ContentReader(ContentFile(data))
    pieces = [reader.read(4096) for _ in range(3)]
    assert b"".join(pieces) == data
    assert [len(piece) for piece in pieces] == [4096, 4096, len(data) - 8192]


def test_content_read_from_its_start_even_after_the_caller_moved_it() -> None:
    buffer = io.BytesIO(b"0123456789")
    buffer.seek(4)
    assert ContentReader(File(buffer)).read(100) == b"0123456789"


def test_in_memory_content_still_counts_against_the_limit() -> None:
    with pytest.raises(FileTooLargeError):
        ContentReader(ContentFile(b"x" * 11), name="a.bin", limit=10).read(100)


class GenerousFile(io.RawIOBase):
    """A file whose reads return up to twice what is asked, as urllib3 1.x does
    when it decodes gzip; ``readinto`` fills no more than the buffer."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), len(self._data) - self._at)
        buffer[:count] = self._data[self._at : self._at + count]
        self._at += count
        return count

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._at + 2 * size
        data = self._data[self._at : end]
        self._at += len(data)
        return data


def generous(data: bytes) -> File:  # type: ignore[type-arg]
    return File(cast(IO[bytes], GenerousFile(data)), name="generous.bin")


def test_content_is_never_read_past_what_is_asked() -> None:
    data = bytes(range(256)) * 100
    reader = ContentReader(generous(data))
    pieces = [reader.read(1000), reader.read(3000)]
    buffer = bytearray(500)
    pieces.append(bytes(buffer[: reader.readinto(buffer)]))
    pieces.append(reader.read(10**6))
    assert [len(piece) for piece in pieces] == [1000, 3000, 500, len(data) - 4500]
    assert b"".join(pieces) == data
    assert reader.tell() == len(data)


@pytest.mark.parametrize(
    "stack", [["aes-gcm"], ["zstd"], ["zstd", "aes-gcm"]], ids="+".join
)
def test_file_whose_reads_return_more_than_asked_is_stored_intact(
    settings: Any, tmp_path: Path, stack: list[str]
) -> None:
    # The first sealed batch is read in one call: one longer than its 4 segments
    # sealed segments 4-7, which the next batch sealed again under the same nonces
    # (and the file failed authentication); a longer zstd frame was refused.
    storage = make_storage(settings, tmp_path, "filesystem", stack)
    data = random.Random(1).randbytes(3 * SEGMENT * 4) + sample(3 * FRAME, 2)
    name = storage.save("generous.bin", generous(data))
    assert storage.open(name).read() == data
