"""ContentReader: how the caller's content is read when it is saved."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile, File

from layered_storage.content import ContentReader
from layered_storage.exceptions import FileTooLargeError


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
