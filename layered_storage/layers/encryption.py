"""The encryption layers: AES-256-GCM and ChaCha20-Poly1305 in the LSE1 format.

Each file gets its own keys from a fresh 256-bit salt; 64 KiB segments are sealed in
order, the last one flagged final, under keys bound to every header byte and (by
default) to the storage namespace and file name. A reader verifies the key
commitment before decrypting anything and releases a segment only after its tag
verifies, so tampering, truncation, reordering, splicing and renaming all fail.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
from collections.abc import Iterator
from functools import cached_property
from typing import ClassVar

from cryptography.exceptions import InvalidTag

from layered_storage.exceptions import (
    ConfigurationError,
    HeaderAuthenticationError,
    PolicyError,
    SegmentAuthenticationError,
    TruncatedFileError,
)
from layered_storage.format import lse1
from layered_storage.keys import Key, Keyring, load_keyring
from layered_storage.layers.base import (
    PAYLOAD_LSE1,
    PAYLOAD_RAW,
    FileContext,
    Layer,
    ReadPolicy,
)
from layered_storage.parallel import overlapped_map
from layered_storage.streams import (
    BlockReader,
    ByteStream,
    ProducerStream,
    fill_from,
    memory_of,
    read_exactly,
    read_tail,
)


class AeadLayer(Layer):
    """Authenticated encryption into LSE1; subclasses pick the AEAD."""

    kind = "encryption"
    payload = PAYLOAD_LSE1
    aead_id: ClassVar[int]

    def __init__(self, *, keys: str | None = None, bind_name: bool = True) -> None:
        if keys is not None and not isinstance(keys, str):
            raise ConfigurationError(
                "The 'keys' option names a keyring by reference (a setting name or a "
                "dotted path), never by value: move the keys into a setting.",
                check_id="layered_storage.E004",
            )
        if not isinstance(bind_name, bool):
            raise ConfigurationError(
                f"'bind_name' must be True or False, got {bind_name!r}.",
                check_id="layered_storage.E004",
            )
        self.keys_reference = keys
        self.bind_name = bind_name

    @cached_property
    def keyring(self) -> Keyring:
        """Return the keyring, loaded from settings when first needed."""
        return load_keyring(self.keys_reference)

    def encode(
        self, source: ByteStream, context: FileContext, *, payload: int, outermost: bool
    ) -> ProducerStream:
        return EncryptingStream(
            source,
            key=self.keyring.primary,
            aead_id=self.aead_id,
            payload=payload,
            binding=(
                lse1.binding_context(context.namespace, context.name)
                if self.bind_name
                else None
            ),
        )


class AesGcmLayer(AeadLayer):
    """AES-256-GCM: the default, fastest where the CPU has AES instructions."""

    name = "aes-gcm"
    aead_id = lse1.AEAD_AES_256_GCM


class ChaCha20Poly1305Layer(AeadLayer):
    """ChaCha20-Poly1305: for CPUs without AES instructions."""

    name = "chacha20-poly1305"
    aead_id = lse1.AEAD_CHACHA20_POLY1305


AEAD_LAYERS: dict[int, type[AeadLayer]] = {
    layer.aead_id: layer for layer in (AesGcmLayer, ChaCha20Poly1305Layer)
}


#: Segments to seal: the first one's index, the plaintext buffer, how many of its
#: bytes to seal, and whether they end with the final segment.
Batch = tuple[int, bytes | bytearray, int, bool]


class EncryptingStream(ProducerStream):
    """Produce an LSE1 object from ``source``: header, sealed segments, trailer.

    Segments are sealed in batches of ``BATCH`` by one worker, one batch ahead: it
    seals while this thread writes the previous batch (see ``overlapped_map``).
    """

    #: Segments per task: 1 MiB at 64 KiB segments, so per-call overhead is small.
    BATCH = 16
    #: Segments at most in the first task (see ``_read_batches``).
    FIRST_BATCH = 4

    def __init__(
        self,
        source: ByteStream,
        *,
        key: Key,
        aead_id: int,
        payload: int,
        binding: bytes | None,
        salt: bytes | None = None,
        workers: int | None = None,
    ) -> None:
        """Start an object; ``salt`` is only ever given to reproduce test vectors."""
        super().__init__()
        self._source = source
        header = lse1.Header(
            aead_id=aead_id,
            seg_log2=lse1.WRITE_SEGMENT_LOG2,
            epoch_log2=lse1.WRITE_EPOCH_LOG2,
            payload_type=payload,
            flags=lse1.FLAG_NAME_BOUND if binding is not None else 0,
            key_id=key.id,
            # A fresh salt per write attempt: a retry never reuses a (key, nonce).
            salt=secrets.token_bytes(lse1.SALT_SIZE) if salt is None else salt,
        )
        self._schedule = lse1.KeySchedule(key.secret, header, binding or b"")
        header_bytes = self._schedule.signed + self._schedule.commitment()
        self._header: bytes | None = header_bytes
        self._trailer: bytes | None = lse1.trailer(header_bytes)
        self._segment_size = header.segment_size
        # Plaintext buffers come back here once sealed: reusing them spares every
        # batch a fresh, zeroed 1 MiB (and its page faults).
        self._free: list[bytearray] = []
        self._batches = overlapped_map(
            self._seal,
            self._read_batches(),
            workers=workers,
        )

    def _produce(self) -> bytes | bytearray | None:
        if self._header is not None:
            header, self._header = self._header, None
            return header
        batch = next(self._batches, None)
        if batch is None and self._trailer is not None:
            trailer, self._trailer = self._trailer, None
            return trailer
        return batch

    def _read_batches(self) -> Iterator[Batch]:
        """Yield ``(first segment, buffer, bytes in it, holds the final segment)``.

        The first batch is read as bytes the size of what there is, up to
        ``FIRST_BATCH`` segments: a small file never allocates more (a fresh, zeroed
        1 MiB per save costs page faults, which serialise threads saving at once),
        and one frame of text (1 MiB compresses to under 256 KiB) is sealed in one
        batch, in this thread, with no hand-off to a worker. Then ``BATCH``.
        """
        size = self._segment_size
        # Never longer than asked: its last segments would be sealed again, with
        # other bytes under the same nonces, by the batch after it.
        head = read_exactly(self._source, size * self.FIRST_BATCH)
        # A full buffer is sealed as non-final; the short remainder (possibly empty)
        # is the final segment, so every length has exactly one encoding.
        final = len(head) < size * self.FIRST_BATCH
        yield 0, head, len(head), final
        first = self.FIRST_BATCH
        while not final:
            if first >= lse1.MAX_SEGMENTS - self.BATCH:
                raise ValueError("A file may hold at most 2**40 segments (64 PiB).")
            buffer = self._buffer(size * self.BATCH)
            count = fill_from(self._source, buffer)
            final = count < len(buffer)
            yield first, buffer, count, final
            first += self.BATCH

    def _seal(self, batch: Batch) -> bytearray:
        """Seal one batch of segments (runs in a worker thread)."""
        first, buffer, count, final = batch
        size = self._segment_size
        segments = count // size + 1 if final else count // size
        sealed = bytearray(count + segments * lse1.TAG_SIZE)
        plain, out = memoryview(buffer), memoryview(sealed)
        start = written = 0
        for offset in range(segments):
            end = min(start + size, count)
            cipher, nonce = self._schedule.segment(first + offset)
            last = final and offset == segments - 1
            length = end - start + lse1.TAG_SIZE
            cipher.encrypt_into(
                nonce,
                plain[start:end],
                lse1.final_flag(last),
                out[written : written + length],
            )
            start, written = end, written + length
        if isinstance(buffer, bytearray) and len(buffer) == size * self.BATCH:
            self._free.append(buffer)  # nothing reads it any more
        return sealed

    def _buffer(self, size: int) -> bytearray:
        """Return a plaintext buffer of ``size`` bytes, a sealed one when it fits."""
        if size == self._segment_size * self.BATCH:
            with contextlib.suppress(IndexError):  # the workers append concurrently
                return self._free.pop()
        return bytearray(size)


class DecryptingReader(BlockReader):
    """Read the plaintext of an LSE1 object; ``source`` must be seekable."""

    def __init__(
        self,
        source: ByteStream,
        *,
        keyring: Keyring,
        context: FileContext,
        policy: ReadPolicy,
    ) -> None:
        super().__init__(source)
        name = context.name
        self._file_name = name
        # The stored object itself when it is all in memory: segments are sliced
        # from it, never copied.
        self._memory = memory_of(source)
        # The header is read from the trailer, so a reader starting from the end
        # (size, seek tables) never touches the start of the object. The copy at
        # the start must be the same; it is compared when segment 0 is read.
        if self._memory is not None:
            stored = len(self._memory)
            tail = bytes(self._memory[-lse1.TRAILER_SIZE :])
        else:
            tail, stored = read_tail(source, lse1.TRAILER_SIZE)
        if stored < lse1.TRAILER_SIZE:
            raise TruncatedFileError(
                f"{name!r} is truncated: {stored} bytes cannot hold an LSE1 object."
            )
        self._header_bytes = lse1.trailer_header(tail, file_name=name)
        header = lse1.parse_header(self._header_bytes, file_name=name)
        if header.seg_log2 > policy.max_segment_log2:
            raise PolicyError(
                f"{name!r} uses segments of 2**{header.seg_log2} bytes, over this "
                f"storage's limit of 2**{policy.max_segment_log2}."
            )
        if policy.require_name_binding and not header.name_bound:
            raise PolicyError(
                f"{name!r} is not bound to its file name, and this storage requires "
                "name binding. It may have been swapped in from elsewhere; set "
                "OPTIONS['require_name_binding'] = False only if you wrote it so."
            )
        key = keyring.find(header.key_id, file_name=name)
        binding = (
            lse1.binding_context(context.namespace, name) if header.name_bound else b""
        )
        self._schedule = lse1.KeySchedule(key.secret, header, binding)
        if not self._schedule.verify(header.commitment):
            written_under = (
                lse1.verifying_namespace(
                    key.secret, header, name, context.other_namespaces
                )
                if header.name_bound
                else None
            )
            if written_under is not None:
                raise HeaderAuthenticationError(
                    f"{name!r} was written under namespace {written_under!r}, and "
                    f"this storage's namespace is {context.namespace!r}: files are "
                    "bound to their namespace. Set OPTIONS['namespace'] (or "
                    f"LAYERED_STORAGE['NAMESPACE']) back to {written_under!r} to "
                    "read it."
                )
            hint = (
                " `manage.py layered_inspect --as-name OLD_NAME "
                f"{shlex.quote(name)}` tells whether it was saved as OLD_NAME."
                if header.name_bound
                else ""
            )
            raise HeaderAuthenticationError(
                f"{name!r} failed header authentication with key {key.label}: the "
                "header was changed, another key with the same id wrote it, or the "
                "file was copied or renamed from another name or namespace (files "
                f"are bound to their storage name).{hint}"
            )
        self.payload = header.payload_type
        self.block_size = header.segment_size
        self._header_size = header.size
        self._segments, self._size = lse1.plaintext_layout(
            stored, header.size, self.block_size, file_name=name
        )
        limit = policy.max_file_size
        if limit is not None and self.payload == PAYLOAD_RAW and self._size > limit:
            raise PolicyError(
                f"{name!r} holds {self._size} bytes, over this storage's limit of "
                f"{limit}."
            )
        # Allocated when first needed, no larger than the object: a fresh large
        # buffer per file costs page faults, which serialise threads in the kernel.
        self._plain = bytearray()
        # Stored segments read at once: a batch when reading on, else what is needed.
        self._stored = bytearray()
        self._stored_first = 0
        self._stored_count = 0
        self._cached_index = -1
        self._cached = memoryview(b"")
        #: Where the source is, so moving it needs no ``tell()`` (a system call on
        #: a file); -1 when unknown.
        self._source_offset = -1

    @property
    def in_memory(self) -> bool:
        """Return whether the stored object is all in memory (it was small)."""
        return self._memory is not None

    @property
    def segments(self) -> int:
        """Return how many segments the object holds (the final one included)."""
        return self._segments

    @property
    def size(self) -> int:
        # Verify the final segment before answering: a length alone could be forged.
        self._block(self._segments - 1)
        return self._size

    def readall(self) -> bytes:
        """Return the rest of the plaintext; a one-segment object is opened into
        bytes of its own, with no buffer to copy them out of."""
        if self._position or self._segments != 1 or self._cached_index == 0:
            return super().readall()
        sealed = self._sealed(0, 1)
        cipher, nonce = self._schedule.segment(0)
        try:
            plain: bytes = cipher.decrypt(nonce, sealed, lse1.final_flag(True))
        except InvalidTag:
            raise self._failed(0) from None
        self._position = self._size
        return plain

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill ``buffer``; whole segments it covers are opened straight into it,
        ``BATCH`` at a time from one read of the source, with no copy."""
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        view = memoryview(buffer).cast("B")
        size = self.block_size
        filled = 0
        while filled < len(view):
            index, offset = divmod(self._position, size)
            # Never the final segment: it is short, and ``_block`` keeps it verified.
            whole = min((len(view) - filled) // size, self._segments - 1 - index)
            if offset == 0 and whole > 0 and index != self._cached_index:
                whole = min(whole, self.BATCH)
                self._open_into(index, whole, view[filled : filled + whole * size])
                count = whole * size
            else:
                block = self._block(index)
                if offset >= len(block):  # only the short final segment ends data
                    break
                count = min(len(block) - offset, len(view) - filled)
                view[filled : filled + count] = block[offset : offset + count]
            filled += count
            self._position += count
        return filled

    #: Whole segments read from the source at once and opened into a caller's
    #: buffer: 1 MiB at 64 KiB segments.
    BATCH = 16

    def _open_into(self, first: int, count: int, out: memoryview) -> None:
        """Open the ``count`` non-final segments from ``first`` into ``out``.

        Raises:
            SegmentAuthenticationError, TruncatedFileError: see ``_block``; ``out``
                is zeroed first, so no unauthenticated plaintext is left in it.
        """
        tagged = self.block_size + lse1.TAG_SIZE
        sealed = self._sealed(first, count)
        size = self.block_size
        for number in range(count):
            index = first + number
            cipher, nonce = self._schedule.segment(index)
            try:
                cipher.decrypt_into(
                    nonce,
                    sealed[number * tagged : (number + 1) * tagged],
                    lse1.final_flag(False),
                    out[number * size : (number + 1) * size],
                )
            except InvalidTag:
                # decrypt_into writes the plaintext before it checks the tag.
                out[:] = bytes(len(out))
                raise self._failed(index) from None

    def _block(self, index: int) -> memoryview:
        if index == self._cached_index:
            return self._cached
        last = self._segments - 1
        if index > last:
            self._block(last)  # EOF only after the final segment authenticated
            return memoryview(b"")
        final = index == last
        length = (
            self._size - last * self.block_size if final else self.block_size
        ) + lse1.TAG_SIZE
        sealed = self._sealed(index, 1)
        if len(self._plain) < length - lse1.TAG_SIZE:
            self._plain = bytearray(min(self.block_size, self._size))
        plain = memoryview(self._plain)[: length - lse1.TAG_SIZE]
        cipher, nonce = self._schedule.segment(index)
        # The buffer is about to change: whatever it held is no longer cached.
        self._cached_index, self._cached = -1, memoryview(b"")
        try:
            cipher.decrypt_into(nonce, sealed, lse1.final_flag(final), plain)
        except InvalidTag:
            # decrypt_into writes the plaintext before it checks the tag.
            plain[:] = bytes(len(plain))
            raise self._failed(index) from None
        self._cached_index, self._cached = index, plain
        return plain

    def _sealed(self, first: int, count: int) -> memoryview:
        """Return the stored bytes of ``count`` segments from ``first`` (at most
        ``BATCH``). Reading on from the last ones read, a whole batch is read at
        once: one call to the source per ``BATCH`` segments, not one or two per
        read; elsewhere (a seek), only what is asked for.

        Raises:
            TruncatedFileError: the object ends too soon (it changed meanwhile).
        """
        tagged = self.block_size + lse1.TAG_SIZE
        have = self._stored_first
        if have <= first and first + count <= have + self._stored_count:
            at = (first - have) * tagged
            return memoryview(self._stored)[at:][: self._length(first, count)]
        asked = count
        if first == have + self._stored_count:
            count = max(count, self.BATCH)
        count = min(count, self._segments - first)
        length = self._length(first, count)
        offset = self._header_size + first * tagged
        if self._memory is not None:
            if first == 0:
                self._check_leading_header()
            sealed = self._memory[offset : offset + length]
            if len(sealed) != length:
                raise AssertionError("internal error: segments past the object")
            return sealed[: self._length(first, asked)]
        if len(self._stored) < length:
            self._stored = bytearray(length)
        sealed = memoryview(self._stored)[:length]
        self._stored_count = 0  # until it holds them
        if first == 0:
            self._check_leading_header()
        elif self._source_offset != offset:
            self._source.seek(offset)
        got = fill_from(self._source, sealed)
        self._source_offset = offset + got
        if got != length:
            self._source_offset = -1
            raise TruncatedFileError(
                f"{self._file_name!r} ended inside segment {first + got // tagged} "
                "while being read: it was cut or replaced during the read."
            )
        self._stored_first, self._stored_count = first, count
        return sealed[: self._length(first, asked)]

    def _length(self, first: int, count: int) -> int:
        """Return the stored length of ``count`` segments from ``first``."""
        last = self._segments - 1
        length = count * (self.block_size + lse1.TAG_SIZE)
        if first + count > last:  # the final segment is short
            length -= self._segments * self.block_size - self._size
        return length

    def _failed(self, index: int) -> SegmentAuthenticationError:
        final = index == self._segments - 1
        cause = (
            "its bytes changed after writing, or it was truncated or extended"
            if final
            else "its bytes changed after writing, or segments were moved"
        )
        return SegmentAuthenticationError(
            f"{self._file_name!r} failed authentication at segment {index} of "
            f"{self._segments}: {cause}.",
            segment=index,
        )

    def _check_leading_header(self) -> None:
        """Read the header at the start (leaving the source at segment 0) and check
        that it is the trailer's copy, whose commitment verified.

        Raises:
            HeaderAuthenticationError: the two copies differ.
        """
        if self._memory is not None:
            leading = self._memory[: self._header_size]
        else:
            self._source.seek(0)
            leading = memoryview(read_exactly(self._source, self._header_size))
            self._source_offset = len(leading)
        if leading != self._header_bytes:
            raise HeaderAuthenticationError(
                f"{self._file_name!r} failed header authentication: its header "
                "differs from the copy in its trailer, so one of them was changed."
            )
