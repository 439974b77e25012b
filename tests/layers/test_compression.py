"""The zstd layer and its LSZ1 container: round trips, random access and limits."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import struct
import subprocess
import sys
import time
from itertools import accumulate
from pathlib import Path
from typing import Any

import django
import pytest
import zstandard as zstd
from django.core.files.base import ContentFile
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage import ConfigurationError, FormatError
from layered_storage.exceptions import (
    ContainerError,
    DecompressionLimitError,
    LayeredStorageError,
    PolicyError,
)
from layered_storage.format import lse1, lsz1
from layered_storage.keys import load_keyring
from layered_storage.layers import compression
from layered_storage.layers.base import (
    PAYLOAD_LSZ1,
    PAYLOAD_RAW,
    FileContext,
    ReadPolicy,
)
from layered_storage.layers.compression import DecompressingReader, ZstdLayer
from layered_storage.layers.encryption import AesGcmLayer, EncryptingStream
from layered_storage.pipeline import Pipeline
from tests.conftest import make_storage
from tests.memory_probe import peak_rss
from tests.utils import FRAME, SEGMENT, read_in_steps, sample, stored_bytes

SMALL = 12  # 4 KiB frames keep multi-frame cases fast
F = 1 << SMALL
CONTEXT = FileContext(name="data/log.jsonl")
OPEN = ReadPolicy(require_encryption=False)


def compress(data: bytes, **options: Any) -> bytes:
    pipeline = Pipeline([ZstdLayer(**options)], OPEN)
    return pipeline.encode(io.BytesIO(data), CONTEXT).read()


def reader(
    stored: bytes, policy: ReadPolicy = OPEN, *, enclosed: bool = False
) -> DecompressingReader:
    """Return a reader of ``stored``, as outermost layer or as LSE1's payload."""
    return DecompressingReader(
        io.BytesIO(stored), file_name=CONTEXT.name, policy=policy, enclosed=enclosed
    )


@pytest.mark.parametrize("enclosed", [False, True])
@pytest.mark.parametrize("size", [0, 1, F - 1, F, F + 1, 3 * F, 3 * F + 7])
def test_round_trip_on_frame_edges(size: int, enclosed: bool) -> None:
    data = sample(size)
    stored = compress(data, frame_log2=SMALL)
    assert reader(stored, enclosed=enclosed).read() == data
    assert reader(stored, enclosed=enclosed).size == size


@hsettings(max_examples=80, deadline=None)
@given(
    payload=st.binary(max_size=5 * F),
    step=st.integers(1, F + 3),
    offset=st.integers(0, 6 * F),
    enclosed=st.booleans(),
)
def test_round_trip_in_any_steps_and_from_any_offset(
    payload: bytes, step: int, offset: int, enclosed: bool
) -> None:
    stored = compress(payload, frame_log2=SMALL)
    assert read_in_steps(reader(stored, enclosed=enclosed), step) == payload
    seeking = reader(stored, enclosed=enclosed)
    seeking.seek(offset)
    assert seeking.read(step) == payload[offset : offset + step]
    assert seeking.seek(0, io.SEEK_END) == len(payload)


def test_stream_is_plain_zstd_for_other_tools() -> None:
    data = sample(3 * F + 5)
    stored = compress(data, frame_log2=SMALL)
    # Skippable frames (descriptor, seek table) are ignored by any zstd decoder.
    decoder = zstd.ZstdDecompressor().stream_reader(
        io.BytesIO(stored), read_across_frames=True
    )
    assert decoder.read() == data


def test_seek_decodes_only_the_frame_it_lands_in() -> None:
    data = sample(40 * F)
    stored = compress(data, frame_log2=SMALL)
    source = io.BytesIO(stored)
    consumed: list[int] = []
    original_read = source.read

    def counting_read(size: int = -1) -> bytes:
        chunk = original_read(size)
        consumed.append(len(chunk))
        return chunk

    source.read = counting_read  # type: ignore[method-assign,assignment]
    decoded = DecompressingReader(source, file_name="x", policy=OPEN)
    decoded.seek(25 * F + 100)
    assert decoded.read(200) == data[25 * F + 100 : 25 * F + 300]
    table = lsz1.table_frame_size(41, True)
    assert sum(consumed) < lsz1.DESCRIPTOR_SIZE + table + lsz1.max_frame_bytes(F) + 64


def test_text_shrinks_and_incompressible_data_is_stored_raw() -> None:
    text = b"the same old log line, again and again\n" * 50000
    assert len(compress(text)) < len(text) / 20
    noise = sample(4 * 1024 * 1024, 7)[2 * 1024 * 1024 :] * 1
    stored = compress(noise)
    assert len(stored) < len(noise) * 1.001  # raw blocks, no expansion to speak of


def test_skip_options_take_any_iterable() -> None:
    layer = ZstdLayer(skip_extensions=(ext for ext in [".LOG"]), skip_content_types=[])
    assert not layer.applies_to(FileContext(name="app.log"))
    assert layer.applies_to(FileContext(name="photo.jpg"))


def test_level_option_changes_the_ratio() -> None:
    data = sample(512 * 1024)
    assert len(compress(data, level=19)) <= len(compress(data, level=1))


@pytest.mark.parametrize(
    "options",
    [
        {"level": 0},
        {"level": 99},
        {"level": "3"},
        {"frame_log2": 11},
        {"frame_log2": 24},
        {"skip_extensions": ".jpg"},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ZstdLayer(**options)


# -- what a compression layer skips -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "compressed"),
    [
        ("photo.JPG", None, False),
        ("movie.mp4", None, False),
        ("blob.bin", "image/png", False),
        ("notes.txt", None, True),
        ("data.custom", None, True),
    ],
)
def test_already_compressed_types_are_not_compressed(
    name: str, content_type: str | None, compressed: bool
) -> None:
    layer = ZstdLayer()
    assert (
        layer.applies_to(FileContext(name=name, content_type=content_type))
        is compressed
    )


def test_skipped_file_under_encryption_is_stored_as_raw_payload(
    fs_storage: Any,
) -> None:
    text = b"pretend jpeg " * 10000
    name = fs_storage.save("photo.jpg", ContentFile(text))
    stored = stored_bytes(fs_storage.inner, name)
    assert stored[13] == 0x00  # LSE1 payload type: raw
    assert len(stored) > len(text)
    assert fs_storage.open(name).read() == text
    other = fs_storage.save("photo.txt", ContentFile(text))
    assert stored_bytes(fs_storage.inner, other)[13] == 0x01  # LSZ1 inside


def test_skipped_file_in_a_compress_only_stack_is_still_self_describing(
    settings: Any, tmp_path: Any
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd"])
    text = b"pretend jpeg " * 10000
    name = storage.save("photo.jpg", ContentFile(text))
    stored = stored_bytes(storage.inner, name)
    assert lsz1.is_lsz1(stored)
    assert storage.open(name).read() == text


def encrypted(data: bytes, frame_log2: int = lsz1.WRITE_FRAME_LOG2) -> bytes:
    layers = [ZstdLayer(frame_log2=frame_log2), AesGcmLayer()]
    return Pipeline(layers, ReadPolicy()).encode(io.BytesIO(data), CONTEXT).read()


def decrypted(stored: bytes) -> bytes:
    pipeline = Pipeline([ZstdLayer(), AesGcmLayer()], ReadPolicy())
    with pipeline.decode(io.BytesIO(stored), CONTEXT) as decoded:
        return decoded.read()


def payload_type(stored: bytes) -> int:
    return lse1.parse_header(stored, file_name="x").payload_type


def test_incompressible_file_under_encryption_skips_the_container(
    fs_storage: Any,
) -> None:
    noise = random.Random(1).randbytes(2 * FRAME + 5)
    name = fs_storage.save("noise.bin", ContentFile(noise))
    stored = stored_bytes(fs_storage.inner, name)
    assert payload_type(stored) == PAYLOAD_RAW
    header = lse1.parse_header(stored, file_name=name).size
    assert len(stored) == lse1.stored_size(header, SEGMENT, len(noise))
    assert fs_storage.open(name).read() == noise
    assert fs_storage.size(name) == len(noise)


def test_file_incompressible_only_in_its_first_frame_still_round_trips(
    fs_storage: Any,
) -> None:
    data = random.Random(2).randbytes(FRAME) + b"compressible later\n" * 100_000
    name = fs_storage.save("mixed.bin", ContentFile(data))
    assert payload_type(stored_bytes(fs_storage.inner, name)) == PAYLOAD_RAW
    with fs_storage.open(name) as opened:
        assert opened.read() == data
        opened.seek(FRAME + 5)
        assert opened.read(100) == data[FRAME + 5 : FRAME + 105]


@pytest.mark.parametrize(
    "data",
    [
        b"text to compress\n" * 100_000,
        # Incompressible at the start only: the samples reach the end of the frame.
        random.Random(3).randbytes(SEGMENT) + b"text to compress\n" * 100_000,
        # Smaller than one sample: always compressed.
        random.Random(4).randbytes(8 * 1024),
    ],
    ids=["text", "noisy-start", "small"],
)
def test_compressible_or_small_file_under_encryption_keeps_the_container(
    data: bytes,
) -> None:
    stored = encrypted(data)
    assert payload_type(stored) == PAYLOAD_LSZ1
    assert decrypted(stored) == data


@pytest.mark.parametrize("size", [compression.SAMPLE_SIZE, compression.WHOLE_HEAD])
def test_small_file_is_judged_by_its_one_frame_compressed_once(size: int) -> None:
    text = sample(size, 21)
    stored = encrypted(text)
    assert payload_type(stored) == PAYLOAD_LSZ1
    assert decrypted(stored) == text
    noise = random.Random(size).randbytes(size)
    assert payload_type(encrypted(noise)) == PAYLOAD_RAW
    assert decrypted(encrypted(noise)) == noise


def test_frame_kept_from_the_head_check_goes_only_to_its_own_file() -> None:
    # Two saves begun in one thread before either is read: the second one's
    # check replaces the frame the first one kept, which compresses again.
    pipeline = Pipeline([ZstdLayer(), AesGcmLayer()], ReadPolicy())
    first, second = sample(20_000, 1), sample(30_000, 2)
    streams = [pipeline.encode(io.BytesIO(data), CONTEXT) for data in (first, second)]
    assert [decrypted(stream.read()) for stream in streams] == [first, second]


@pytest.mark.parametrize("size", [0, 1, compression.TINY - 1])
def test_tiny_file_under_encryption_skips_the_container(size: int) -> None:
    # Its descriptor and seek table would outweigh what zstd saves.
    data = (b"text to compress\n" * 16)[:size]
    stored = encrypted(data)
    assert payload_type(stored) == PAYLOAD_RAW
    assert decrypted(stored) == data
    assert payload_type(encrypted(b"x" * compression.TINY)) == PAYLOAD_LSZ1
    assert lsz1.is_lsz1(compress(data))  # outermost, it stays self-describing


def test_compress_only_stack_keeps_the_container_for_incompressible_data() -> None:
    noise = random.Random(5).randbytes(FRAME + 1)
    stored = compress(noise, frame_log2=lsz1.WRITE_FRAME_LOG2)
    assert lsz1.is_lsz1(stored)
    assert reader(stored).read() == noise


@hsettings(max_examples=40, deadline=None)
@given(
    noise=st.integers(0, 3 * 32 * 1024),
    text=st.integers(0, 3 * 32 * 1024),
    seed=st.integers(0, 2**32),
)
def test_mixed_files_round_trip_whichever_way_they_are_stored(
    noise: int, text: int, seed: int
) -> None:
    data = random.Random(seed).randbytes(noise) + sample(text, seed)[: text // 2] * 2
    stored = encrypted(data, frame_log2=15)
    assert payload_type(stored) in (PAYLOAD_RAW, PAYLOAD_LSZ1)
    assert decrypted(stored) == data


# -- policy and format confusion -------------------------------------------------


def test_encryption_stack_refuses_compress_only_files_unless_allowed(
    settings: Any, tmp_path: Any
) -> None:
    plain = make_storage(settings, tmp_path, "filesystem", ["zstd"])
    name = plain.save("c.txt", ContentFile(b"compressed only"))
    strict = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    with pytest.raises(PolicyError, match="allow_unencrypted"):
        strict.open(name)
    relaxed = make_storage(
        settings, tmp_path, "filesystem", ["zstd", "aes-gcm"], allow_unencrypted=True
    )
    assert relaxed.open(name).read() == b"compressed only"


@pytest.mark.parametrize(
    "prefix", [lsz1.DESCRIPTOR_HEAD + b"\x01\x14\x01\x00" + bytes(8), lse1.MAGIC]
)
def test_content_that_starts_with_a_magic_round_trips(
    any_storage: Any, prefix: bytes
) -> None:
    data = prefix + b"user content that looks like a header"
    name = any_storage.save("tricky.bin", ContentFile(data))
    assert any_storage.open(name).read() == data


def test_compression_after_encryption_still_reads_back(
    settings: Any, tmp_path: Any
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["aes-gcm", "zstd"])
    data = sample(3 * 64 * 1024)
    name = storage.save("odd.bin", ContentFile(data))
    assert lsz1.is_lsz1(stored_bytes(storage.inner, name))
    assert storage.open(name).read() == data
    assert storage.size(name) == len(data)


def test_stack_with_two_layers_of_one_kind_is_refused() -> None:
    from layered_storage.layers.base import build_layers

    with pytest.raises(ConfigurationError, match="more than one"):
        build_layers(["aes-gcm", "chacha20-poly1305"])


# -- hostile containers ------------------------------------------------------------


def container(
    frames: list[bytes], entries: list[tuple[int, int]] | None = None
) -> bytes:
    """Return an LSZ1 stream of ``frames`` with a seek table (by default truthful)."""
    descriptor = lsz1.Descriptor(frame_log2=SMALL, checksums=False).to_bytes()
    if entries is None:
        entries = [
            (len(frame), zstd.get_frame_parameters(frame).content_size)
            for frame in frames
        ]
    return descriptor + b"".join(frames) + seek_table(entries)


def seek_table(entries: list[tuple[int, int]], checksums: bool = False) -> bytes:
    """Return a seek-table frame for data frames of ``(compressed, payload)`` sizes."""
    writer = lsz1.SeekTableWriter(checksums)
    for compressed, payload in entries:
        writer.add(compressed, payload, 0)
    return b"".join(writer.pieces())


def frame(data: bytes, **options: Any) -> bytes:
    return zstd.ZstdCompressor(level=3, **options).compress(data)


def test_truthful_container_reads() -> None:
    stored = container([frame(b"a" * F), frame(b"b" * 10)])
    assert reader(stored).read() == b"a" * F + b"b" * 10


def test_table_entry_larger_than_the_frame_size_is_refused_at_open() -> None:
    with pytest.raises(ContainerError, match="frames hold 4096 bytes"):
        reader(container([frame(b"\x00" * (64 * F))]))


@pytest.mark.parametrize("random_access", [False, True])
def test_frame_larger_than_the_frame_size_is_a_bomb(random_access: bool) -> None:
    bomb = frame(b"\x00" * (64 * F))
    decoded = reader(container([bomb], [(len(bomb), F)]))  # the table lies
    if random_access:
        decoded.seek(10)
    with pytest.raises(DecompressionLimitError):
        decoded.read()


def test_frame_without_content_size_is_refused() -> None:
    streamed = zstd.ZstdCompressor(write_content_size=False).compress(b"x" * 100)
    with pytest.raises(DecompressionLimitError):
        reader(container([streamed], [(len(streamed), 100)])).read()


def test_short_frame_before_the_last_is_refused() -> None:
    frames = [frame(b"a" * 10), frame(b"b" * 10)]
    with pytest.raises(ContainerError, match="the last 1 to 4096"):
        reader(container(frames))
    # A table that calls it full is caught by the frame's own declared size.
    lie = [(len(frames[0]), F), (len(frames[1]), 10)]
    with pytest.raises(ContainerError, match="declares 10 bytes"):
        reader(container(frames, lie)).read()


def test_lying_seek_table_is_refused() -> None:
    frames = [frame(b"a" * F), frame(b"b" * 10)]
    lie = [(len(frames[0]), F), (len(frames[1]), 11)]
    with pytest.raises(ContainerError):
        reader(container(frames, lie)).read()
    decoded = reader(container(frames, lie))
    decoded.seek(F + 1)
    with pytest.raises(ContainerError):
        decoded.read()


def test_bytes_after_the_seek_table_are_refused() -> None:
    stored = container([frame(b"a" * 10)]) + b"\x00"
    with pytest.raises(ContainerError):
        reader(stored).read()


@pytest.mark.parametrize("path", ["read ahead", "random access", "whole read"])
@pytest.mark.parametrize(
    "extra", [b"\x00", b"\x00" * 8, zstd.ZstdCompressor().compress(b"")]
)
def test_frame_with_bytes_after_its_last_block_is_refused(
    extra: bytes, path: str
) -> None:
    # Frames are decoded into buffers by a stream reader, which would stop at the
    # frame's end: the frame's own length is checked for it. A whole read of the
    # last frame decodes it with decompress(), which refuses them itself.
    frames = [frame(b"a" * F), frame(b"b" * F), frame(b"c" * 10) + extra]
    decoded = reader(container(frames))
    if path != "read ahead":
        decoded.seek(2 * F + (1 if path == "random access" else 0))
    with pytest.raises(ContainerError, match="frame 2 is corrupt"):
        read_in_steps(decoded, F // 2) if path == "read ahead" else decoded.read()


@pytest.mark.parametrize("checksum", [False, True])
@pytest.mark.parametrize(
    "data",
    [sample(F), b"\x00" * F, random.Random(2).randbytes(F), b"x"],
    ids=["text", "rle", "raw", "one byte"],
)
def test_frame_length_follows_every_kind_of_block(data: bytes, checksum: bool) -> None:
    stored = frame(data, write_checksum=checksum, write_content_size=True)
    assert compression.frame_length(stored, checksum) == len(stored)
    assert compression.frame_length(stored + b"junk", checksum) == len(stored)
    assert compression.frame_length(stored[:-1], checksum) in (-1, len(stored))
    raw = lsz1.raw_frame(data)
    assert compression.frame_length(raw, False) == len(raw)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("size", [1, F, F + 1, 7 * F + 3])
def test_whole_read_decodes_each_frame_into_its_place(
    settings: Any, workers: int, size: int
) -> None:
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": workers}
    data = sample(size)
    stored = compress(data, frame_log2=SMALL)
    for start in (0, F, F + 5):
        decoded = reader(stored)
        decoded.seek(start)
        assert decoded.read() == data[start:]
        assert decoded.read() == b""
    decoded = reader(stored)
    assert decoded.read(3) == data[:3]  # frame 0 in hand: the rest copies from it
    assert decoded.read() == data[3:]


def test_total_size_limit_is_enforced() -> None:
    stored = compress(b"z" * (3 * F), frame_log2=SMALL)
    with pytest.raises(DecompressionLimitError, match="limit"):
        reader(stored, ReadPolicy(require_encryption=False, max_file_size=2 * F)).read()


def test_corrupted_bare_container_fails_its_checksum() -> None:
    stored = bytearray(compress(sample(3 * F), frame_log2=SMALL))
    stored[lsz1.DESCRIPTOR_SIZE + 40] ^= 0x10
    with pytest.raises(FormatError):
        reader(bytes(stored)).read()


@hsettings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 3 * F),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 30),
    seek=st.one_of(st.none(), st.integers(0, 3 * F)),
    enclosed=st.booleans(),
)
def test_mutated_containers_only_raise_format_errors(
    size: int, edits: list[tuple[int, int]], cut: int, seek: int | None, enclosed: bool
) -> None:
    stored = bytearray(compress(sample(size, size), frame_log2=SMALL))
    for position, value in edits:
        stored[position % len(stored)] = value
    mutated = bytes(stored[: len(stored) - cut])
    try:
        decoded = reader(mutated, enclosed=enclosed)
        if seek is not None:
            decoded.seek(seek)
        decoded.read()
        _ = decoded.size
    except FormatError:
        pass


def read_seek_table(
    stored: bytes, descriptor: lsz1.Descriptor | None = None
) -> lsz1.SeekTable:
    """Return the seek table of ``stored``, as a reader finds it."""
    table, _ = lsz1.read_seek_table(
        lambda offset, size: stored[offset : offset + size],
        len(stored),
        file_name="x",
        descriptor=descriptor,
        max_frame_log2=23,
    )
    return table


def footer(count: int, checksums: bool = False) -> bytes:
    flags = 0x80 if checksums else 0
    return struct.pack("<IBI", count, flags, lsz1.SEEK_TABLE_FOOTER_MAGIC)


DESCRIPTORS = [
    None,
    lsz1.Descriptor(frame_log2=SMALL, checksums=False),
    lsz1.Descriptor(frame_log2=SMALL, checksums=True),
]


def parse_or_refuse(stored: bytes) -> None:
    """Parse ``stored``'s seek table every way a reader does; when it is accepted,
    check that it describes the stream exactly."""
    for descriptor in DESCRIPTORS:
        try:
            table = read_seek_table(stored, descriptor)
        except FormatError:
            continue
        width = lsz1.entry_size(table.checksums)
        assert table.end == len(stored) - lsz1.table_frame_size(
            table.frames + 1, table.checksums
        )
        assert table.end == (
            table.offset(table.frames - 1) + table.compressed(table.frames - 1)
            if table.frames
            else lsz1.DESCRIPTOR_SIZE
        )
        assert width in (8, 12)


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 12), st.booleans())
def test_seek_table_parser_takes_arbitrary_bytes(
    data: bytes, count: int, checksums: bool
) -> None:
    parse_or_refuse(data)
    parse_or_refuse(data + footer(count, checksums))
    with contextlib.suppress(FormatError):
        lsz1.parse_descriptor(data, file_name="x", max_frame_log2=23)


SIZES = st.one_of(
    st.sampled_from([0, 1, 9, 10, 11, F - 1, F, F + 1, 2**23, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)


@hsettings(max_examples=300, deadline=None)
@given(
    entries=st.lists(st.tuples(SIZES, SIZES), max_size=6),
    checksums=st.booleans(),
    slack=st.integers(-12, 12),
    frame_bytes=st.integers(0, 4000),
)
def test_seek_table_parser_takes_arbitrary_entries(
    entries: list[tuple[int, int]], checksums: bool, slack: int, frame_bytes: int
) -> None:
    # Well-formed tables whose entries and stream geometry are anything at all.
    table = seek_table(entries, checksums)
    stored = bytes(lsz1.DESCRIPTOR_SIZE + max(0, frame_bytes + slack)) + table
    parse_or_refuse(stored)


def test_table_over_several_pieces_gives_every_offset() -> None:
    frames = 2 * lsz1.PIECE_FRAMES + 77
    sizes = [10 + (i * 7919) % 4000 for i in range(frames)]
    entries = [(size, F) for size in sizes[:-1]] + [(sizes[-1], 5)]
    stored = bytes(lsz1.DESCRIPTOR_SIZE + sum(sizes)) + seek_table(entries)
    table = read_seek_table(stored)
    assert (table.frames, table.size) == (frames, (frames - 1) * F + 5)
    offsets = list(accumulate(sizes, initial=lsz1.DESCRIPTOR_SIZE))
    for index in [0, 1, 63, 64, 65, lsz1.PIECE_FRAMES, frames - 2, frames - 1]:
        assert table.offset(index) == offsets[index]
        assert table.compressed(index) == sizes[index]


def test_lie_in_a_later_piece_names_its_frame() -> None:
    frames = lsz1.PIECE_FRAMES + 10
    entries = [(10, F)] * frames
    entries[lsz1.PIECE_FRAMES + 3] = (10, F - 1)
    stored = bytes(lsz1.DESCRIPTOR_SIZE + 10 * frames) + seek_table(entries)
    with pytest.raises(ContainerError, match=f"frame {lsz1.PIECE_FRAMES + 3} declares"):
        read_seek_table(stored)


class CountingStream(io.BytesIO):
    """A stream that counts the bytes read from it."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


@pytest.mark.parametrize(
    ("count", "padding"),
    [
        (2**21, 24 * 1024 * 1024),  # issue 9: the table fits, the frames cannot
        (3 * 2**19, 24 * 1024 * 1024),
        (2**22, 24 * 1024 * 1024),  # the table itself overruns the stream
        (lsz1.MAX_FRAMES, 0),
        (lsz1.MAX_FRAMES + 1, 0),
        (2**32 - 1, 0),
    ],
)
def test_footer_claiming_more_frames_than_stored_fails_before_reading_them(
    count: int, padding: int
) -> None:
    stored = compress(sample(3 * F), frame_log2=SMALL)
    table = lsz1.table_frame_size(4, True)
    hostile = stored[:-table] + bytes(padding) + footer(count, checksums=True)
    source = CountingStream(hostile)
    with pytest.raises(ContainerError, match=r"frames|entries"):
        DecompressingReader(source, file_name="x", policy=OPEN)
    assert source.consumed == lsz1.DESCRIPTOR_SIZE + lsz1.FOOTER_SIZE


def test_table_not_starting_at_the_descriptor_fails_after_one_entry() -> None:
    count = 2**20  # the table and the frames fit: only the entries are wrong
    hostile = (
        lsz1.Descriptor(SMALL, checksums=True).to_bytes()
        + bytes((count - 1) * 10)
        + struct.pack("<II", lsz1.SKIPPABLE_SEEK_TABLE, 12 * count + lsz1.FOOTER_SIZE)
        + bytes(12 * count)
        + footer(count, checksums=True)
    )
    source = CountingStream(hostile)
    with pytest.raises(ContainerError, match="does not start at the descriptor"):
        DecompressingReader(source, file_name="x", policy=OPEN)
    # The descriptor, the footer, the table's header and entry 0.
    assert source.consumed == lsz1.DESCRIPTOR_SIZE + lsz1.FOOTER_SIZE + 8 + 12


def test_table_checksum_must_match_the_frame() -> None:
    data = sample(3 * F)
    stored = bytearray(compress(data, frame_log2=SMALL))
    # The checksum of entry 2 (frame 1) sits 12 bytes into its 12-byte entry's end.
    entry = len(stored) - lsz1.FOOTER_SIZE - 2 * 12 + 8
    stored[entry] ^= 0x01
    decoded = reader(bytes(stored))
    assert decoded.read(F) == data[:F]
    with pytest.raises(ContainerError, match="frame 1 ends with another checksum"):
        decoded.read(F)


def test_writer_refuses_more_frames_than_readers_accept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lsz1, "MAX_FRAMES", 4)
    assert reader(compress(sample(3 * F), frame_log2=SMALL)).read() == sample(3 * F)
    with pytest.raises(ValueError, match="at most 3 frames"):
        compress(sample(3 * F + 1), frame_log2=SMALL)


# -- hostile seek tables, measured in a fresh process ------------------------------


def hostile_files(root: Path) -> dict[str, tuple[str, int]]:
    """Write the hostile LSZ1 files into ``root``; return each one's stack and
    stored size by name."""
    count = lsz1.MAX_FRAMES
    entry = struct.pack("<III", 10, F, 0)
    descriptor = lsz1.Descriptor(SMALL, checksums=True).to_bytes()
    valid_table = (
        struct.pack("<II", lsz1.SKIPPABLE_SEEK_TABLE, 12 * count + lsz1.FOOTER_SIZE)
        + struct.pack("<III", lsz1.DESCRIPTOR_SIZE, 0, 0)
        + entry * (count - 1)
        + footer(count, checksums=True)
    )
    garbage_frames = descriptor + bytes(10 * (count - 1))
    real = compress(sample(3 * F), frame_log2=SMALL)
    real_body = real[: -lsz1.table_frame_size(4, True)]
    files = {
        # The attack of issue 9: a seek table of 2**21 entries, 24 MiB of zeros.
        "padded-footer.bin": real_body
        + struct.pack("<II", lsz1.SKIPPABLE_SEEK_TABLE, 12 * 2**21 + lsz1.FOOTER_SIZE)
        + bytes(12 * 2**21)
        + footer(2**21, checksums=True),
        # As large a table as a reader accepts, every entry plausible, the frames
        # zeros: the table is kept whole, then frame 0 fails.
        "largest-table.bin": garbage_frames + valid_table,
        # The same, but the sizes add up past the table in its last tenth.
        "late-lie.bin": garbage_frames
        + valid_table.replace(entry, struct.pack("<III", 11, F, 0)),
    }
    stacks = dict.fromkeys(files, "zstd")
    for name, data in files.items():
        (root / name).write_bytes(data)
    # A key holder can write the same inside LSE1.
    key = load_keyring(None).primary
    sealed = EncryptingStream(
        io.BytesIO(files["largest-table.bin"]),
        key=key,
        aead_id=lse1.AEAD_AES_256_GCM,
        payload=PAYLOAD_LSZ1,
        binding=lse1.binding_context("", "sealed-table.bin"),
    )
    with (root / "sealed-table.bin").open("wb") as out:
        for chunk in sealed.chunks():
            out.write(chunk)
    stacks["sealed-table.bin"] = "zstd,aes-gcm"
    return {name: (stacks[name], (root / name).stat().st_size) for name in stacks}


def probe_hostile(root: str, name: str, layers: str) -> None:
    """Open, size, read and seek ``name`` in ``root`` (run in a fresh process);
    print the growth of peak RSS and the seconds and outcome of each."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings

    from layered_storage import LayeredStorage

    config = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": root},
    }
    override_settings(STORAGES={**settings.STORAGES, "probe": config}).enable()
    storage = LayeredStorage(
        inner="probe", layers=layers.split(","), allow_unencrypted=True
    )
    # Warm up on a real file: keys, zstd contexts and worker threads exist before.
    warm = storage.save("warm-up.txt", ContentFile(sample(20 * F)))
    with storage.open(warm) as opened:
        opened.read()
    before = peak_rss()

    def read() -> None:
        with storage.open(name) as opened:
            while opened.read(1024 * 1024):
                pass

    def seek() -> None:
        with storage.open(name) as opened:
            opened.seek(10**9)
            opened.read(100)

    actions = {
        "open": lambda: storage.open(name).close(),
        "size": lambda: storage.size(name),
        "read": read,
        "seek": seek,
    }
    seconds, outcomes = {}, {}
    for action, run in actions.items():
        start = time.perf_counter()
        try:
            run()
            outcomes[action] = "ok"
        except LayeredStorageError as exc:
            outcomes[action] = type(exc).__name__
        seconds[action] = time.perf_counter() - start
    growth = peak_rss() - before
    print(json.dumps({"growth": growth, "seconds": seconds, "outcomes": outcomes}))


@pytest.mark.slow
def test_hostile_seek_tables_stay_within_memory_and_time(tmp_path: Path) -> None:
    mib = 1024 * 1024
    for name, (layers, stored) in hostile_files(tmp_path).items():
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from tests.layers.test_compression import probe_hostile; "
                "probe_hostile(*sys.argv[1:])",
                str(tmp_path),
                name,
                layers,
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, stored, result)
        # Nothing a hostile file says makes a reader keep more than 64 MiB ...
        assert result["growth"] < 64 * mib, (name, result)
        # ... or work more than a second per MiB stored before failing.
        budget = max(1.0, stored / mib)
        assert all(t < budget for t in result["seconds"].values()), (name, result)
        assert result["outcomes"]["read"] != "ok", (name, result)


# -- inside LSE1: opened from the seek table -----------------------------------------


class RecordingStream(io.BytesIO):
    """A stream that remembers the lowest offset anything was read from."""

    lowest = 1 << 62

    def readinto(self, buffer: Any) -> int:
        self.lowest = min(self.lowest, self.tell())
        return super().readinto(buffer)

    def read(self, size: int | None = -1) -> bytes:
        self.lowest = min(self.lowest, self.tell())
        return super().read(size)


def test_enclosed_reader_sizes_and_seeks_without_reading_the_start() -> None:
    data = sample(6 * F + 5)
    stored = compress(data, frame_log2=SMALL)
    source = RecordingStream(stored)
    decoded = DecompressingReader(source, file_name="x", policy=OPEN, enclosed=True)
    assert decoded.size == len(data)
    decoded.seek(4 * F + 3)
    assert decoded.read(F) == data[4 * F + 3 : 5 * F + 3]
    frame_4 = decoded._table.offset(4)
    assert source.lowest == frame_4  # neither the descriptor nor frames 0 to 3


@pytest.mark.parametrize(
    "descriptor",
    [
        # compress() writes a bare container: frames of 2**SMALL, with checksums.
        pytest.param(lsz1.Descriptor(SMALL, checksums=False), id="checksum flag"),
        pytest.param(lsz1.Descriptor(SMALL + 1, checksums=True), id="frame size"),
        pytest.param(
            lsz1.Descriptor(SMALL, True, payload=lsz1.PAYLOAD_LSE1), id="payload"
        ),
    ],
)
def test_enclosed_reader_checks_the_descriptor_with_frame_0(
    descriptor: lsz1.Descriptor,
) -> None:
    data = sample(3 * F)
    stored = compress(data, frame_log2=SMALL)
    forged = descriptor.to_bytes() + stored[lsz1.DESCRIPTOR_SIZE :]
    with pytest.raises(FormatError):
        reader(forged, enclosed=True).read()
    decoded = reader(forged, enclosed=True)  # a read past frame 0 never needs it
    decoded.seek(F)
    assert decoded.read() == data[F:]


def test_enclosed_single_frame_may_declare_a_larger_frame_size() -> None:
    data = sample(F + 10)  # one 2**13-byte frame implies 2**13; the writer said 2**20
    stored = compress(data)
    assert reader(stored, enclosed=True).read() == data


def test_encrypted_compressed_file_reads_a_range_without_decoding_the_rest(
    fs_storage: Any,
) -> None:
    data = sample(8 * 1024 * 1024, 3)
    name = fs_storage.save("big.bin", ContentFile(data))
    with fs_storage.open(name) as opened:
        opened.seek(5 * 1024 * 1024 + 17)
        assert opened.read(1000) == data[5 * 1024 * 1024 + 17 : 5 * 1024 * 1024 + 1017]
