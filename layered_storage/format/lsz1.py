"""LSZ1, the compressed container: independent zstd frames plus a seek table.

Layout (little-endian, as zstd): a 24-byte descriptor (a zstd skippable frame), one
zstd frame per ``2**frame_log2`` plaintext bytes (the last one shorter, none for an
empty file), then a seek-table frame in the zstd seekable format, so a decrypted
LSZ1 stream is ordinary zstd (``zstd -d`` reads it) and any offset can be reached by
decompressing one frame.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from layered_storage.exceptions import ContainerError, UnsupportedFormatError

SKIPPABLE_DESCRIPTOR = 0x184D2A5A
SKIPPABLE_SEEK_TABLE = 0x184D2A5E
ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
SEEK_TABLE_FOOTER_MAGIC = 0x8F92EAB1
IDENTIFIER = b"LSZ1"
CODEC_ZSTD = 0x01
FLAG_SEEK_TABLE = 0x01
FLAG_PADDED = 0x02
FLAG_CHECKSUMS = 0x04
KNOWN_FLAGS = FLAG_SEEK_TABLE | FLAG_PADDED | FLAG_CHECKSUMS

DESCRIPTOR_SIZE = 24
DESCRIPTOR_HEAD = struct.pack("<II", SKIPPABLE_DESCRIPTOR, 16) + IDENTIFIER
MAX_FRAME_HEADER = 18  # the longest zstd frame header
FOOTER_SIZE = 9  # u32 frame count, u8 descriptor, u32 magic
TABLE_HEADER_SIZE = 8  # skippable magic, u32 size
WRITE_FRAME_LOG2 = 20  # 1 MiB frames: -3 % ratio against one stream, cheap seeks
FRAME_LOG2_RANGE = (12, 23)
#: Entries a seek table may hold, the descriptor's included. A reader keeps about 8
#: bytes per frame (``SeekTable``), so 2**22 entries cost at most 32.5 MiB; frames of
#: 1 MiB then allow files of up to 4 TiB, frames of 4 KiB up to 16 GiB.
MAX_FRAMES = 2**22
#: The smallest zstd frame that holds a byte: magic 4, header 2 (descriptor and a
#: one-byte content size), block header 3, one byte of block content.
MIN_FRAME_BYTES = 10
#: Frames whose stream offset ``SeekTable`` keeps: every BASE_STEP-th.
BASE_STEP = 64
#: Entries read and checked at a time (a multiple of BASE_STEP).
PIECE_FRAMES = 256 * BASE_STEP
#: Largest piece a writer hands on when producing its seek table.
TABLE_PIECE = 1024 * 1024


#: Byte 15 of the descriptor (reserved in the survey's draft) names what the frames
#: hold, so a stack that compresses after encrypting stays self-describing.
PAYLOAD_RAW = 0x00
PAYLOAD_LSE1 = 0x02


@dataclass(frozen=True)
class Descriptor:
    frame_log2: int
    checksums: bool
    payload: int = PAYLOAD_RAW

    @property
    def frame_size(self) -> int:
        return 1 << self.frame_log2

    def to_bytes(self) -> bytes:
        flags = FLAG_SEEK_TABLE | (FLAG_CHECKSUMS if self.checksums else 0)
        return DESCRIPTOR_HEAD + struct.pack(
            "<BBBBII", CODEC_ZSTD, self.frame_log2, flags, self.payload, 0, 0
        )


def is_lsz1(head: bytes) -> bool:
    """Return whether ``head`` (the first 12 bytes or more) starts an LSZ1 stream."""
    return head[:12] == DESCRIPTOR_HEAD


def parse_descriptor(data: bytes, *, file_name: str, max_frame_log2: int) -> Descriptor:
    """Return the descriptor at the start of ``data``.

    Raises:
        ContainerError: malformed.
        UnsupportedFormatError: a codec, flag or frame size this version rejects.
    """
    where = repr(file_name)
    if len(data) < DESCRIPTOR_SIZE or not is_lsz1(data):
        raise ContainerError(f"{where} does not start with an LSZ1 descriptor.")
    codec, frame_log2, flags, payload, dict_id, reserved = struct.unpack(
        "<BBBBII", data[12:DESCRIPTOR_SIZE]
    )
    if codec != CODEC_ZSTD:
        raise UnsupportedFormatError(f"{where} uses unknown LSZ1 codec {codec}.")
    if payload not in (PAYLOAD_RAW, PAYLOAD_LSE1):
        raise UnsupportedFormatError(f"{where} declares unknown payload {payload}.")
    if flags & ~KNOWN_FLAGS or reserved or not flags & FLAG_SEEK_TABLE:
        raise UnsupportedFormatError(
            f"{where} sets LSZ1 flags {flags:#04x} that this version does not read."
        )
    if flags & FLAG_PADDED:
        raise UnsupportedFormatError(
            f"{where} is padded; this release does not read padded LSZ1 streams."
        )
    if dict_id:
        raise UnsupportedFormatError(f"{where} needs zstd dictionary {dict_id}.")
    low = FRAME_LOG2_RANGE[0]
    if not low <= frame_log2 <= max_frame_log2:
        raise UnsupportedFormatError(
            f"{where} declares frames of 2**{frame_log2} bytes; this reader accepts "
            f"2**{low} to 2**{max_frame_log2}."
        )
    return Descriptor(
        frame_log2=frame_log2, checksums=bool(flags & FLAG_CHECKSUMS), payload=payload
    )


def table_frame_size(count: int, checksums: bool) -> int:
    """Return the byte size of a seek-table frame holding ``count`` entries."""
    return TABLE_HEADER_SIZE + count * entry_size(checksums) + FOOTER_SIZE


def entry_size(checksums: bool) -> int:
    return 12 if checksums else 8


def parse_footer(
    footer: bytes, *, file_name: str, descriptor: Descriptor | None
) -> tuple[int, bool]:
    """Return the entry count and checksum flag from the last 9 bytes of a stream.

    Raises:
        ContainerError: not a seek-table footer, one disagreeing with the
            descriptor (when one was read), or a count over ``MAX_FRAMES``.
    """
    count: int
    count, flags, magic = struct.unpack("<IBI", footer)
    if magic != SEEK_TABLE_FOOTER_MAGIC:
        raise ContainerError(f"{file_name!r} does not end with an LSZ1 seek table.")
    if flags not in (0, 0x80) or (
        descriptor is not None and flags != (0x80 if descriptor.checksums else 0)
    ):
        raise ContainerError(
            f"{file_name!r} has seek-table flags {flags:#04x} that disagree with its "
            "descriptor."
        )
    if not 1 <= count <= MAX_FRAMES:
        raise ContainerError(
            f"{file_name!r} claims {count} entries in its seek table; a table holds "
            f"1 to {MAX_FRAMES}."
        )
    return count, bool(flags)


class SeekTable:
    """The data-frame entries of a checked seek table, kept compact.

    Per frame it keeps the compressed size (4 bytes) and, with checksums, the
    checksum (4 bytes), plus the stream offset of every ``BASE_STEP``-th frame: at
    most 8.125 bytes a frame, never a Python object per frame. Payload sizes are not
    kept: every frame but the last holds ``frame_size`` bytes. The arrays are made
    at their final size, so building one never copies them as they grow.
    """

    def __init__(self, frame_size: int, checksums: bool, end: int, frames: int) -> None:
        self.frame_size = frame_size
        self.checksums = checksums
        #: Where the data frames end and the seek table starts.
        self.end = end
        self.frames = frames
        self._last = 0
        self._sizes = array("I", [0]) * frames
        self._checksums = array("I", [0]) * (frames if checksums else 0)
        self._bases = array("Q", [0]) * -(-frames // BASE_STEP)
        self._filled = 0  # frames whose entries were added
        self._stored = DESCRIPTOR_SIZE  # where the next frame added starts

    @property
    def size(self) -> int:
        """Return the payload size the table describes."""
        return (self.frames - 1) * self.frame_size + self._last if self.frames else 0

    def offset(self, index: int) -> int:
        """Return where data frame ``index`` starts in the stream."""
        block = index - index % BASE_STEP
        return self._bases[index // BASE_STEP] + sum(self._sizes[block:index])

    def compressed(self, index: int) -> int:
        return self._sizes[index]

    def decompressed(self, index: int) -> int:
        return self._last if index == self.frames - 1 else self.frame_size

    def checksum(self, index: int) -> int | None:
        return self._checksums[index] if self.checksums else None

    def _add(self, piece: bytes, *, where: str) -> None:
        """Check and keep the entries in ``piece``, the next ones in the table
        (a whole number of ``BASE_STEP`` entries unless they end it).

        Raises:
            ContainerError: an entry no writer makes, or sizes past the table.
        """
        words = _u32_array(piece)
        width = 3 if self.checksums else 2
        sizes, payloads = words[0::width], words[1::width]
        first, count = self._filled, len(sizes)
        last = first + count == self.frames
        limit = self.frame_size
        final = count - 1 if last else -1  # only the table's last frame is short
        full = payloads[:final] if last else payloads
        if full.count(limit) != len(full) or (last and not 1 <= payloads[-1] <= limit):
            index = next(
                i
                for i, value in enumerate(payloads)
                if not (value == limit or (i == final and 1 <= value <= limit))
            )
            raise ContainerError(
                f"{where}: seek-table entry for frame {first + index} declares "
                f"{payloads[index]} bytes; frames hold {limit} bytes, the last 1 to "
                f"{limit}."
            )
        largest = max_frame_bytes(limit)
        if min(sizes) < MIN_FRAME_BYTES or max(sizes) > largest:
            index = next(
                i
                for i, value in enumerate(sizes)
                if not MIN_FRAME_BYTES <= value <= largest
            )
            raise ContainerError(
                f"{where}: frame {first + index} claims {sizes[index]} compressed "
                f"bytes; frames take {MIN_FRAME_BYTES} to {largest}."
            )
        for start in range(0, count, BASE_STEP):
            self._bases[(first + start) // BASE_STEP] = self._stored
            self._stored += sum(sizes[start : start + BASE_STEP])
        if self._stored > self.end:
            # Checked piece by piece: a lying table fails before it is all read.
            raise ContainerError(f"{where}: {_SIZES_DISAGREE}")
        self._sizes[first : first + count] = sizes
        if self.checksums:
            self._checksums[first : first + count] = words[2::width]
        self._filled += count
        if last:
            self._last = payloads[-1]


_SIZES_DISAGREE = "the seek table's frame sizes do not add up to its position."


def read_seek_table(
    read_at: Callable[[int, int], bytes],
    end: int,
    *,
    file_name: str,
    descriptor: Descriptor | None,
    max_frame_log2: int,
) -> tuple[SeekTable, Descriptor]:
    """Return the checked seek table of an LSZ1 stream of ``end`` bytes, and the
    descriptor it was checked against: ``descriptor``, or (None) the one it implies.

    ``read_at(offset, size)`` returns the stream's bytes there. The table's geometry
    is checked against ``end`` before any of it is read, its first entries before the
    rest, and the rest in pieces, so a lying footer costs a few small reads, and
    memory and time in proportion to the stored bytes.

    Raises:
        ContainerError: any inconsistency in sizes, counts or entries.
        UnsupportedFormatError: an implied frame size this reader does not accept.
    """
    where = repr(file_name)
    if end < DESCRIPTOR_SIZE + table_frame_size(1, False):
        raise ContainerError(f"{where} is too short for an LSZ1 stream.")
    count, checksums = parse_footer(
        _read(read_at, end - FOOTER_SIZE, FOOTER_SIZE, where),
        file_name=file_name,
        descriptor=descriptor,
    )
    width = entry_size(checksums)
    table_offset = end - table_frame_size(count, checksums)
    frames = count - 1
    # Every data frame takes at least MIN_FRAME_BYTES: a count the stored bytes
    # cannot hold is refused before anything is read or kept for it.
    if table_offset < DESCRIPTOR_SIZE + frames * MIN_FRAME_BYTES:
        raise ContainerError(
            f"{where} claims {frames} frames in its seek table, more than its {end} "
            "stored bytes can hold."
        )
    # Entry 0 first; the frame size comes from entry 1 when no descriptor was read.
    entries = min(count, 1 if descriptor is not None else 2)
    head = _read(read_at, table_offset, TABLE_HEADER_SIZE + width * entries, where)
    magic, size = struct.unpack_from("<II", head)
    if magic != SKIPPABLE_SEEK_TABLE or size != count * width + FOOTER_SIZE:
        raise ContainerError(f"{where} has a malformed LSZ1 seek-table frame.")
    if struct.unpack_from("<II", head, TABLE_HEADER_SIZE) != (DESCRIPTOR_SIZE, 0):
        raise ContainerError(
            f"{where}: the seek table does not start at the descriptor."
        )
    if descriptor is None:
        descriptor = _implied_descriptor(
            head,
            count,
            file_name=file_name,
            checksums=checksums,
            max_frame_log2=max_frame_log2,
        )
    if table_offset - DESCRIPTOR_SIZE > frames * max_frame_bytes(descriptor.frame_size):
        raise ContainerError(f"{where}: {_SIZES_DISAGREE}")
    table = SeekTable(descriptor.frame_size, checksums, table_offset, frames)
    position = table_offset + TABLE_HEADER_SIZE + width
    for first in range(0, frames, PIECE_FRAMES):
        entries = min(PIECE_FRAMES, frames - first)
        table._add(_read(read_at, position, entries * width, where), where=where)
        position += entries * width
    if table._stored != table_offset:
        raise ContainerError(f"{where}: {_SIZES_DISAGREE}")
    return table, descriptor


def _read(
    read_at: Callable[[int, int], bytes], offset: int, size: int, where: str
) -> bytes:
    data = read_at(offset, size)
    if len(data) != size:
        raise ContainerError(f"{where} ended while its seek table was read.")
    return data


def _u32_array(data: bytes) -> array[int]:
    """Return the little-endian u32 words of ``data``."""
    words = array("I")
    words.frombytes(data)
    if sys.byteorder == "big":
        words.byteswap()
    return words


def _implied_descriptor(
    head: bytes, count: int, *, file_name: str, checksums: bool, max_frame_log2: int
) -> Descriptor:
    """Return the descriptor a seek table implies, for a reader that has not read
    the stream's start: raw payload, and frames the size of the first data frame
    (for a single frame, the smallest allowed power of two that holds it).

    ``head`` holds the table's header and its first two entries (one if ``count``
    is 1).

    Raises:
        ContainerError: a first frame whose size no writer uses.
        UnsupportedFormatError: frames larger than this reader accepts.
    """
    low = FRAME_LOG2_RANGE[0]
    frame_log2 = WRITE_FRAME_LOG2
    if count >= 2:
        width = entry_size(checksums)
        (first,) = struct.unpack_from("<I", head, TABLE_HEADER_SIZE + width + 4)
        if count == 2:
            frame_log2 = max(low, (first - 1).bit_length())
        elif first & (first - 1) or first < 1 << low:
            raise ContainerError(
                f"{file_name!r}: its first frame holds {first} bytes, not a power of "
                "two; the seek table is malformed."
            )
        else:
            frame_log2 = first.bit_length() - 1
    if frame_log2 > max_frame_log2:
        raise UnsupportedFormatError(
            f"{file_name!r} uses frames of 2**{frame_log2} bytes; this reader accepts "
            f"2**{low} to 2**{max_frame_log2}."
        )
    return Descriptor(frame_log2=frame_log2, checksums=checksums)


class SeekTableWriter:
    """Collect the entries of a seek table as frames are written (12 bytes each at
    most), then produce the table frame in pieces."""

    def __init__(self, checksums: bool) -> None:
        self.checksums = checksums
        self.count = 0
        self._words = array("I")
        self.add(DESCRIPTOR_SIZE, 0, 0)

    def add(self, compressed: int, decompressed: int, checksum: int) -> None:
        """Add the entry of the next frame (``checksum`` only counts with checksums)."""
        if self.checksums:
            self._words.extend((compressed, decompressed, checksum))
        else:
            self._words.extend((compressed, decompressed))
        self.count += 1

    def pieces(self) -> Iterator[bytes | memoryview]:
        """Yield the seek-table frame, in pieces of at most ``TABLE_PIECE`` bytes."""
        if sys.byteorder == "big":
            self._words.byteswap()
        body = memoryview(self._words).cast("B")
        yield struct.pack("<II", SKIPPABLE_SEEK_TABLE, len(body) + FOOTER_SIZE)
        for start in range(0, len(body), TABLE_PIECE):
            yield body[start : start + TABLE_PIECE]
        yield struct.pack(
            "<IBI", self.count, 0x80 if self.checksums else 0, SEEK_TABLE_FOOTER_MAGIC
        )


def max_frame_bytes(frame_size: int) -> int:
    """Return the largest compressed frame a writer can produce for ``frame_size``.

    zstd's own bound (input + input/256 + header) with room to spare; anything
    larger is hostile, and refusing it caps what a reader buffers.
    """
    return frame_size + frame_size // 128 + 1024


RAW_BLOCK_MAX = 128 * 1024  # zstd's largest block


def raw_frame(data: bytes | bytearray | memoryview) -> bytearray:
    """Return a zstd frame (RFC 8878) that stores ``data`` as raw blocks, no checksum.

    Writing incompressible data this way costs a copy instead of a compression
    attempt; any zstd decoder reads it. ``data`` must not be empty.
    """
    size = len(data)
    if size <= 0xFF:
        descriptor, field = 0x20, bytes((size,))  # single segment, 1-byte size
    elif size <= 0xFFFF + 256:
        descriptor, field = 0x60, (size - 256).to_bytes(2, "little")
    else:
        descriptor, field = 0xA0, size.to_bytes(4, "little")
    blocks = (size + RAW_BLOCK_MAX - 1) // RAW_BLOCK_MAX
    head = ZSTD_FRAME_MAGIC + bytes((descriptor,)) + field
    frame = bytearray(len(head) + size + 3 * blocks)
    frame[: len(head)] = head
    view, at = memoryview(data), len(head)
    for start in range(0, size, RAW_BLOCK_MAX):
        length = min(RAW_BLOCK_MAX, size - start)
        last = start + length == size
        frame[at : at + 3] = ((length << 3) | int(last)).to_bytes(3, "little")
        frame[at + 3 : at + 3 + length] = view[start : start + length]
        at += 3 + length
    return frame
