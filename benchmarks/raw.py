"""Raw ceilings: the tightest single-thread loops doing the work of each stack.

Each loop reads its input file and (on save) writes its output file, like the
storages do, with preallocated buffers and no layering. They carry no header, seek
table or key schedule: they are upper bounds, not a file format.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from benchmarks import MiB

SEGMENT = 64 * 1024
FRAME = MiB
TAG = 16
LEVEL = 3
#: Sealed segments the read loop takes per read call.
BATCH = 16
_NOT_FINAL, _FINAL = b"\x00", b"\x01"

AeadClass = type[AESGCM] | type[ChaCha20Poly1305]
AEADS: dict[str, AeadClass] = {"aes-gcm": AESGCM, "chacha20-poly1305": ChaCha20Poly1305}


class Sealer:
    """An AEAD key and a nonce base, as a per-file key schedule would give."""

    def __init__(
        self,
        aead: str = "aes-gcm",
        *,
        secret: bytes | None = None,
        base: int | None = None,
    ) -> None:
        """A fresh key and nonce base, or (to read in another process) given ones."""
        self.secret = os.urandom(32) if secret is None else secret
        self.cipher = AEADS[aead](self.secret)
        self.base = int.from_bytes(os.urandom(12), "big") if base is None else base

    def nonce(self, index: int) -> bytes:
        """Return the nonce of segment ``index``."""
        return (self.base ^ index).to_bytes(12, "big")


def _fill(source: io.RawIOBase, buffer: bytearray) -> int:
    """Fill ``buffer`` from the unbuffered file ``source``; short only at EOF."""
    view = memoryview(buffer)
    filled = source.readinto(view) or 0
    while filled and filled < len(view):
        more = source.readinto(view[filled:])
        if not more:
            break
        filled += more
    return filled


def zstd_stream_compress(src: Path, dst: Path) -> None:
    """Compress with zstandard's own streaming compressor, file to file."""
    with open(src, "rb") as source, open(dst, "wb") as target:
        zstandard.ZstdCompressor(level=LEVEL).copy_stream(source, target)


def zstd_stream_decompress(src: Path) -> None:
    """Decompress with zstandard's streaming reader, in 1 MiB reads."""
    with open(src, "rb") as source:
        reader = zstandard.ZstdDecompressor().stream_reader(source)
        while reader.read(MiB):
            pass


def aead_encrypt(src: Path, dst: Path, sealer: Sealer) -> None:
    """Seal 64 KiB segments with ``encrypt_into``, the last one short and final."""
    plain, sealed = bytearray(SEGMENT), bytearray(SEGMENT + TAG)
    plain_view, sealed_view = memoryview(plain), memoryview(sealed)
    encrypt_into, nonce = sealer.cipher.encrypt_into, sealer.nonce
    with open(src, "rb", buffering=0) as source, open(dst, "wb", buffering=0) as out:
        index = 0
        while True:
            count = _fill(source, plain)
            final = count < SEGMENT
            out_view = sealed_view[: count + TAG]
            encrypt_into(
                nonce(index),
                plain_view[:count],
                _FINAL if final else _NOT_FINAL,
                out_view,
            )
            out.write(out_view)
            index += 1
            if final:
                return


def aead_decrypt(src: Path, sealer: Sealer) -> None:
    """Open the segments ``aead_encrypt`` wrote with ``decrypt_into``."""
    plain, sealed = bytearray(SEGMENT), bytearray(SEGMENT + TAG)
    plain_view, sealed_view = memoryview(plain), memoryview(sealed)
    decrypt_into, nonce = sealer.cipher.decrypt_into, sealer.nonce
    with open(src, "rb", buffering=0) as source:
        index = 0
        while True:
            count = _fill(source, sealed)
            final = count < SEGMENT + TAG
            decrypt_into(
                nonce(index),
                sealed_view[:count],
                _FINAL if final else _NOT_FINAL,
                plain_view[: count - TAG],
            )
            index += 1
            if final:
                return


def zstd_aead_encrypt(src: Path, dst: Path, sealer: Sealer) -> list[int]:
    """Compress 1 MiB frames, seal the frame stream in 64 KiB segments.

    Returns the compressed frame sizes (what a seek table would record).
    """
    compressor = zstandard.ZstdCompressor(level=LEVEL, write_content_size=True)
    block = bytearray(FRAME)
    block_view = memoryview(block)
    stage, sealed = bytearray(SEGMENT), bytearray(SEGMENT + TAG)
    stage_view, sealed_view = memoryview(stage), memoryview(sealed)
    encrypt_into, nonce = sealer.cipher.encrypt_into, sealer.nonce
    sizes: list[int] = []
    index = staged = 0
    with open(src, "rb", buffering=0) as source, open(dst, "wb", buffering=0) as out:
        while True:
            count = _fill(source, block)
            if count:
                frame = memoryview(compressor.compress(block_view[:count]))
                sizes.append(len(frame))
                position = 0
                while position < len(frame):
                    take = min(SEGMENT - staged, len(frame) - position)
                    if take == SEGMENT:  # aligned: seal straight from the frame
                        segment = frame[position : position + SEGMENT]
                    else:
                        stage_view[staged : staged + take] = frame[
                            position : position + take
                        ]
                        staged += take
                        if staged < SEGMENT:
                            position += take
                            continue
                        segment, staged = stage_view, 0
                    encrypt_into(nonce(index), segment, _NOT_FINAL, sealed_view)
                    out.write(sealed_view)
                    index += 1
                    position += take
            if count < FRAME:
                break
        tail = sealed_view[: staged + TAG]
        encrypt_into(nonce(index), stage_view[:staged], _FINAL, tail)
        out.write(tail)
    return sizes


def zstd_aead_decrypt(src: Path, sealer: Sealer, sizes: list[int]) -> None:
    """Open the segments, then decompress each frame as soon as it is whole.

    The fastest single-thread loop found for this work: ``BATCH`` sealed segments
    per read call, each opened with ``decrypt_into`` straight into one buffer of the
    compressed stream, and every whole frame decompressed from a view of that
    buffer with one-shot ``decompress`` (as fast here as ``stream_reader().readinto``
    a reused buffer; opening segment by segment and joining them ran at 0.6-0.9x).
    """
    decompress = zstandard.ZstdDecompressor().decompress
    decrypt_into, nonce = sealer.cipher.decrypt_into, sealer.nonce
    with open(src, "rb", buffering=0) as source:
        left = os.fstat(source.fileno()).st_size
        # No larger than the file: a small file allocates (and faults in) no more.
        sealed = bytearray(min(BATCH * (SEGMENT + TAG), left))
        sealed_view = memoryview(sealed)
        # The frame being gathered (at most a frame and a little) plus one batch.
        stream = bytearray(min(2 * FRAME + BATCH * SEGMENT, left))
        stream_view = memoryview(stream)
        frames = iter(sizes)
        need = next(frames, 0)
        start = end = index = 0
        while left:
            count = _fill(source, sealed)
            left -= count
            if end + BATCH * SEGMENT > len(stream):  # move the partial frame down
                stream_view[: end - start] = stream_view[start:end]
                start, end = 0, end - start
            position = 0
            while position < count:
                length = min(SEGMENT + TAG, count - position)
                final = not left and position + length == count
                decrypt_into(
                    nonce(index),
                    sealed_view[position : position + length],
                    _FINAL if final else _NOT_FINAL,
                    stream_view[end : end + length - TAG],
                )
                position += length
                end += length - TAG
                index += 1
            while need and end - start >= need:
                decompress(stream_view[start : start + need])
                start += need
                need = next(frames, 0)
            if not count:
                raise OSError(f"{src} ended early")


def copy_file(src: Path, dst: Path) -> None:
    """Copy with ``shutil.copyfileobj`` in 1 MiB chunks: the plain I/O limit."""
    import shutil

    with open(src, "rb") as source, open(dst, "wb") as target:
        shutil.copyfileobj(source, target, MiB)


def read_file(src: Path) -> None:
    """Read a file in 1 MiB chunks."""
    with open(src, "rb") as source:
        while source.read(MiB):
            pass


class OneFrame:
    """The codec work of a file of one frame, in memory: no file, no header.

    The compressor and decompressor are made once and reused, as a warm process
    would, so ``encode`` and ``decode`` are the least CPU any save or read of
    ``data`` through zstd and the AEAD can take: a floor for small files.
    """

    def __init__(self, data: bytes, sealer: Sealer) -> None:
        self.data = data
        self.sealer = sealer
        self._compress = zstandard.ZstdCompressor(
            level=LEVEL, write_content_size=True
        ).compress
        self._decompress = zstandard.ZstdDecompressor().decompress
        self.sealed = self.encode()

    def encode(self) -> list[bytes]:
        """Compress ``data`` in one frame; return it sealed in segments."""
        frame = memoryview(self._compress(self.data))
        encrypt, nonce = self.sealer.cipher.encrypt, self.sealer.nonce
        count = max(1, -(-len(frame) // SEGMENT))
        return [
            encrypt(
                nonce(index),
                frame[index * SEGMENT : (index + 1) * SEGMENT],
                _FINAL if index == count - 1 else _NOT_FINAL,
            )
            for index in range(count)
        ]

    def decode(self) -> bytes:
        """Open the sealed segments and decompress the frame; return the data."""
        decrypt, nonce = self.sealer.cipher.decrypt, self.sealer.nonce
        last = len(self.sealed) - 1
        frame = b"".join(
            decrypt(nonce(index), segment, _FINAL if index == last else _NOT_FINAL)
            for index, segment in enumerate(self.sealed)
        )
        return self._decompress(frame)  # type: ignore[no-any-return]
