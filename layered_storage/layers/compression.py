"""The zstd layer: writes and reads the LSZ1 seekable container.

Plaintext is cut into independent frames of ``2**frame_log2`` bytes (1 MiB), each
compressed on its own with its content size recorded, followed by a seek table. A
reader finds frames one way only, through the seek table read from the tail: a read
decodes the frame it lands in, and reading on decodes the next frames ahead.
Incompressible frames cost little: zstd detects them and stores raw blocks. Under
encryption, a file whose first frame will not shrink skips the container altogether.
"""

from __future__ import annotations

import io
import mimetypes
import posixpath
import threading
from collections.abc import Iterable, Iterator

import zstandard as zstd

from layered_storage.buffers import BufferPool
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
    fill_from,
    memory_of,
    read_exactly,
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
#: Under encryption, files shorter than this are stored without compression.
TINY = 256


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
        # frame will not shrink is handed on as it is, with no container to build,
        # and so is a file too short for its container to pay: its descriptor and
        # seek table (57 bytes) outweigh what zstd saves on under ``TINY`` bytes of
        # text, and would cost it a layer to read through on every open.
        if len(head) < TINY:
            return False
        if SAMPLE_SIZE <= len(head) <= WHOLE_HEAD and len(head) < self.head_size:
            # The whole file, which the samples would cover whole anyway: it is
            # compressed once, as its one frame will be, and that frame is kept
            # for this thread's save to use (one frame: compressed in this thread).
            frame = _compressor(self.level, False).compress(head)
            if len(frame) >= RAW_THRESHOLD * len(head):
                return False
            _local.head_frame = (head, self.level, frame)
            return True
        return not _incompressible_head(head)

    def encode(
        self, source: ByteStream, context: FileContext, *, payload: int, outermost: bool
    ) -> ProducerStream:
        # Under an AEAD every byte is authenticated, so per-frame checksums would only
        # cost; outermost, they are the only integrity check. A skipped file that is
        # outermost still gets the container (it stays self-describing), framed at
        # zstd's fastest setting.
        # Not outermost, the pipeline already skipped the layer if it did not apply.
        level = self.level if not outermost or self.applies_to(context) else STORE_LEVEL
        return CompressingStream(
            source,
            level=level,
            frame_log2=self.frame_log2,
            checksums=outermost,
            payload=payload,
            # Not outermost, the pipeline asked ``applies_to_head`` first: the
            # first frame was judged worth compressing from samples across it.
            head_judged=not outermost,
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
        head_judged: bool = False,
        workers: int | None = None,
    ) -> None:
        """``head_judged``: the first frame was already found to shrink (see
        ``ZstdLayer.applies_to_head``), so it is not sampled again."""
        super().__init__()
        self._source = source
        self._descriptor = lsz1.Descriptor(
            frame_log2=frame_log2, checksums=checksums, payload=payload
        )
        self._parameters = (level, checksums)
        self._table = lsz1.SeekTableWriter(checksums)
        self._table_pieces: Iterator[bytes | memoryview] | None = None
        self._head_judged = head_judged
        self._frames = ordered_map(
            self._compress,
            self._read_frames(),
            workers=workers,
            # Compressing here too would need this thread's own context (several
            # MiB at level 3) and gain nothing: the workers already fill the cores.
            steal=False,
        )
        self._state = "descriptor"

    def _read_frames(self) -> Iterator[tuple[bytes, bool]]:
        """Yield each frame and whether it still needs sampling."""
        size = self._descriptor.frame_size
        frames = 0
        while True:
            data = read_exactly(self._source, size)
            if data:
                if frames == lsz1.MAX_FRAMES - 1:
                    # Readers refuse longer seek tables: fail the save, not the read.
                    raise ValueError(
                        f"A file compressed in frames of {size} bytes may hold at "
                        f"most {frames} frames ({frames * size} bytes); store larger "
                        "files with a larger zstd frame_log2."
                    )
                yield data, not (frames == 0 and self._head_judged)
                frames += 1
            if len(data) < size:
                return

    def _compress(self, frame: tuple[bytes, bool]) -> tuple[bytes | bytearray, int]:
        """Compress one frame; runs in a worker thread."""
        data, sample = frame
        level, checksums = self._parameters
        if not sample:
            kept = getattr(_local, "head_frame", None)
            _local.head_frame = None
            if kept is not None and kept[0] is data and kept[1] == level:
                compressed_head: bytes = kept[2]  # see ZstdLayer.applies_to_head
                return compressed_head, len(data)
        if sample and not checksums and _incompressible(data):
            # Under encryption (no checksums to compute) a frame that will not
            # shrink is stored as raw blocks: a copy instead of a compression try.
            return lsz1.raw_frame(data), len(data)
        compressed: bytes = _compressor(level, checksums).compress(data)
        return compressed, len(data)

    def _produce(self) -> bytes | bytearray | memoryview | None:
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
                    else 0
                )
                self._table.add(len(frame), size, checksum)
                return frame
            self._state = "table"
            self._table_pieces = self._table.pieces()
        if self._state == "table":
            assert self._table_pieces is not None, "internal error: no table pieces"
            piece = next(self._table_pieces, None)
            if piece is not None:
                return piece
            self._state = "done"
        return None


_local = threading.local()
#: Bytes of each frame compressed as a sample to spot incompressible data, and the
#: sample ratio above which the frame is stored raw.
SAMPLE_SIZE = 16 * 1024
RAW_THRESHOLD = 0.97


#: Samples spread over the first frame, all of which must fail to shrink for the
#: file to skip compression: one incompressible part at the start is not enough.
HEAD_SAMPLES = 4
#: A whole file no larger than this is judged by compressing it whole instead, as
#: it will be stored (zstd gives up on incompressible data about as fast as the
#: samples would take), and the frame made is kept.
WHOLE_HEAD = HEAD_SAMPLES * SAMPLE_SIZE


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
    """Read the plaintext of an LSZ1 stream; ``source`` must be seekable.

    Frames are found one way only: through the seek table, read from the tail and
    checked when the reader is made. A read decodes the frame it lands in; a read
    that goes on into the next frame has the following ones decompressed ahead by
    the workers while this thread reads (and, under encryption, decrypts) them.
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
        payload can only be raw, and the descriptor the seek table implies stands in
        for the one at the start until frame 0 is read: a seek or ``size`` then needs
        nothing from the start of the object."""
        super().__init__(source)
        # Set before anything can raise: close() runs even on a half-built reader.
        self._ahead: Iterator[Decoded] | None = None
        self._ahead_next = -1
        self._cached_index = -1
        self._cached = memoryview(b"")
        self._cached_buffer: bytearray | None = None
        #: Where the source is, so moving it needs no ``tell()``; -1: unknown.
        self._source_offset = -1
        #: The stream itself when it is all in memory: frames are sliced from it.
        self._memory = memory_of(source)
        self._file_name = file_name
        self._policy = policy
        descriptor = None
        if not enclosed:
            source.seek(0)
            descriptor = lsz1.parse_descriptor(
                read_exactly(source, lsz1.DESCRIPTOR_SIZE),
                file_name=file_name,
                max_frame_log2=policy.max_frame_log2,
            )
        self._table, self._descriptor = lsz1.read_seek_table(
            self._read_at,
            source.seek(0, io.SEEK_END),
            file_name=file_name,
            descriptor=descriptor,
            max_frame_log2=policy.max_frame_log2,
        )
        self._descriptor_checked = not enclosed
        self._size_checked = enclosed
        self.block_size = self._descriptor.frame_size
        self.payload = self._descriptor.payload
        self._check_total(self._table.size)
        # At most AHEAD_BYTES of plaintext in flight, whatever the frame size.
        window = AHEAD_BYTES // (2 * self.block_size)
        if self._table.frames <= 1:
            workers = 0  # nothing to decode ahead of one frame
        elif workers is None:
            workers = worker_count()
        self._workers = min(workers, window)
        # Decoded and stored frames reuse buffers: the frames in flight, the one
        # in hand and the one being read.
        keep = 2 * self._workers + 2
        self._plain_buffers = BufferPool(self.block_size, keep)
        self._stored_buffers = BufferPool(0, keep)

    @property
    def size(self) -> int:
        """Return the plaintext length, once the last frame's own header agrees
        with the table (a length that ``read`` would then refuse is never given).

        Inside LSE1 the table is authenticated: only a key holder could make it
        disagree, and the check would cost a second request on S3, so it is skipped.
        """
        if not self._size_checked:
            self._check_last_frame()
            self._size_checked = True
        return self._table.size

    def _check_last_frame(self) -> None:
        """Check the content size the last frame declares against its entry.

        Raises:
            ContainerError, DecompressionLimitError: they disagree, or the header is
                not a valid frame header.
        """
        table = self._table
        last = table.frames - 1
        if last < 0:
            return
        head = self._read_at(table.offset(last), lsz1.MAX_FRAME_HEADER)
        declared = check_frame_header(
            head[: table.compressed(last)],
            file_name=self._file_name,
            index=last,
            frame_size=self.block_size,
            checksums=self._descriptor.checksums,
        )
        if declared != table.decompressed(last):
            raise ContainerError(
                f"{self._file_name!r}: frame {last} declares {declared} bytes, its "
                f"seek-table entry {table.decompressed(last)}."
            )

    def close(self) -> None:
        self._stop_ahead()
        super().close()

    def _read_at(self, offset: int, size: int) -> bytes:
        if self._memory is not None:
            return bytes(self._memory[offset : offset + size])
        if self._source_offset != offset:
            self._source.seek(offset)
        data = read_exactly(self._source, size)
        self._source_offset = offset + len(data)
        return data

    def _check_descriptor(self, data: bytes) -> None:
        """Check the descriptor at the start against the one the table implied."""
        name = self._file_name
        read = lsz1.parse_descriptor(
            data, file_name=name, max_frame_log2=self._policy.max_frame_log2
        )
        if read.payload != lsz1.PAYLOAD_RAW:
            raise FormatError(f"{name!r} nests the same layer twice.")
        implied = self._descriptor
        if read.checksums != implied.checksums or (
            read.frame_log2 != implied.frame_log2
            if self._table.frames > 1
            else read.frame_log2 < implied.frame_log2
        ):
            raise ContainerError(
                f"{name!r}: the LSZ1 descriptor disagrees with the seek table."
            )
        self._descriptor_checked = True

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
        if index >= self._table.frames:
            # The end: the table was checked to describe every frame up to itself,
            # and to end the stream.
            return memoryview(b"")
        if self._ahead is not None and index == self._ahead_next:
            decoded = self._next_ahead()
        elif index == self._cached_index + 1:
            decoded = self._start_ahead(index)
        else:
            self._stop_ahead()
            decoded = self._decode(self._stored_frame(index, self._table.offset(index)))
        previous = self._cached_buffer
        self._cached_index = index
        self._cached, self._cached_buffer = decoded
        if previous is not None:
            self._plain_buffers.give(previous)
        return self._cached

    def readall(self) -> bytes:
        """Return the rest of the plaintext, decoding frames straight into it.

        From the start of a frame not decoded yet: one frame is returned as
        zstd made it (no copy); more are decoded each into its place in a result
        allocated once, by the workers and this thread, with no copy at all.
        """
        index, offset = divmod(self._position, self.block_size)
        remaining = self.size - self._position
        if (
            offset
            or remaining <= 0
            or index == self._cached_index
            or index >= self._table.frames
        ):
            return super().readall()
        self._stop_ahead()
        table = self._table
        if index == table.frames - 1:
            work = self._stored_frame(index, table.offset(index))
            try:
                plain = self._decompress(work)
            finally:
                self._give_stored(work[4])
            self._position += len(plain)
            return plain
        result = io.BytesIO()
        result.seek(remaining - 1)
        result.write(b"\0")
        with result.getbuffer() as view:
            places = (
                view[start : start + table.decompressed(number)]
                for number, start in zip(
                    range(index, table.frames),
                    range(0, remaining, self.block_size),
                    strict=False,
                )
            )
            for count in ordered_map(
                self._decode_into,
                zip(self._stored_frames(index), places, strict=False),
                workers=self._workers,
            ):
                self._position += count
        if self._position != table.size:
            raise AssertionError("internal error: frames decoded short of the size")
        return result.getvalue()

    def _start_ahead(self, index: int) -> Decoded:
        """Decode from ``index`` on, with the workers a window of frames ahead."""
        self._stop_ahead()
        self._ahead = ordered_map(
            self._decode, self._stored_frames(index), workers=self._workers
        )
        self._ahead_next = index
        return self._next_ahead()

    def _next_ahead(self) -> Decoded:
        assert self._ahead is not None, "internal error: no read-ahead"
        try:
            decoded = next(self._ahead, None)
        except BaseException:
            self._stop_ahead()  # a failed frame is not skipped by the next read
            raise
        if decoded is None:
            raise AssertionError("internal error: read-ahead ended before the table")
        self._ahead_next += 1
        return decoded

    def _stop_ahead(self) -> None:
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            ahead.close()  # type: ignore[attr-defined]
            self._ahead_next = -1

    def _stored_frames(self, first: int) -> Iterator[FrameWork]:
        """Yield the stored frames from ``first`` on, in order (this thread)."""
        table = self._table
        offset = table.offset(first)
        for index in range(first, table.frames):
            yield self._stored_frame(index, offset)
            offset += table.compressed(index)

    def _stored_frame(self, index: int, offset: int) -> FrameWork:
        """Read frame ``index``, stored at ``offset``, into a buffer of the pool;
        with frame 0, the descriptor too when only the table's implied one was
        known."""
        table = self._table
        start = 0 if index == 0 and not self._descriptor_checked else offset
        size = offset - start + table.compressed(index)
        buffer: bytearray | None = None
        if self._memory is not None:
            data = self._memory[start : start + size]
            count = len(data)
        else:
            buffer = self._stored_buffers.take(size)
            data = memoryview(buffer)[:size]
            if self._source_offset != start:
                self._source.seek(start)
            count = fill_from(self._source, data)
            self._source_offset = start + count
        if count != size:
            self._give_stored(buffer)
            raise ContainerError(
                f"{self._file_name!r} ends inside frame {index}: it changed while "
                "being read."
            )
        if start != offset:
            self._check_descriptor(bytes(data[: lsz1.DESCRIPTOR_SIZE]))
            data = data[lsz1.DESCRIPTOR_SIZE :]
        return index, data, table.decompressed(index), table.checksum(index), buffer

    def _give_stored(self, buffer: bytearray | None) -> None:
        """Give a stored frame's buffer back (None: it was sliced from memory)."""
        if buffer is not None:
            self._stored_buffers.give(buffer)

    def _decode(self, work: FrameWork) -> Decoded:
        """Decode one stored frame into a buffer of the pool (any thread)."""
        buffer = self._plain_buffers.take(self.block_size)
        try:
            count = self._decode_into((work, memoryview(buffer)))
        except BaseException:
            self._plain_buffers.give(buffer)
            raise
        return memoryview(buffer)[:count], buffer

    def _decode_into(self, task: tuple[FrameWork, memoryview]) -> int:
        """Decode one stored frame into ``out`` (any thread); give its stored
        buffer back to the pool. Return the count, the frame's whole size."""
        work, out = task
        index, data, expected, checksum, stored = work
        try:
            return decompress_frame_into(
                data,
                out,
                file_name=self._file_name,
                index=index,
                frame_size=self.block_size,
                checksums=self._descriptor.checksums,
                expected=expected,
                checksum=checksum,
            )
        finally:
            self._give_stored(stored)

    def _decompress(self, work: FrameWork) -> bytes:
        """Decode one stored frame into bytes of its own."""
        index, data, expected, checksum, _ = work
        return decompress_frame(
            data,
            file_name=self._file_name,
            index=index,
            frame_size=self.block_size,
            checksums=self._descriptor.checksums,
            expected=expected,
            checksum=checksum,
        )


#: A frame to decode: its index, stored bytes, table size and table checksum, and
#: the pool's buffer that holds the stored bytes (None: they are in memory).
FrameWork = tuple[int, memoryview, int, int | None, bytearray | None]
#: A decoded frame: its plaintext, in a buffer of the pool.
Decoded = tuple[memoryview, bytearray]
#: Plaintext the read-ahead may hold: at most 2 x workers frames, fewer large ones.
AHEAD_BYTES = 16 * 1024 * 1024


def check_frame_header(
    head: bytes | memoryview,
    *,
    file_name: str,
    index: int,
    frame_size: int,
    checksums: bool,
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
    data: bytes | memoryview,
    *,
    file_name: str,
    index: int,
    frame_size: int,
    checksums: bool,
    expected: int,
    checksum: int | None = None,
) -> bytes:
    """Decompress one whole stored frame and check it against its table entry:
    ``expected`` bytes and, with checksums, the table's ``checksum``.

    Safe to call from worker threads. Output is bounded: libzstd refuses to write
    past the declared content size, which must be at most ``frame_size``.

    Raises:
        ContainerError, DecompressionLimitError: see ``check_frame_header``; also a
            frame that disagrees with its entry.
    """
    declared = _check_frame(
        data,
        file_name=file_name,
        index=index,
        frame_size=frame_size,
        checksums=checksums,
        expected=expected,
        checksum=checksum,
    )
    try:
        # One call (the size is declared and bounded above); extra bytes after the
        # frame, or a frame cut short, are errors.
        plain: bytes = _decompressor(frame_size).decompress(
            data, allow_extra_data=False
        )
    except zstd.ZstdError as exc:
        raise _corrupt(file_name, index, exc) from exc
    if len(plain) != declared:
        raise ContainerError(f"{file_name!r}: frame {index} does not match its size.")
    return plain


def decompress_frame_into(
    data: bytes | memoryview,
    out: memoryview,
    *,
    file_name: str,
    index: int,
    frame_size: int,
    checksums: bool,
    expected: int,
    checksum: int | None = None,
) -> int:
    """Decompress one whole stored frame into ``out``, as ``decompress_frame``
    checks it; return the count (the declared size, which ``out`` must hold).

    Raises:
        ContainerError, DecompressionLimitError: as ``decompress_frame``.
    """
    declared = _check_frame(
        data,
        file_name=file_name,
        index=index,
        frame_size=frame_size,
        checksums=checksums,
        expected=expected,
        checksum=checksum,
    )
    if len(out) < declared:
        raise AssertionError("internal error: a frame's buffer is too small")
    # ``decompress`` refuses extra bytes after the frame; a stream reader would
    # leave them unread, so the frame's own length is checked first.
    if frame_length(data, checksums) != len(data):
        raise _corrupt(file_name, index, "its blocks do not end where its entry does")
    try:
        # The whole frame is there and ``out`` holds its content size: libzstd
        # decodes it in one pass, straight into ``out``, checksum included.
        reader = _decompressor(frame_size).stream_reader(data, read_across_frames=False)
        count: int = reader.readinto(out[:declared])
    except zstd.ZstdError as exc:
        raise _corrupt(file_name, index, exc) from exc
    if count != declared:
        raise ContainerError(f"{file_name!r}: frame {index} does not match its size.")
    return count


def _check_frame(
    data: bytes | memoryview,
    *,
    file_name: str,
    index: int,
    frame_size: int,
    checksums: bool,
    expected: int,
    checksum: int | None,
) -> int:
    """Return the size a stored frame declares, once it agrees with its entry.

    Raises:
        ContainerError, DecompressionLimitError: see ``check_frame_header``; also a
            size or checksum that disagrees with the entry.
    """
    if data[: len(lsz1.ZSTD_FRAME_MAGIC)] != lsz1.ZSTD_FRAME_MAGIC:
        raise ContainerError(f"{file_name!r}: frame {index} is not a zstd frame.")
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
    if checksum is not None and int.from_bytes(data[-4:], "little") != checksum:
        raise ContainerError(
            f"{file_name!r}: frame {index} ends with another checksum than its "
            "seek-table entry."
        )
    return declared


def frame_length(data: bytes | bytearray | memoryview, checksum: bool) -> int:
    """Return the length of the zstd frame that ``data`` starts with, from its
    block headers (RFC 8878 3.1.1.2), or -1 if its blocks run past the end.

    ``checksum``: the frame header sets Content_Checksum_Flag (4 bytes follow the
    last block). The header itself must already have been checked.
    """
    position: int = zstd.frame_header_size(data)
    end = len(data)
    while position + 3 <= end:
        header = int.from_bytes(data[position : position + 3], "little")
        # Block_Type 1 (RLE) stores one byte, whatever Block_Size regenerates.
        position += 3 + (1 if (header >> 1) & 3 == 1 else header >> 3)
        if header & 1:  # Last_Block
            return position + 4 if checksum else position
    return -1


def _corrupt(file_name: str, index: int, why: object) -> ContainerError:
    return ContainerError(
        f"{file_name!r}: frame {index} is corrupt or does not fill its seek-table "
        f"entry ({why})."
    )
