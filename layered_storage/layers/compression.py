"""The zstd layer: writes and reads the LSZ1 seekable container.

Plaintext is cut into independent frames of ``2**frame_log2`` bytes (1 MiB), each
compressed on its own with its content size recorded, followed by a seek table. A
sequential read decodes frame after frame without looking at the table; a seek or a
size question reads the table from the tail and decodes only the frame it needs.
Incompressible frames cost little: zstd detects them and stores raw blocks.
"""

from __future__ import annotations

import io
import mimetypes
import posixpath
from collections.abc import Iterable
from typing import Any, BinaryIO

import zstandard as zstd

from layered_storage.exceptions import (
    ConfigurationError,
    ContainerError,
    DecompressionLimitError,
)
from layered_storage.format import lsz1
from layered_storage.layers.base import PAYLOAD_LSZ1, FileContext, Layer, ReadPolicy
from layered_storage.streams import BlockReader, ProducerStream, fill_from, read_exactly

#: File types that are already compressed: compressing them again wastes CPU.
DEFAULT_SKIP_EXTENSIONS = (
    ".7z", ".avif", ".br", ".bz2", ".docx", ".flac", ".gif", ".gz", ".heic", ".jpeg",
    ".jpg", ".m4a", ".mkv", ".mov", ".mp3", ".mp4", ".odt", ".ogg", ".pdf", ".png",
    ".pptx", ".rar", ".webm", ".webp", ".xlsx", ".xz", ".zip", ".zst",
)  # fmt: skip
DEFAULT_SKIP_CONTENT_TYPES = ("image/", "video/", "audio/", "application/zip")
#: The level used to frame a file that is skipped but must still be LSZ1.
STORE_LEVEL = -7
_READ_CHUNK = 128 * 1024


class ZstdLayer(Layer):
    """Compress with zstd into independent frames (LSZ1)."""

    name = "zstd"
    kind = "compression"
    payload = PAYLOAD_LSZ1

    def __init__(
        self,
        *,
        level: int = 3,
        frame_log2: int = lsz1.WRITE_FRAME_LOG2,
        skip_extensions: Iterable[str] = DEFAULT_SKIP_EXTENSIONS,
        skip_content_types: Iterable[str] = DEFAULT_SKIP_CONTENT_TYPES,
    ) -> None:
        top = zstd.MAX_COMPRESSION_LEVEL
        if (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not 1 <= level <= top
        ):
            raise ConfigurationError(
                f"zstd level must be an integer from 1 to {top}, got {level!r}.",
                check_id="layered_storage.E004",
            )
        low, high = lsz1.FRAME_LOG2_RANGE
        if not isinstance(frame_log2, int) or not low <= frame_log2 <= high:
            raise ConfigurationError(
                f"zstd frame_log2 must be {low} to {high} (frames of 4 KiB to 8 MiB), "
                f"got {frame_log2!r}.",
                check_id="layered_storage.E004",
            )
        for option, values in (
            ("skip_extensions", skip_extensions),
            ("skip_content_types", skip_content_types),
        ):
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise ConfigurationError(
                    f"zstd {option} must be a list of strings, got {values!r}.",
                    check_id="layered_storage.E004",
                )
        self.level = level
        self.frame_log2 = frame_log2
        self.skip_extensions = tuple(ext.lower() for ext in skip_extensions)
        self.skip_content_types = tuple(t.lower() for t in skip_content_types)

    def applies_to(self, context: FileContext) -> bool:
        extension = posixpath.splitext(context.name)[1].lower()
        if extension in self.skip_extensions:
            return False
        content_type = (
            context.content_type or mimetypes.guess_type(context.name)[0] or ""
        ).lower()
        return not any(content_type.startswith(t) for t in self.skip_content_types if t)

    def encode(
        self, source: BinaryIO, context: FileContext, *, payload: int, outermost: bool
    ) -> BinaryIO:
        # Under an AEAD every byte is authenticated, so per-frame checksums would only
        # cost; outermost, they are the only integrity check. A skipped file that is
        # outermost still gets the container (it stays self-describing), framed at
        # zstd's fastest setting.
        level = self.level if self.applies_to(context) else STORE_LEVEL
        return CompressingStream(
            source,
            level=level,
            frame_log2=self.frame_log2,
            checksums=outermost,
            payload=payload,
        )

    def describe(self) -> dict[str, Any]:
        return {"level": self.level, "frame_size": 1 << self.frame_log2}


class CompressingStream(ProducerStream):
    """Produce an LSZ1 stream from ``source``, one frame per ``_produce`` call."""

    def __init__(
        self,
        source: BinaryIO,
        *,
        level: int,
        frame_log2: int,
        checksums: bool,
        payload: int,
    ) -> None:
        super().__init__()
        self._source = source
        self._descriptor = lsz1.Descriptor(
            frame_log2=frame_log2, checksums=checksums, payload=payload
        )
        self._compressor = zstd.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=checksums
        )
        self._buffer = bytearray(1 << frame_log2)
        self._entries = [lsz1.FrameEntry(lsz1.DESCRIPTOR_SIZE, 0, 0)]
        self._state = "descriptor"

    def _produce(self) -> bytes | None:
        if self._state == "descriptor":
            self._state = "frames"
            return self._descriptor.to_bytes()
        if self._state == "frames":
            count = fill_from(self._source, self._buffer)
            if count == len(self._buffer):
                return self._compress(count)
            self._state = "table"
            return self._compress(count) if count else b""
        if self._state == "table":
            self._state = "done"
            return lsz1.build_seek_table(self._entries, self._descriptor.checksums)
        return None

    def _compress(self, count: int) -> bytes:
        frame: bytes = self._compressor.compress(memoryview(self._buffer)[:count])
        # With checksums on, zstd ends the frame with the XXH64-low-32 of its content,
        # which the seekable format repeats in the table.
        checksum = (
            int.from_bytes(frame[-4:], "little") if self._descriptor.checksums else None
        )
        self._entries.append(lsz1.FrameEntry(len(frame), count, checksum))
        return frame


class DecompressingReader(BlockReader):
    """Read the plaintext of an LSZ1 stream; seekable when ``source`` is."""

    def __init__(self, source: BinaryIO, *, file_name: str, policy: ReadPolicy) -> None:
        super().__init__(source)
        self._file_name = file_name
        self._policy = policy
        head = read_exactly(source, lsz1.DESCRIPTOR_SIZE)
        self._descriptor = lsz1.parse_descriptor(
            head, file_name=file_name, max_frame_log2=policy.max_frame_log2
        )
        self.block_size = self._descriptor.frame_size
        self.payload = self._descriptor.payload
        self._decompressor = zstd.ZstdDecompressor(max_window_size=self.block_size)
        # Sequential state: the next frame to decode in stream order, where it
        # starts, and the bytes read past it.
        self._next_frame = 0
        self._stream_offset = lsz1.DESCRIPTOR_SIZE
        self._carry = b""
        self._seen: list[lsz1.FrameEntry] = [lsz1.FrameEntry(lsz1.DESCRIPTOR_SIZE, 0)]
        self._seen_total = 0
        self._consumed = 0
        self._table: list[lsz1.FrameEntry] | None = None
        self._offsets: list[int] = []
        self._cached_index = -1
        self._cached = memoryview(b"")

    # -- size and the seek table ------------------------------------------------

    @property
    def size(self) -> int:
        table = self._load_table()
        return sum(entry.decompressed for entry in table)

    def _load_table(self) -> list[lsz1.FrameEntry]:
        """Return the data-frame entries, reading the table from the tail if needed."""
        if self._table is not None:
            return self._table
        name = self._file_name
        end = self._source.seek(0, io.SEEK_END)
        if end < lsz1.DESCRIPTOR_SIZE + lsz1.table_frame_size(1, False):
            raise ContainerError(f"{name!r} is too short for an LSZ1 stream.")
        self._source.seek(end - lsz1.FOOTER_SIZE)
        footer = read_exactly(self._source, lsz1.FOOTER_SIZE)
        count = lsz1.parse_footer(footer, file_name=name, descriptor=self._descriptor)
        table_size = lsz1.table_frame_size(count, self._descriptor.checksums)
        table_offset = end - table_size
        if table_offset < lsz1.DESCRIPTOR_SIZE:
            raise ContainerError(f"{name!r}: the LSZ1 seek table overruns the stream.")
        self._source.seek(table_offset)
        frame = read_exactly(self._source, table_size)
        table = lsz1.parse_seek_table(
            frame,
            file_name=name,
            descriptor=self._descriptor,
            table_offset=table_offset,
        )
        self._check_total(sum(entry.decompressed for entry in table))
        self._install_table(table)
        # The sequential cursor no longer matches the source position.
        self._carry, self._next_frame = b"", -1
        return table

    def _install_table(self, table: list[lsz1.FrameEntry]) -> None:
        self._table = table
        self._offsets = lsz1.frame_offsets(table) if table else []

    def _check_total(self, total: int) -> None:
        limit = self._policy.max_file_size
        if limit is not None and total > limit:
            raise DecompressionLimitError(
                f"{self._file_name!r} expands to {total} bytes, over the "
                f"{limit}-byte limit of this storage."
            )

    # -- blocks ------------------------------------------------------------------

    def _block(self, index: int) -> memoryview:
        if index == self._cached_index:
            return self._cached
        if index == self._next_frame:
            data = self._next_sequential()
        else:
            data = self._random(index)
        self._cached_index, self._cached = index, memoryview(data)
        return self._cached

    def _random(self, index: int) -> bytes:
        table = self._load_table()
        if index >= len(table):
            return b""
        entry = table[index]
        self._source.seek(self._offsets[index])
        data = read_exactly(self._source, entry.compressed)
        if len(data) != entry.compressed:
            raise ContainerError(f"{self._file_name!r} ends inside frame {index}.")
        plain, rest = self._decompress_frame(index, data, entry.decompressed)
        if rest:
            raise ContainerError(
                f"{self._file_name!r}: frame {index} is shorter than its seek-table "
                "entry."
            )
        return plain

    def _next_sequential(self) -> bytes:
        """Decode the next frame in stream order, or verify the table at the end."""
        index = self._next_frame
        head = self._pull(len(lsz1.ZSTD_FRAME_MAGIC))
        if head != lsz1.ZSTD_FRAME_MAGIC:
            self._verify_sequential_end(head)
            return b""
        plain, rest = self._decompress_frame(index, None, None)
        self._carry = rest + self._carry  # read past the frame, still unconsumed
        self._seen.append(lsz1.FrameEntry(self._consumed, len(plain)))
        self._seen_total += len(plain)
        self._check_total(self._seen_total)
        self._stream_offset += self._consumed
        self._next_frame += 1
        if len(plain) < self.block_size:
            # A short frame ends the data: verify the seek table and the end of the
            # stream before releasing it, or a cut or spliced stream would read as
            # a shorter, valid one.
            self._verify_sequential_end(self._pull(len(lsz1.ZSTD_FRAME_MAGIC)))
        return plain

    def _verify_sequential_end(self, head: bytes) -> None:
        """Check the seek table against the frames just decoded, then EOF."""
        name = self._file_name
        count = len(self._seen)
        if head == lsz1.ZSTD_FRAME_MAGIC:
            raise ContainerError(
                f"{name!r}: frame {count - 2} is short but another frame follows; "
                "only the last frame may be short."
            )
        size = lsz1.table_frame_size(count, self._descriptor.checksums)
        frame = head + self._pull(size - len(head))
        table = lsz1.parse_seek_table(
            frame,
            file_name=name,
            descriptor=self._descriptor,
            table_offset=self._stream_offset,
        )
        observed = [(e.compressed, e.decompressed) for e in self._seen[1:]]
        if observed != [(e.compressed, e.decompressed) for e in table]:
            raise ContainerError(
                f"{name!r}: the LSZ1 seek table does not describe the frames stored."
            )
        if self._pull(1):
            raise ContainerError(f"{name!r} has bytes after its LSZ1 seek table.")
        self._install_table(table)
        self._next_frame = -1

    def _pull(self, count: int) -> bytes:
        """Return ``count`` stream bytes (fewer at EOF), the carried ones first."""
        data = self._carry[:count]
        self._carry = self._carry[count:]
        if len(data) < count:
            data += read_exactly(self._source, count - len(data))
        return data

    def _decompress_frame(
        self, index: int, data: bytes | None, expected: int | None
    ) -> tuple[bytes, bytes]:
        """Decompress one zstd frame; return ``(plaintext, bytes after the frame)``.

        With ``data`` None the frame is pulled from the stream (its magic already
        consumed), so its compressed length is counted into ``self._consumed``.

        Raises:
            ContainerError: not a valid frame, or one whose declared size breaks the
                container's rules.
            DecompressionLimitError: a frame that would expand past the frame size.
        """
        name = self._file_name
        head = lsz1.ZSTD_FRAME_MAGIC + self._pull(14) if data is None else data[:18]
        try:
            parameters = zstd.get_frame_parameters(head)
        except zstd.ZstdError as exc:
            raise ContainerError(
                f"{name!r}: frame {index} has no valid header."
            ) from exc
        declared = parameters.content_size
        if declared == zstd.CONTENTSIZE_UNKNOWN or not 1 <= declared <= self.block_size:
            raise DecompressionLimitError(
                f"{name!r}: frame {index} declares {declared} bytes; frames hold 1 to "
                f"{self.block_size} bytes."
            )
        if expected is not None and declared != expected:
            raise ContainerError(
                f"{name!r}: frame {index} declares {declared} bytes, its seek-table "
                f"entry {expected}."
            )
        if parameters.dict_id or parameters.has_checksum != self._descriptor.checksums:
            raise ContainerError(f"{name!r}: frame {index} has unexpected parameters.")
        decoder = self._decompressor.decompressobj()
        output: list[bytes] = []
        consumed = 0
        chunk = head if data is None else data
        limit = lsz1.max_frame_bytes(self.block_size)
        try:
            while True:
                consumed += len(chunk)
                output.append(decoder.decompress(chunk))
                if decoder.eof or data is not None:
                    break
                if consumed > limit:
                    raise DecompressionLimitError(
                        f"{name!r}: frame {index} is larger than any writer makes."
                    )
                chunk = self._pull(_READ_CHUNK)
                if not chunk:
                    break
        except zstd.ZstdError as exc:
            raise ContainerError(
                f"{name!r}: frame {index} is corrupt ({exc})."
            ) from exc
        if not decoder.eof:
            raise ContainerError(f"{name!r} ends inside frame {index}.")
        rest = decoder.unused_data
        plain = b"".join(output)
        if len(plain) != declared:
            raise ContainerError(f"{name!r}: frame {index} does not match its size.")
        self._consumed = consumed - len(rest)
        return plain, rest
