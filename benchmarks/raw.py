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
_NOT_FINAL, _FINAL = b"\x00", b"\x01"

AeadClass = type[AESGCM] | type[ChaCha20Poly1305]
AEADS: dict[str, AeadClass] = {"aes-gcm": AESGCM, "chacha20-poly1305": ChaCha20Poly1305}


class Sealer:
    """An AEAD key and a nonce base, as a per-file key schedule would give."""

    def __init__(self, aead: str = "aes-gcm") -> None:
        self.cipher = AEADS[aead](os.urandom(32))
        self.base = int.from_bytes(os.urandom(12), "big")

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
    """Open the segments, then decompress each frame as soon as it is whole."""
    decompressor = zstandard.ZstdDecompressor()
    plain, sealed = bytearray(SEGMENT), bytearray(SEGMENT + TAG)
    plain_view, sealed_view = memoryview(plain), memoryview(sealed)
    decrypt_into, nonce = sealer.cipher.decrypt_into, sealer.nonce
    frames = iter(sizes)
    need = next(frames, 0)
    pending = bytearray()
    start = index = 0
    with open(src, "rb", buffering=0) as source:
        while True:
            count = _fill(source, sealed)
            final = count < SEGMENT + TAG
            opened = plain_view[: count - TAG]
            decrypt_into(
                nonce(index),
                sealed_view[:count],
                _FINAL if final else _NOT_FINAL,
                opened,
            )
            pending += opened
            index += 1
            while need and len(pending) - start >= need:
                with memoryview(pending) as view, view[start : start + need] as frame:
                    decompressor.decompress(frame)
                start += need
                need = next(frames, 0)
            if start > 4 * MiB:
                del pending[:start]
                start = 0
            if final:
                return


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
