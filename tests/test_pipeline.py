"""Opening: small objects are read whole, their payloads parsed in memory."""

from __future__ import annotations

import io
from typing import Any

import pytest

from layered_storage.exceptions import DecryptionError
from layered_storage.format import lse1
from layered_storage.layers.base import FileContext, ReadPolicy
from layered_storage.layers.compression import DecompressingReader, ZstdLayer
from layered_storage.layers.encryption import AesGcmLayer, DecryptingReader
from layered_storage.pipeline import DecryptedStream, Pipeline
from layered_storage.serving import _encryption_header, _stored_stream
from layered_storage.streams import WHOLE_READ, WholeStream
from tests.utils import SEGMENT, sample

CONTEXT = FileContext(name="notes/a.txt", namespace="media")


class StoredStream(io.BytesIO):
    """Stored bytes that count the reads made of them, like a file or an S3 reader."""

    last_modified = "the opening request's"

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        return super().readinto(buffer)

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def pipeline() -> Pipeline:
    return Pipeline([ZstdLayer(), AesGcmLayer()], ReadPolicy())


def stored(data: bytes) -> bytes:
    return pipeline().encode(io.BytesIO(data), CONTEXT).read()


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 200 * 1024])
def test_a_small_object_is_read_in_one_call_and_closed_at_open(size: int) -> None:
    data = sample(size)
    source = StoredStream(stored(data))
    assert len(source.getvalue()) <= WHOLE_READ
    reader = pipeline().decode(source, CONTEXT)
    assert source.reads == 1
    assert source.closed  # no file held open while the file object lives
    assert reader.read() == data
    assert _stored_stream(reader).last_modified == "the opening request's"  # type: ignore[attr-defined]
    assert isinstance(_stored_stream(reader), WholeStream)
    reader.close()


def test_a_large_object_is_read_where_it_is_read() -> None:
    data = sample(3 * 1024 * 1024, seed=5)
    source = StoredStream(stored(data))
    assert len(source.getvalue()) > WHOLE_READ
    with pipeline().decode(source, CONTEXT) as reader:
        assert not source.closed
        opening = source.reads
        assert reader.read(10) == data[:10]
        assert source.reads > opening


@pytest.mark.parametrize("size", [300, 5000, 64 * 1024, 300 * 1024])
def test_a_small_objects_payload_is_decrypted_at_open_and_parsed_in_memory(
    size: int,
) -> None:
    data = sample(size)  # 300 KiB of it takes three segments once compressed
    with pipeline().decode(io.BytesIO(stored(data)), CONTEXT) as reader:
        assert isinstance(reader, DecompressingReader)
        assert isinstance(reader._source, DecryptedStream)
        decrypting = reader._source._source
        assert isinstance(decrypting, DecryptingReader)
        # The chain still leads to the header (the ETag) and the stored bytes.
        assert _encryption_header(reader) == decrypting._header_bytes
        assert isinstance(_stored_stream(reader), WholeStream)
        assert reader.read() == data
    assert decrypting.closed


@pytest.mark.parametrize(("size", "segment"), [(440, 0), (300 * 1024, 1)])
def test_a_tampered_small_file_fails_at_open(size: int, segment: int) -> None:
    tampered = bytearray(stored(sample(size)))
    tampered[lse1.DIRECT_HEADER_SIZE + segment * (SEGMENT + lse1.TAG_SIZE) + 10] ^= 1
    with pytest.raises(DecryptionError, match=f"segment {segment}"):
        pipeline().decode(io.BytesIO(bytes(tampered)), CONTEXT)
