"""The zstd layer: writes and reads the LSZ1 seekable container.

Plaintext is cut into independent frames of ``2**frame_log2`` bytes (1 MiB), each
compressed on its own with its content size recorded, followed by a seek table. A
sequential read decodes frame after frame without looking at the table; a seek or a
size question reads the table from the tail and decodes only the frame it needs.
Incompressible frames cost little: zstd detects them and stores raw blocks. Under
encryption, a file whose first frame will not shrink skips the container altogether.
"""

from __future__ import annotations

import mimetypes
import posixpath
import threading
from collections.abc import Iterable, Iterator

import zstandard as zstd

from layered_storage.exceptions import (
    ConfigurationError,
    ContainerError,
    DecompressionLimitError,
    FormatError,
)
from layered_storage.format import lsz1
from layered_storage.layers.base import (
    PAYLOAD_LSZ1,
    PAYLOAD_RAW,
    FileContext,
    Layer,
    ReadPolicy,
)
from layered_storage.parallel import ordered_map, worker_count
from layered_storage.streams import (
    BlockReader,
    ByteStream,
    ProducerStream,
    read_exactly,
    read_tail,
)

#: File types that are already compressed: compressing them again wastes CPU.
DEFAULT_SKIP_EXTENSIONS = (
    ".7z", ".avif", ".br", ".bz2", ".docx", ".flac", ".gif", ".gz", ".heic", ".jpeg",
    ".jpg", ".m4a", ".mkv", ".mov", ".mp3", ".mp4", ".odt", ".ogg", ".pdf", ".png",
    ".pptx", ".rar", ".webm", ".webp", ".xlsx", ".xz", ".zip", ".zst",
)  # fmt: skip
DEFAULT_SKIP_CONTENT_TYPES = ("image/", "video/", "audio/", "application/zip")
#: The level used to frame a file that is skipped but must still be LSZ1.
STORE_LEVEL = -7


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
        skips: dict[str, tuple[str, ...]] = {}
        for option, values in (
            ("skip_extensions", skip_extensions),
            ("skip_content_types", skip_content_types),
        ):
            listed = () if isinstance(values, str) else tuple(values)
            if isinstance(values, str) or not all(isinstance(v, str) for v in listed):
                raise ConfigurationError(
                    f"zstd {option} must be a list of strings, got {values!r}.",
                    check_id="layered_storage.E004",
                )
            skips[option] = tuple(value.lower() for value in listed)
        self.level = level
        self.frame_log2 = frame_log2
        self.skip_extensions = skips["skip_extensions"]
        self.skip_content_types = skips["skip_content_types"]
        self.head_size = 1 << frame_log2

    def applies_to(self, context: FileContext) -> bool:
        extension = posixpath.splitext(context.name)[1].lower()
        if extension in self.skip_extensions:
            return False
        content_type = (
            context.content_type or mimetypes.guess_type(context.name)[0] or ""
        ).lower()
        return not any(content_type.startswith(t) for t in self.skip_content_types if t)

    def applies_to_head(self, head: bytes) -> bool:
        # Only asked when a layer follows (under encryption): a file whose first
        # frame will not shrink is handed on as it is, with no container to build.
        return not _incompressible_head(head)

    def encode(
        self, source: ByteStream, context: FileContext, *, payload: int, outermost: bool
    ) -> ProducerStream:
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


class CompressingStream(ProducerStream):
    """Produce an LSZ1 stream from ``source``: descriptor, frames, seek table.

    Frames are read in order and compressed ahead by the shared workers (see
    ``parallel``), at most a small window of them in flight.
    """

    def __init__(
        self,
        source: ByteStream,
        *,
        level: int,
        frame_log2: int,
        checksums: bool,
        payload: int,
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._descriptor = lsz1.Descriptor(
            frame_log2=frame_log2, checksums=checksums, payload=payload
        )
        self._parameters = (level, checksums)
        self._entries = [lsz1.FrameEntry(lsz1.DESCRIPTOR_SIZE, 0, 0)]
        self._frames = ordered_map(
            self._compress,
            self._read_frames(),
            workers=worker_count() if workers is None else workers,
        )
        self._state = "descriptor"

    def _read_frames(self) -> Iterator[bytes]:
        size = self._descriptor.frame_size
        while True:
            data = read_exactly(self._source, size)
            if data:
                yield data
            if len(data) < size:
                return

    def _compress(self, data: bytes) -> tuple[bytes | bytearray, int]:
        """Compress one frame; runs in a worker thread."""
        level, checksums = self._parameters
        if not checksums and _incompressible(data):
            # Under encryption (no checksums to compute) a frame that will not
            # shrink is stored as raw blocks: a copy instead of a compression try.
            return lsz1.raw_frame(data), len(data)
        frame: bytes = _compressor(level, checksums).compress(data)
        return frame, len(data)

    def _produce(self) -> bytes | bytearray | None:
        if self._state == "descriptor":
            self._state = "frames"
            return self._descriptor.to_bytes()
        if self._state == "frames":
            compressed = next(self._frames, None)
            if compressed is not None:
                frame, size = compressed
                # With checksums on, zstd ends the frame with the XXH64-low-32 of
                # its content, which the seekable format repeats in the table.
                checksum = (
                    int.from_bytes(frame[-4:], "little")
                    if self._descriptor.checksums
                    else None
                )
                self._entries.append(lsz1.FrameEntry(len(frame), size, checksum))
                return frame
            self._state = "table"
        if self._state == "table":
            self._state = "done"
            return lsz1.build_seek_table(self._entries, self._descriptor.checksums)
        return None


_local = threading.local()
#: Bytes of each frame compressed as a sample to spot incompressible data, and the
#: sample ratio above which the frame is stored raw.
SAMPLE_SIZE = 16 * 1024
RAW_THRESHOLD = 0.97


#: Samples spread over the first frame, all of which must fail to shrink for the
#: file to skip compression: one incompressible part at the start is not enough.
HEAD_SAMPLES = 4


def _incompressible(data: bytes | memoryview) -> bool:
    """Return whether a fast-level sample of ``data`` fails to shrink."""
    sample = memoryview(data)[:SAMPLE_SIZE]
    if len(sample) < SAMPLE_SIZE:
        return False
    compressed = _compressor(1, False).compress(sample)
    return len(compressed) >= RAW_THRESHOLD * len(sample)


def _incompressible_head(head: bytes) -> bool:
    """Return whether samples from the start to the end of ``head`` all fail to
    shrink (False for a head shorter than one sample)."""
    view = memoryview(head)
    last = len(view) - SAMPLE_SIZE
    if last < 0:
        return False
    starts = sorted({last * i // (HEAD_SAMPLES - 1) for i in range(HEAD_SAMPLES)})
    return all(_incompressible(view[start:]) for start in starts)


def _decompressor(window: int) -> zstd.ZstdDecompressor:
    """Return this thread's decompressor limited to ``window`` (not shared)."""
    cache: dict[int, zstd.ZstdDecompressor] = getattr(_local, "decompressors", {})
    _local.decompressors = cache
    decompressor = cache.get(window)
    if decompressor is None:
        decompressor = zstd.ZstdDecompressor(max_window_size=window)
        cache[window] = decompressor
    return decompressor


def _compressor(level: int, checksums: bool) -> zstd.ZstdCompressor:
    """Return this thread's compressor for these parameters (they are not shared)."""
    cache: dict[tuple[int, bool], zstd.ZstdCompressor] = getattr(_local, "cache", {})
    _local.cache = cache
    compressor = cache.get((level, checksums))
    if compressor is None:
        compressor = zstd.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=checksums
        )
        cache[(level, checksums)] = compressor
    return compressor


class DecompressingReader(BlockReader):
    """Read the plaintext of an LSZ1 stream; seekable when ``source`` is.

    Reading from the start walks the stream frame by frame (block headers give each
    frame's length without decompressing it), so no seek table is needed; a seek
    reads the table from the tail and decodes only the frame it lands in. Either
    way, consecutive frames are decompressed ahead by the workers while this thread
    reads (and, under encryption, decrypts) the next ones.
    """

    def __init__(
        self,
        source: ByteStream,
        *,
        file_name: str,
        policy: ReadPolicy,
        enclosed: bool = False,
        workers: int | None = None,
    ) -> None:
        """``enclosed``: the stream is the plaintext of an LSE1 object, so its
        payload can only be raw, and the reader starts from the seek table at its
        end instead of the descriptor at its start: a seek or ``size`` then needs
        nothing from the start of the object (read and checked with frame 0)."""
        super().__init__(source)
        # Set before anything can raise: close() runs even on a half-built reader.
        self._ahead: Iterator[bytes] | None = None
        self._ahead_next = -1
        self._file_name = file_name
        self._policy = policy
        self._workers = worker_count() if workers is None else workers
        # Streaming state: the next frame in stream order, where it starts, the
        # bytes read past it, and what the frames so far looked like.
        self._next_frame = 0
        self._stream_offset = lsz1.DESCRIPTOR_SIZE
        self._carry = b""
        self._seen: list[lsz1.FrameEntry] = [lsz1.FrameEntry(lsz1.DESCRIPTOR_SIZE, 0)]
        self._seen_total = 0
        self._table: list[lsz1.FrameEntry] | None = None
        self._offsets: list[int] = []
        self._cached_index = -1
        self._cached = memoryview(b"")
        self._descriptor_read = not enclosed
        if enclosed:
            table, self._descriptor = self._read_table(None)
            self._install_table(table)
            self._next_frame = -1  # frames are read by the table, not walked
        else:
            head = read_exactly(source, lsz1.DESCRIPTOR_SIZE)
            self._descriptor = lsz1.parse_descriptor(
                head, file_name=file_name, max_frame_log2=policy.max_frame_log2
            )
        self.block_size = self._descriptor.frame_size
        self.payload = self._descriptor.payload

    @property
    def size(self) -> int:
        return sum(entry.decompressed for entry in self._load_table())

    def close(self) -> None:
        self._stop_ahead()
        super().close()

    # -- the seek table ----------------------------------------------------------

    def _load_table(self) -> list[lsz1.FrameEntry]:
        """Return the data-frame entries, reading the table from the tail if needed.

        The source is put back where it was, so a streaming walk can go on.
        """
        if self._table is not None:
            return self._table
        resume = self._source.tell()
        table, _ = self._read_table(self._descriptor)
        self._install_table(table)
        self._source.seek(resume)
        return table

    def _read_table(
        self, descriptor: lsz1.Descriptor | None
    ) -> tuple[list[lsz1.FrameEntry], lsz1.Descriptor]:
        """Read and check the seek table at the tail, against ``descriptor`` or
        (None) the one it implies; return the data entries and that descriptor."""
        name = self._file_name
        footer, end = read_tail(self._source, lsz1.FOOTER_SIZE)
        if end < lsz1.DESCRIPTOR_SIZE + lsz1.table_frame_size(1, False):
            raise ContainerError(f"{name!r} is too short for an LSZ1 stream.")
        count, checksums = lsz1.parse_footer(
            footer, file_name=name, descriptor=descriptor
        )
        table_size = lsz1.table_frame_size(count, checksums)
        table_offset = end - table_size
        if table_offset < lsz1.DESCRIPTOR_SIZE:
            raise ContainerError(f"{name!r}: the LSZ1 seek table overruns the stream.")
        self._source.seek(table_offset)
        frame = read_exactly(self._source, table_size)
        if descriptor is None:
            descriptor = lsz1.implied_descriptor(
                frame,
                file_name=name,
                checksums=checksums,
                max_frame_log2=self._policy.max_frame_log2,
            )
        table = lsz1.parse_seek_table(
            frame, file_name=name, descriptor=descriptor, table_offset=table_offset
        )
        self.payload = descriptor.payload
        self._check_total(sum(entry.decompressed for entry in table))
        return table, descriptor

    def _check_descriptor(self, data: bytes) -> None:
        """Check the descriptor at the start against the one the table implied."""
        name = self._file_name
        read = lsz1.parse_descriptor(
            data, file_name=name, max_frame_log2=self._policy.max_frame_log2
        )
        if read.payload != lsz1.PAYLOAD_RAW:
            raise FormatError(f"{name!r} nests the same layer twice.")
        implied = self._descriptor
        frames = len(self._table or [])
        if read.checksums != implied.checksums or (
            read.frame_log2 != implied.frame_log2
            if frames > 1
            else read.frame_log2 < implied.frame_log2
        ):
            raise ContainerError(
                f"{name!r}: the LSZ1 descriptor disagrees with the seek table."
            )
        self._descriptor_read = True

    def _install_table(self, table: list[lsz1.FrameEntry]) -> None:
        self._table = table
        self._offsets = lsz1.frame_offsets(table) if table else []

    def _check_total(self, total: int) -> None:
        # The limit is on the file's plaintext, not on an encrypted payload inside.
        limit = self._policy.max_file_size
        if limit is not None and self.payload == PAYLOAD_RAW and total > limit:
            raise DecompressionLimitError(
                f"{self._file_name!r} expands to {total} bytes, over the "
                f"{limit}-byte limit of this storage."
            )

    # -- blocks ------------------------------------------------------------------

    def _block(self, index: int) -> memoryview:
        if index == self._cached_index:
            return self._cached
        if self._ahead is not None and index == self._ahead_next:
            data = next(self._ahead, b"")
            self._ahead_next += 1
        elif index == 0 and self._next_frame == 0:
            data = self._start_streaming()
        elif index == self._cached_index + 1:
            data = self._start_ahead(index)
        else:
            self._stop_ahead()
            data = self._random(index)
        self._cached_index, self._cached = index, memoryview(data)
        return self._cached

    def _frame(self, item: tuple[int, bytes, int]) -> bytes:
        """Decode ``(index, stored bytes, expected size)`` of one frame (any thread)."""
        index, data, expected = item
        return decompress_frame(
            data,
            file_name=self._file_name,
            index=index,
            frame_size=self.block_size,
            checksums=self._descriptor.checksums,
            expected=expected,
        )

    def _stored_frame(self, index: int) -> bytes:
        assert self._table is not None, "internal error: frame read without a table"
        entry = self._table[index]
        start = self._offsets[index]
        if index == 0 and not self._descriptor_read:
            start = 0  # the descriptor comes with the first frame: check it
        if self._source.tell() != start:
            self._source.seek(start)
        size = self._offsets[index] - start + entry.compressed
        data = read_exactly(self._source, size)
        if len(data) != size:
            raise ContainerError(f"{self._file_name!r} ends inside frame {index}.")
        if start != self._offsets[index]:
            self._check_descriptor(data[: lsz1.DESCRIPTOR_SIZE])
            data = data[lsz1.DESCRIPTOR_SIZE :]
        return data

    def _random(self, index: int) -> bytes:
        table = self._load_table()
        if index >= len(table):
            return b""
        return self._frame(
            (index, self._stored_frame(index), table[index].decompressed)
        )

    def _start_ahead(self, index: int) -> bytes:
        """Decode from ``index`` on with the workers, a window of frames ahead."""
        self._stop_ahead()
        table = self._load_table()
        if index >= len(table):
            return b""

        def stored() -> Iterator[tuple[int, bytes, int]]:
            for frame in range(index, len(table)):
                yield frame, self._stored_frame(frame), table[frame].decompressed

        self._ahead = ordered_map(self._frame, stored(), workers=self._workers)
        self._ahead_next = index + 1
        return next(self._ahead)

    def _start_streaming(self) -> bytes:
        """Decode from the first frame on, walking the stream (no table needed)."""
        self._stop_ahead()
        self._ahead = ordered_map(
            self._frame, self._walk_frames(), workers=self._workers
        )
        self._ahead_next = 1
        return next(self._ahead, b"")

    def _stop_ahead(self) -> None:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            ahead.close()  # type: ignore[attr-defined]
            self._ahead_next = -1

    # -- streaming, without the seek table -------------------------------------

    def _walk_frames(self) -> Iterator[tuple[int, bytes, int]]:
        """Yield each frame in stream order, then verify the table and the end."""
        limit = self.block_size
        while True:
            head = self._pull(len(lsz1.ZSTD_FRAME_MAGIC))
            if head != lsz1.ZSTD_FRAME_MAGIC:
                self._verify_streamed_end(head)
                return
            index = self._next_frame
            data, declared = self._walk_frame(index, head)
            self._seen.append(lsz1.FrameEntry(len(data), declared))
            self._seen_total += declared
            self._check_total(self._seen_total)
            self._stream_offset += len(data)
            self._next_frame += 1
            if declared < limit:
                # A short frame ends the data: verify the seek table and the end of
                # the stream before releasing it, or a cut or spliced stream would
                # read as a shorter, valid one.
                self._verify_streamed_end(self._pull(len(lsz1.ZSTD_FRAME_MAGIC)))
                yield index, data, declared
                return
            yield index, data, declared

    def _walk_frame(self, index: int, magic: bytes) -> tuple[bytes, int]:
        """Return the stored bytes of the frame starting with ``magic``, and the
        content size it declares, by walking its block headers (RFC 8878 3.1.1)."""
        name = self._file_name
        head = magic + self._pull(lsz1.MAX_FRAME_HEADER - len(magic))
        declared = check_frame_header(
            head,
            file_name=name,
            index=index,
            frame_size=self.block_size,
            checksums=self._descriptor.checksums,
        )
        header_size = zstd.frame_header_size(head)
        self._carry = head[header_size:] + self._carry
        parts = [head[:header_size]]
        size = header_size
        limit = lsz1.max_frame_bytes(self.block_size)
        last = False
        while not last:
            block = self._pull(3)
            if len(block) < 3:
                raise ContainerError(f"{name!r} ends inside frame {index}.")
            value = int.from_bytes(block, "little")
            last, kind, length = bool(value & 1), (value >> 1) & 3, value >> 3
            if kind == 3:
                raise ContainerError(f"{name!r}: frame {index} has a reserved block.")
            content = 1 if kind == 1 else length  # an RLE block stores one byte
            size += 3 + content
            if size > limit:
                raise DecompressionLimitError(
                    f"{name!r}: frame {index} is larger than any writer makes."
                )
            body = self._pull(content)
            if len(body) < content:
                raise ContainerError(f"{name!r} ends inside frame {index}.")
            parts += [block, body]
        if self._descriptor.checksums:
            checksum = self._pull(4)
            if len(checksum) < 4:
                raise ContainerError(f"{name!r} ends inside frame {index}.")
            parts.append(checksum)
        return b"".join(parts), declared

    def _verify_streamed_end(self, head: bytes) -> None:
        """Check the seek table against the frames walked, then EOF."""
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


def check_frame_header(
    head: bytes, *, file_name: str, index: int, frame_size: int, checksums: bool
) -> int:
    """Return the content size a zstd frame header declares, if the container allows.

    Raises:
        ContainerError: no valid header, or parameters the container forbids.
        DecompressionLimitError: no content size, or one over the frame size.
    """
    try:
        parameters = zstd.get_frame_parameters(head)
    except zstd.ZstdError as exc:
        raise ContainerError(
            f"{file_name!r}: frame {index} has no valid header."
        ) from exc
    declared: int = parameters.content_size
    if declared == zstd.CONTENTSIZE_UNKNOWN or not 1 <= declared <= frame_size:
        raise DecompressionLimitError(
            f"{file_name!r}: frame {index} declares {declared} bytes; frames hold 1 "
            f"to {frame_size} bytes."
        )
    if parameters.dict_id or parameters.has_checksum != checksums:
        raise ContainerError(f"{file_name!r}: frame {index} has unexpected parameters.")
    return declared


def decompress_frame(
    data: bytes,
    *,
    file_name: str,
    index: int,
    frame_size: int,
    checksums: bool,
    expected: int,
) -> bytes:
    """Decompress one whole stored frame and check it against its table entry.

    Safe to call from worker threads. Output is bounded: libzstd refuses to write
    past the declared content size, which must be at most ``frame_size``.

    Raises:
        ContainerError, DecompressionLimitError: see ``check_frame_header``; also a
            frame that disagrees with its entry.
    """
    declared = check_frame_header(
        data[: lsz1.MAX_FRAME_HEADER],
        file_name=file_name,
        index=index,
        frame_size=frame_size,
        checksums=checksums,
    )
    if declared != expected:
        raise ContainerError(
            f"{file_name!r}: frame {index} declares {declared} bytes, its seek-table "
            f"entry {expected}."
        )
    try:
        # One call (the size is declared and bounded above); extra bytes after the
        # frame, or a frame cut short, are errors.
        plain: bytes = _decompressor(frame_size).decompress(
            data, allow_extra_data=False
        )
    except zstd.ZstdError as exc:
        raise ContainerError(
            f"{file_name!r}: frame {index} is corrupt or does not fill its seek-table "
            f"entry ({exc})."
        ) from exc
    if len(plain) != declared:
        raise ContainerError(f"{file_name!r}: frame {index} does not match its size.")
    return plain
