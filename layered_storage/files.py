"""LayeredFile: the streaming ``File`` that ``LayeredStorage.open`` returns.

Opened for reading, it decodes as it is read, through a buffered reader over the
layer chain, so the plaintext is never held whole; it seeks by decoding only the
blocks it lands in. Opened for writing (``"wb"``, ``"w"``), it encodes as it is
written: a save runs in a thread of its own, fed through a small pipe, and the new
version replaces the old one only when the file is closed. An exception inside its
``with`` block, or a file dropped without ``close()``, stores nothing. ``name`` is
the storage name and ``size`` the plaintext length.
"""

from __future__ import annotations

import contextlib
import io
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from django.core.files.base import File

from layered_storage.streams import BlockReader, ByteStream, PipeStream, ProducerStream

#: What a readable file buffers for small reads. Reads this large or larger go
#: straight to the decoder, which copies each byte once, from the decoded block
#: into the caller's result (a larger buffer would copy everything twice).
READ_BUFFER = 64 * 1024
#: A writable file coalesces small writes into pieces of this size.
WRITE_PIECE = 64 * 1024
#: A file written no larger than this is stored on close, in the calling thread.
SMALL_FILE = 1024 * 1024


def is_write_mode(mode: str) -> bool:
    """Return whether ``mode`` opens for writing; refuse modes that cannot work.

    Raises:
        ValueError: an update, append or exclusive mode, or an unknown character.
    """
    if mode == "rb":  # what nearly every open asks
        return False
    if not set(mode) <= set("rwbt") or len(set(mode)) != len(mode):
        raise ValueError(
            f"LayeredStorage cannot open files in mode {mode!r}: 'r+', 'a', 'x' and "
            "other update modes cannot work on authenticated, compressed data (one "
            "changed byte means encoding the whole file again). Read the file and "
            "write a new version with mode 'wb' or storage.save()."
        )
    if ("r" in mode) == ("w" in mode) or ("b" in mode and "t" in mode):
        raise ValueError(f"invalid mode {mode!r}: use 'rb', 'r', 'wb' or 'w'.")
    return "w" in mode


#: ``(name, plaintext stream) -> None``: store the stream as the new version.
Store = Callable[[ByteStream], None]


class LayeredFile(File):  # type: ignore[type-arg]
    """A decoded view of a stored file, or a new version being written."""

    def __init__(
        self,
        decoder: Callable[[], BlockReader],
        name: str,
        mode: str = "rb",
        *,
        store: Store | None = None,
        encoding: str | None = None,
        newline: str | None = None,
    ) -> None:
        self._decoder = decoder
        self._store = store
        self._text_options = {"encoding": encoding, "newline": newline}
        self._raw: BlockReader | None = None
        self._upload: Upload | None = None
        self.name = name
        self._start(mode)

    def _start(self, mode: str) -> None:
        """Open the underlying stream for ``mode``."""
        writing = is_write_mode(mode)
        if writing:
            if self._store is None:
                raise ValueError(f"{self.name!r} was opened read-only.")
            self._upload = Upload(self._store, str(self.name))
            buffered: Any = io.BufferedWriter(
                self._upload.writer, buffer_size=WRITE_PIECE
            )
        else:
            self._raw = self._decoder()
            buffered = io.BufferedReader(self._raw, buffer_size=READ_BUFFER)
        if "b" not in mode:
            encoding = io.text_encoding(self._text_options["encoding"])
            buffered = io.TextIOWrapper(
                buffered, encoding=encoding, newline=self._text_options["newline"]
            )
        self.file = buffered
        self.mode = mode

    @property
    def size(self) -> int:
        """Return the plaintext length (verified against the end of the file), or
        while writing, how many bytes were written so far."""
        if self._upload is not None:
            file: Any = self.file
            file.flush()
            return self._upload.writer.written
        assert self._raw is not None, "internal error: no reader"
        return self._raw.size

    def write(self, data: Any) -> int:
        """Write ``data`` (``bytes``, or ``str`` in text mode); return its length."""
        file: Any = self.file
        upload = self._upload
        if (
            upload is not None
            and "b" in self.mode
            and type(data) is bytes
            and len(data) >= WRITE_PIECE
        ):
            # Handed on as it is, after what is buffered: bytes cannot change, so
            # they need no copy (which the buffered writer would make).
            file.flush()
            upload.writer.write(data)
            return len(data)
        written: int = file.write(data)
        return written

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any) -> LayeredFile:
        """Rewind, or reopen (from the storage, or to write a new version) if closed
        or ``mode`` differs."""
        mode = mode or self.mode
        writing = is_write_mode(mode)
        if self.closed or mode != self.mode or writing:
            self.close()
            self._start(mode)
        else:
            self.seek(0)
        return self

    def close(self) -> None:
        """Close; when writing, store what was written (and raise if that fails)."""
        upload, self._upload = self._upload, None
        if upload is None:
            super().close()
            return
        file: Any = self.file
        try:
            file.close()  # the last buffered bytes go to the save
        except BaseException as exc:
            upload.abort(exc)
            raise
        upload.finish()

    def discard(self) -> None:
        """Stop writing and store nothing (what an exception in ``with`` does)."""
        upload, self._upload = self._upload, None
        if upload is None:
            self.close()
            return
        upload.abort(WriteAbortedError(f"writing {self.name!r} was abandoned"))
        file: Any = self.file
        # The buffered rest has nowhere to go, as intended.
        with contextlib.suppress(BrokenPipeError, WriteAbortedError):
            file.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and self._upload is not None:
            self.discard()
        else:
            self.close()

    def __repr__(self) -> str:
        return f"<LayeredFile: {self.name}>"


class WriteAbortedError(Exception):
    """Raised inside a save whose writer gave up; it never reaches the caller."""


class PipeWriter(io.RawIOBase):
    """The raw end of a writable file: every write becomes a chunk for ``put``."""

    def __init__(self, put: Callable[[bytes], None]) -> None:
        super().__init__()
        self._put = put
        self.written = 0

    def writable(self) -> bool:
        return True

    # Seekable to where it is only: text encodings with a byte-order mark
    # (utf-16, utf-8-sig) write it only at a position 0 that they can tell.
    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) in ((self.written, io.SEEK_SET), (0, io.SEEK_CUR)):
            return self.written
        raise io.UnsupportedOperation("a file being written only moves forward")

    def write(self, data: Any) -> int:
        # The caller may reuse its buffer: anything but bytes is copied.
        chunk = data if type(data) is bytes else bytes(data)
        if chunk:
            self._put(chunk)
            self.written += len(chunk)
        return len(chunk)


class Upload:
    """The save of what a writable file is given.

    The first ``SMALL_FILE`` bytes are kept as written; a file that ends within
    them is stored on close, in the calling thread, with no hand-off. A larger one
    is stored by a thread of its own, started once they overflow and fed through
    ``pipe``. Dropping the file without ``close()`` aborts that save, storing
    nothing.
    """

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self._name = name
        self.pipe = PipeStream()
        self.writer = PipeWriter(self.put)
        self._held: list[bytes] = []
        self._held_size = 0
        self._stored = False
        self._outcome: list[BaseException] = []
        self._thread: threading.Thread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def put(self, chunk: bytes) -> None:
        """Take the next chunk of the file.

        Raises:
            BrokenPipeError: the write was abandoned or is finished.
        """
        if self._stored:
            raise BrokenPipeError(f"writing {self._name!r} is over")
        if self._thread is None:
            self._held.append(chunk)
            self._held_size += len(chunk)
            if self._held_size <= SMALL_FILE:
                return
            self._start()
            held, self._held = self._held, []
            for piece in held:
                self.pipe.put(piece)
            return
        self.pipe.put(chunk)

    def _start(self) -> None:
        # Neither the thread nor the finalizer may refer to this object, or it
        # would never be collected when its file is dropped.
        self._thread = threading.Thread(
            target=_run_store,
            args=(self._store, self.pipe, self._outcome),
            name="layered-storage-write",
            daemon=True,
        )
        self._thread.start()
        self._finalizer = weakref.finalize(
            self,
            self.pipe.abort,
            WriteAbortedError(
                f"{self._name!r} was never closed, so nothing was stored"
            ),
        )

    def finish(self) -> None:
        """Store everything written, or wait for the save to have done so.

        Raises:
            BaseException: what made the save fail (nothing was stored).
        """
        if self._thread is None:
            if not self._stored:  # a small file: stored here, with no thread
                self._stored = True
                held, self._held = self._held, []
                self._store(HeldStream(held))
            return
        assert self._finalizer is not None
        self._finalizer.detach()
        self.pipe.finish()
        self._thread.join()
        if self._outcome:
            raise self._outcome[0]

    def abort(self, reason: BaseException) -> None:
        """Make the save fail with ``reason`` and wait for it to clean up."""
        if self._thread is None:
            self._stored = True  # nothing started, and nothing will be stored
            self._held = []
            return
        assert self._finalizer is not None
        self._finalizer.detach()
        self.pipe.abort(reason)
        self._thread.join()


class HeldStream(ProducerStream):
    """The chunks of a small written file, read in order (each handed on once)."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__()
        self._chunks = chunks[::-1]

    def _produce(self) -> bytes | None:
        return self._chunks.pop() if self._chunks else None


def _run_store(store: Store, pipe: PipeStream, outcome: list[BaseException]) -> None:
    """Run ``store`` over what the pipe brings (in the upload's thread)."""
    try:
        store(pipe)
    except BaseException as exc:
        outcome.append(exc)
        pipe.hang_up(exc)
    else:
        pipe.hang_up()
