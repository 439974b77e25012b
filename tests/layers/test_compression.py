"""The zstd layer and its LSZ1 container: round trips, random access and limits."""

from __future__ import annotations

import contextlib
import io
import random
import struct
from typing import Any

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
    PolicyError,
)
from layered_storage.format import lse1, lsz1
from layered_storage.layers.base import (
    PAYLOAD_LSZ1,
    PAYLOAD_RAW,
    FileContext,
    ReadPolicy,
)
from layered_storage.layers.compression import DecompressingReader, ZstdLayer
from layered_storage.layers.encryption import AesGcmLayer
from layered_storage.pipeline import Pipeline
from tests.conftest import make_storage
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
    table = lsz1.build_seek_table(
        [lsz1.FrameEntry(lsz1.DESCRIPTOR_SIZE, 0)]
        + [lsz1.FrameEntry(c, d) for c, d in entries],
        checksums=False,
    )
    return descriptor + b"".join(frames) + table


def frame(data: bytes, **options: Any) -> bytes:
    return zstd.ZstdCompressor(level=3, **options).compress(data)


def test_truthful_container_reads() -> None:
    stored = container([frame(b"a" * F), frame(b"b" * 10)])
    assert reader(stored).read() == b"a" * F + b"b" * 10


@pytest.mark.parametrize("random_access", [False, True])
def test_frame_larger_than_the_frame_size_is_a_bomb(random_access: bool) -> None:
    stored = container([frame(b"\x00" * (64 * F))])
    decoded = reader(stored)
    if random_access:
        decoded.seek(10)
    with pytest.raises(DecompressionLimitError):
        decoded.read()


def test_frame_without_content_size_is_refused() -> None:
    streamed = zstd.ZstdCompressor(write_content_size=False).compress(b"x" * 100)
    with pytest.raises(DecompressionLimitError):
        reader(container([streamed], [(len(streamed), 100)])).read()


def test_short_frame_before_the_last_is_refused() -> None:
    stored = container([frame(b"a" * 10), frame(b"b" * 10)])
    with pytest.raises(ContainerError, match="only the last frame may be short"):
        reader(stored).read()


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


@hsettings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=120), st.integers(0, 5))
def test_seek_table_parser_takes_arbitrary_bytes(data: bytes, count: int) -> None:
    descriptor = lsz1.Descriptor(frame_log2=SMALL, checksums=False)
    footer = struct.pack("<IBI", count, 0, lsz1.SEEK_TABLE_FOOTER_MAGIC)
    for candidate in (data, data + footer):
        with contextlib.suppress(FormatError):
            lsz1.parse_seek_table(
                candidate, file_name="x", descriptor=descriptor, table_offset=len(data)
            )
    with contextlib.suppress(FormatError):
        lsz1.parse_descriptor(data, file_name="x", max_frame_log2=23)
    for checksums in (False, True):
        with contextlib.suppress(FormatError):
            lsz1.implied_descriptor(
                data + footer, file_name="x", checksums=checksums, max_frame_log2=23
            )


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
    frame_4 = lsz1.frame_offsets(decoded._load_table())[4]
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
