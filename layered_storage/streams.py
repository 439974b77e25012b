"""Stream shapes shared by every layer: producing encoders and seekable block decoders.

An encoder is a ``ProducerStream``: a non-seekable reader that fills every ``read(n)``
exactly until EOF, counts what it produced in ``tell()``, and has no ``name``,
``fileno`` or ``temporary_file_path``. That one shape suits every inner backend
(FileSystemStorage iterates chunks, s3transfer needs exact-size parts, Azure calls
``seek(0)`` at position 0, GCS uses ``tell()``).

A decoder is a ``BlockReader``: plaintext comes in fixed-size blocks (LSE1 segments,
LSZ1 frames), only the last one short, so any offset maps to one block and random
access decodes just the blocks a read touches.
"""

from __future__ import annotations

import io
import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO, TypeAlias

#: Anything the layers read bytes from: a caller's file, Django's ``File`` wrappers'
#: underlying objects, or another layer's stream.
ByteStream: TypeAlias = BinaryIO | io.RawIOBase | io.BufferedIOBase


def read_tail(source: ByteStream, size: int) -> tuple[bytes, int]:
    """Return the last ``size`` bytes of seekable ``source`` (all of a shorter one)
    and its length; the position is left at the end."""
    end = source.seek(0, io.SEEK_END)
    source.seek(max(0, end - size))
    return read_exactly(source, size), end


def read_exactly(source: ByteStream, size: int) -> bytes:
    """Return ``size`` bytes from ``source``, fewer only at EOF, never more.

    Raises:
        AssertionError: ``source`` returned more than it was asked for. Callers
            count on it: a longer encryption batch would be sealed over segment
            numbers the next batch seals again (nonce reuse), a longer zstd frame
            stored where readers refuse it. Content files that do this are cut
            to size by ``ContentReader`` before any layer reads them.
    """
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        part = source.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    if missing < 0:
        raise AssertionError(
            f"internal error: a read of {size} bytes returned {size - missing}"
        )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def fill_from(source: ByteStream, buffer: bytearray | memoryview) -> int:
    """Fill ``buffer`` from ``source``; return the count, smaller only at EOF."""
    view = memoryview(buffer).cast("B")
    filled = 0
    readinto = getattr(source, "readinto", None)
    while filled < len(view):
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            chunk = source.read(len(view) - filled)
            count = len(chunk)
            view[filled : filled + count] = chunk
        if not count:
            break
        filled += count
    return filled


class PrefixedStream(io.RawIOBase):
    """Read ``head``, bytes already taken from ``rest``, then what ``rest`` has left.

    A writer can look at the start of a file before choosing how to encode it,
    without reading the file twice; a first ``read`` as large as ``head`` gets
    ``head`` itself, not a copy. Closing it leaves ``rest`` open.
    """

    def __init__(self, head: bytes, rest: ByteStream) -> None:
        super().__init__()
        self._head = head
        self._offset = 0
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        left = len(self._head) - self._offset
        if not left:
            return fill_from(self._rest, buffer)
        view = memoryview(buffer).cast("B")
        count = min(left, len(view))
        view[:count] = memoryview(self._head)[self._offset : self._offset + count]
        self._advance(count)
        return count

    def read(self, size: int | None = -1) -> bytes:
        left = len(self._head) - self._offset
        if not left:
            return self._rest.read(-1 if size is None else size)
        if size is None or size < 0:
            return self.readall()
        if self._offset == 0 and size >= left:
            part = self._head
        else:
            part = self._head[self._offset : self._offset + size]
        self._advance(len(part))
        return part

    def _advance(self, count: int) -> None:
        self._offset += count
        if self._offset == len(self._head):
            self._head, self._offset = b"", 0  # free it as soon as it is read


class MemoryStream(io.BytesIO):
    """A stream over bytes held whole in memory, ``data``: a decoder reading it
    slices them instead of reading copies."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)  # shared, not copied, until written to
        self.data = data


def memory_of(source: ByteStream) -> memoryview | None:
    """Return the bytes ``source`` holds whole in memory, or None if it reads them."""
    return memoryview(source.data) if isinstance(source, MemoryStream) else None


#: A stored object this small is read whole when opened, in one call (on an object
#: store it is all in the opening request's tail already), and decoded from memory.
WHOLE_READ = 256 * 1024


class WholeStream(MemoryStream):
    """All the bytes of a small stored object (``data``), read at once; the stream
    they came from is closed at once, and what it knew of them (``last_modified``)
    kept. ``source`` may also be the bytes themselves, read by other means."""

    def __init__(self, source: ByteStream | bytes, size: int) -> None:
        if isinstance(source, bytes):
            super().__init__(source[:size])
            self.last_modified = None
            return
        source.seek(0)
        try:
            super().__init__(read_exactly(source, size))
            self.last_modified = getattr(source, "last_modified", None)
        finally:
            source.close()


class ProducerStream(io.RawIOBase):
    """A non-seekable reader whose bytes come from ``_produce()``, chunk by chunk."""

    #: How many leading output bytes ``head`` keeps.
    HEAD_SIZE = 64

    def __init__(self) -> None:
        super().__init__()
        self._pending = memoryview(b"")
        self._produced = 0
        self._finished = False
        #: The first output bytes, kept as they are produced (even those a failed
        #: read never returned), so a failed save can recognise its own partial file.
        self.head = b""

    @abstractmethod
    def _produce(self) -> bytes | bytearray | memoryview | None:
        """Return the next chunk of output (may be empty), or None at the end.

        The chunk is not changed afterwards: ``chunks`` hands it on as it is.
        """

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._produced

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # Backends rewind before reading (Azure, File.chunks): allow the no-op only.
        if (whence == io.SEEK_SET and offset == self._produced) or (
            whence == io.SEEK_CUR and offset == 0
        ):
            return self._produced
        raise io.UnsupportedOperation("an encoding stream only moves forward")

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._pending and not self._pull_chunk():
                break
            count = min(len(self._pending), len(view) - filled)
            view[filled : filled + count] = self._pending[:count]
            self._pending = self._pending[count:]
            filled += count
        self._produced += filled
        return filled

    def read(self, size: int | None = -1) -> bytes:
        """Return up to ``size`` bytes (exactly ``size`` until the end).

        Slices the produced chunks directly: one copy, where ``RawIOBase.read`` would
        fill a scratch buffer and copy that again; a whole ``bytes`` chunk is
        returned as it is, with no copy at all.
        """
        if size is None or size < 0:
            return self.readall()
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            if not self._pending and not self._pull_chunk():
                break
            whole = self._pending.obj
            if (
                type(whole) is bytes
                and len(whole) == len(self._pending)
                and wanted >= len(whole)
            ):
                part = whole
            else:
                part = bytes(self._pending[:wanted])
            self._pending = self._pending[len(part) :]
            parts.append(part)
            wanted -= len(part)
        self._produced += size - wanted
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _pull_chunk(self) -> bool:
        """Make the next produced chunk pending; return False at the end."""
        while not self._pending:
            if self._finished:
                return False
            chunk = self._produce()
            if chunk is None:
                self._finished = True
                return False
            self._pending = memoryview(chunk).cast("B")
            if len(self.head) < self.HEAD_SIZE:
                self.head += bytes(self._pending[: self.HEAD_SIZE - len(self.head)])
        return True

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(1024 * 1024):
            chunks.append(chunk)
        return b"".join(chunks)

    def chunks(self) -> Iterator[bytes | bytearray]:
        """Yield the rest of the output in the pieces it is produced in, any size.

        Saves the copy ``read`` makes to cut exact sizes. The first piece is
        ``bytes`` (Django's storages pick the file mode by the type of the first
        chunk), and a piece is never changed after it is yielded.
        """
        if self._pending:
            piece = bytes(self._pending)
            self._pending = memoryview(b"")
            self._produced += len(piece)
            yield piece
        first = self._produced == 0
        while not self._finished:
            chunk = self._produce()
            if chunk is None:
                self._finished = True
                return
            if not chunk:
                continue
            if first or isinstance(chunk, memoryview):
                chunk = bytes(chunk)
                first = False
            if len(self.head) < self.HEAD_SIZE:
                self.head += bytes(chunk[: self.HEAD_SIZE - len(self.head)])
            self._produced += len(chunk)
            yield chunk


class SeekableReader(io.RawIOBase):
    """A readable, seekable stream of known ``size``: seeking only moves a position."""

    def __init__(self) -> None:
        super().__init__()
        self._position = 0

    @property
    @abstractmethod
    def size(self) -> int:
        """Return the length of the stream (verifying whatever that requires)."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._position + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._position = target
        return target


class BlockReader(SeekableReader):
    """A seekable reader over plaintext stored as fixed-size blocks.

    Subclasses give ``block_size``, ``size`` and ``_block(index)``; this class maps
    offsets to blocks, so ``seek`` is free and a read decodes only what it touches.
    """

    block_size: int

    def __init__(self, source: ByteStream) -> None:
        super().__init__()
        self._source = source

    def close(self) -> None:
        # A decoder owns the stored stream it reads: closing one closes the chain.
        if not self.closed:
            super().close()
            self._source.close()

    @abstractmethod
    def _block(self, index: int) -> memoryview:
        """Return the plaintext of block ``index``, empty past the last block.

        An empty result must only come after the end of the data was verified.
        """

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            index, offset = divmod(self._position, self.block_size)
            block = self._block(index)
            if offset >= len(block):  # only a short (final) or empty block ends data
                break
            count = min(len(block) - offset, len(view) - filled)
            view[filled : filled + count] = block[offset : offset + count]
            filled += count
            self._position += count
        return filled

    def readall(self) -> bytes:
        """Return the rest of the plaintext with as few copies as it allows.

        What lies in one block is that block: a decoded frame is handed over as
        it is (no copy at all for a small compressed file). Anything longer is
        decoded straight into a result allocated once at its final size:
        ``BytesIO.getvalue()`` hands over its buffer without a copy when it is
        exactly full, so a whole-file read costs one copy of the file, not a list
        of pieces and their join.
        """
        remaining = max(self.size - self._position, 0)
        index, offset = divmod(self._position, self.block_size)
        if not remaining:
            return b""
        if offset + remaining <= self.block_size:
            block = self._block(index)
            if len(block) < offset + remaining:
                raise AssertionError("internal error: a block shorter than the size")
            whole = block.obj if offset == 0 and remaining == len(block) else None
            self._position += remaining
            if isinstance(whole, bytes) and len(whole) == remaining:
                return whole
            return bytes(block[offset : offset + remaining])
        result = io.BytesIO()
        result.seek(remaining - 1)
        result.write(b"\0")
        with result.getbuffer() as view:
            filled = self.readinto(view)
        if filled != remaining:
            raise AssertionError(
                f"internal error: {filled} of {remaining} bytes decoded"
            )
        return result.getvalue()


class PipeStream(ProducerStream):
    """Bytes written by one thread, read as a stream by another, a few chunks between.

    The writing thread calls ``put`` for each chunk, then ``finish`` (or ``abort``);
    the reading thread reads it like any other layer input. At most ``capacity``
    bytes wait (one chunk more, if it is larger), so a writer faster than the reader
    waits for it and memory stays bounded. When the reader stops (done or failed)
    it calls ``hang_up``; a writer still putting then gets the reader's error
    instead of waiting forever.
    """

    def __init__(self, capacity: int = 4 * 1024 * 1024) -> None:
        super().__init__()
        self._capacity = capacity
        self._queued = 0
        self._queue: deque[bytes] = deque()
        self._condition = threading.Condition()
        self._ended = False
        self._abort_reason: BaseException | None = None
        self._hung_up = False
        self._reader_error: BaseException | None = None

    def put(self, chunk: bytes) -> None:
        """Queue ``chunk`` for the reader, waiting while the queue is full.

        Raises:
            BaseException: the reader's error, if it stopped before the end.
            BrokenPipeError: the reader stopped, or the pipe was closed.
        """
        with self._condition:
            while self._queue and self._queued >= self._capacity and not self._hung_up:
                self._condition.wait()
            if self._hung_up:
                if self._reader_error is not None:
                    raise self._reader_error
                raise BrokenPipeError("the reading side of the pipe is gone")
            if self._ended:
                raise BrokenPipeError("the pipe was closed")
            self._queue.append(chunk)
            self._queued += len(chunk)
            self._condition.notify_all()

    def finish(self) -> None:
        """Tell the reader that no more chunks come: it reads to the end."""
        with self._condition:
            self._ended = True
            self._condition.notify_all()

    def abort(self, reason: BaseException) -> None:
        """Make the reader's next read raise ``reason`` (the writer gave up)."""
        with self._condition:
            self._ended = True
            self._abort_reason = reason
            self._queue.clear()
            self._queued = 0
            self._condition.notify_all()

    def hang_up(self, error: BaseException | None = None) -> None:
        """Called by the reader when it stops; ``error`` is why, if it failed."""
        with self._condition:
            self._hung_up = True
            self._reader_error = error
            self._queue.clear()
            self._queued = 0
            self._condition.notify_all()

    def _produce(self) -> bytes | None:
        with self._condition:
            while not self._queue and not self._ended:
                self._condition.wait()
            if self._abort_reason is not None:
                raise self._abort_reason
            if not self._queue:
                return None
            chunk = self._queue.popleft()
            self._queued -= len(chunk)
            self._condition.notify_all()
            return chunk
