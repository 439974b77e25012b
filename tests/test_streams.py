"""The stream shapes: producers handing on their pieces, a peeked head put back."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage.streams import (
    PrefixedStream,
    ProducerStream,
    fill_from,
    read_exactly,
    read_tail,
)


class Pieces(ProducerStream):
    """A producer of the given pieces, in order."""

    def __init__(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        super().__init__()
        self._pieces = iter(pieces)

    def _produce(self) -> bytes | bytearray | memoryview | None:
        return next(self._pieces, None)


def test_chunks_hands_on_the_produced_pieces() -> None:
    later = bytearray(b"x" * 100)
    stream = Pieces([bytearray(b"head"), b"", later, memoryview(b"tail")])
    chunks = list(stream.chunks())
    assert chunks == [b"head", later, b"tail"]
    assert type(chunks[0]) is bytes  # Django picks binary mode by the first chunk
    assert chunks[1] is later
    assert type(chunks[2]) is bytes
    assert stream.tell() == 108
    assert stream.head == b"head" + b"x" * 60


def test_chunks_after_a_read_start_with_what_the_read_left() -> None:
    stream = Pieces([b"abcdef", b"ghi"])
    assert stream.read(2) == b"ab"
    assert list(stream.chunks()) == [b"cdef", b"ghi"]
    assert stream.tell() == 9
    assert stream.read(1) == b""


def test_read_of_a_whole_bytes_chunk_returns_it_without_a_copy() -> None:
    whole, mutable = b"w" * 100, bytearray(b"m" * 10)
    stream = Pieces([whole, mutable, b"abc"])
    assert stream.read(100) is whole
    part = stream.read(10)
    assert part == mutable
    assert type(part) is bytes  # a copy: a bytearray may still change
    assert stream.read(1) == b"a"
    assert stream.read(5) == b"bc"  # a chunk partly read is sliced as before
    assert stream.tell() == 113


def prefixed(data: bytes, peek: int) -> PrefixedStream:
    source = io.BytesIO(data)
    return PrefixedStream(read_exactly(source, peek), source)


@hsettings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=2000),
    peek=st.integers(0, 2100),
    steps=st.lists(st.tuples(st.booleans(), st.integers(1, 700)), min_size=1),
)
def test_prefixed_stream_reads_back_the_whole_source(
    data: bytes, peek: int, steps: list[tuple[bool, int]]
) -> None:
    stream = prefixed(data, peek)
    out = bytearray()
    for use_readinto, size in steps * (len(data) + 1):
        if use_readinto:
            buffer = bytearray(size)
            out += buffer[: stream.readinto(buffer)]
        else:
            out += stream.read(size)
        if len(out) >= len(data):
            break
    out += stream.read()
    assert bytes(out) == data


def test_first_read_of_the_whole_head_is_the_head_itself() -> None:
    source = io.BytesIO(b"head-and-the-rest")
    head = read_exactly(source, 4)
    stream = PrefixedStream(head, source)
    assert stream.read(4) is head
    assert stream.read(4) == b"-and"


def test_readinto_fills_from_the_rest_once_the_head_is_read() -> None:
    stream = prefixed(b"0123456789", 3)
    buffer = bytearray(10)
    assert fill_from(stream, buffer) == 10
    assert buffer == b"0123456789"
    assert stream.readinto(bytearray(4)) == 0


def test_closing_leaves_the_rest_open() -> None:
    source = io.BytesIO(b"abc")
    stream = PrefixedStream(read_exactly(source, 1), source)
    stream.close()
    assert not source.closed


@pytest.mark.parametrize(
    ("data", "expected"), [(b"0123456789", b"789"), (b"01", b"01"), (b"", b"")]
)
def test_read_tail_returns_the_last_bytes_and_the_length(
    data: bytes, expected: bytes
) -> None:
    assert read_tail(io.BytesIO(data), 3) == (expected, len(data))


def test_read_exactly_refuses_a_source_that_returns_more_than_asked() -> None:
    # The layers count on it: a longer encryption batch would reuse nonces.
    class Generous(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            return b"x" * (2 * size)

    with pytest.raises(AssertionError, match="a read of 10 bytes returned 20"):
        read_exactly(Generous(), 10)
    assert read_exactly(io.BytesIO(b"abc"), 10) == b"abc"  # fewer only at EOF
