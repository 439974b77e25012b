"""LSE1, the encrypted object format: header, key schedule and segment arithmetic.

An LSE1 object is a header, AEAD segments of ``2**seg_log2`` plaintext bytes (the
final one always present and always short), and a trailer: a copy of the header and
its length. Every parameter a reader needs is in the header, which a 32-byte key
commitment authenticates before anything is decrypted; the trailer lets a reader
that starts from the end (one ranged request for size, seek table and header) find
it. See docs/reference/file-format.rst for the full layout.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from layered_storage.exceptions import (
    FormatError,
    TruncatedFileError,
    UnsupportedFormatError,
)

MAGIC = b"\x89LSE\r\n\x1a\n"
VERSION = 1
AEAD_AES_256_GCM = 0x01
AEAD_CHACHA20_POLY1305 = 0x02
AEAD_NAMES = {
    AEAD_AES_256_GCM: "AES-256-GCM",
    AEAD_CHACHA20_POLY1305: "ChaCha20-Poly1305",
}
KDF_HKDF_SHA256 = 0x01
PAYLOAD_RAW = 0x00
PAYLOAD_LSZ1 = 0x01
FLAG_NAME_BOUND = 0x01
FLAG_ENVELOPE = 0x02
KNOWN_FLAGS = FLAG_NAME_BOUND | FLAG_ENVELOPE

TAG_SIZE = 16
SALT_SIZE = 32
COMMITMENT_SIZE = 32
KEY_ID_SIZE = 8
FIXED_SIZE = 18  # magic .. slots_len
DIRECT_HEADER_SIZE = FIXED_SIZE + KEY_ID_SIZE + SALT_SIZE + COMMITMENT_SIZE  # 90
TRAILER_LENGTH_SIZE = 2  # the trailer ends with the header length, u16 big-endian
TRAILER_SIZE = DIRECT_HEADER_SIZE + TRAILER_LENGTH_SIZE

WRITE_SEGMENT_LOG2 = 16  # 64 KiB: measured best for AES-GCM call overhead vs latency
SEGMENT_LOG2_RANGE = (12, 22)
WRITE_EPOCH_LOG2 = 20  # a fresh AEAD key every 2**20 segments (64 GiB)
EPOCH_LOG2_RANGE = (0, 40)
MAX_SEGMENTS = 2**40  # nonces hold a 40-bit segment index at most

_TRANSCRIPT_LABEL = b"layered-storage/v1/transcript"
_COMMIT_LABEL = b"ls1 commit"
_SEGMENT_LABEL = b"ls1 seg"
_FINGERPRINT_LABEL = b"layered-storage/v1/binding-fingerprint"
FINGERPRINT_SIZE = 8


@dataclass(frozen=True)
class Header:
    """The parsed fields of an LSE1 header (direct mode)."""

    aead_id: int
    seg_log2: int
    epoch_log2: int
    payload_type: int
    flags: int
    key_id: bytes
    salt: bytes = b""
    commitment: bytes = b""

    @property
    def segment_size(self) -> int:
        return 1 << self.seg_log2

    @property
    def size(self) -> int:
        return DIRECT_HEADER_SIZE

    @property
    def name_bound(self) -> bool:
        return bool(self.flags & FLAG_NAME_BOUND)

    def signed_bytes(self) -> bytes:
        """Return every header byte the commitment covers (all but itself)."""
        return (
            MAGIC
            + bytes(
                (
                    VERSION,
                    self.aead_id,
                    KDF_HKDF_SHA256,
                    self.seg_log2,
                    self.epoch_log2,
                    self.payload_type,
                    self.flags,
                    len(self.key_id),
                )
            )
            + struct.pack(">H", 0)
            + self.key_id
            + self.salt
        )

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.commitment


def parse_header(data: bytes, *, file_name: str) -> Header:
    """Return the header at the start of ``data`` (at least its first 4 KiB).

    Only the structure is checked here; the commitment is verified by ``KeySchedule``.

    Raises:
        FormatError: not an LSE1 header, or cut short.
        UnsupportedFormatError: a version, algorithm, mode or flag this version does
            not implement.
    """
    where = repr(file_name)
    if not data.startswith(MAGIC):
        raise FormatError(f"{where} does not start with the LSE1 magic.")
    if len(data) < FIXED_SIZE:
        raise FormatError(f"{where} ends inside its LSE1 header.")
    version, aead_id, kdf_id, seg_log2, epoch_log2, payload, flags, kid_len = data[8:16]
    (slots_len,) = struct.unpack(">H", data[16:18])
    if version != VERSION:
        raise UnsupportedFormatError(
            f"{where} uses LSE1 format version {version}; this release reads "
            f"version {VERSION}. Upgrade django-layered-storage to read it."
        )
    if aead_id not in AEAD_NAMES:
        raise UnsupportedFormatError(f"{where} names unknown AEAD id {aead_id}.")
    if kdf_id != KDF_HKDF_SHA256:
        raise UnsupportedFormatError(f"{where} names unknown KDF id {kdf_id}.")
    if flags & ~KNOWN_FLAGS & 0xFF:
        raise UnsupportedFormatError(
            f"{where} sets reserved header flags {flags:#04x}."
        )
    if flags & FLAG_ENVELOPE:
        raise UnsupportedFormatError(
            f"{where} uses envelope (KMS) mode, which this release does not support."
        )
    if kid_len != KEY_ID_SIZE or slots_len != 0:
        raise FormatError(
            f"{where} has a malformed LSE1 header (key id length {kid_len}, "
            f"{slots_len} slot bytes; direct mode needs {KEY_ID_SIZE} and 0)."
        )
    low, high = SEGMENT_LOG2_RANGE
    if not low <= seg_log2 <= high:
        raise UnsupportedFormatError(
            f"{where} declares segments of 2**{seg_log2} bytes; readers accept "
            f"2**{low} to 2**{high}."
        )
    if not EPOCH_LOG2_RANGE[0] <= epoch_log2 <= EPOCH_LOG2_RANGE[1]:
        raise UnsupportedFormatError(f"{where} declares key epochs of 2**{epoch_log2}.")
    if payload not in (PAYLOAD_RAW, PAYLOAD_LSZ1):
        raise UnsupportedFormatError(
            f"{where} declares unknown payload type {payload}."
        )
    if len(data) < DIRECT_HEADER_SIZE:
        raise FormatError(f"{where} ends inside its LSE1 header.")
    salt_at = FIXED_SIZE + KEY_ID_SIZE
    commit_at = salt_at + SALT_SIZE
    return Header(
        aead_id=aead_id,
        seg_log2=seg_log2,
        epoch_log2=epoch_log2,
        payload_type=payload,
        flags=flags,
        key_id=bytes(data[FIXED_SIZE:salt_at]),
        salt=bytes(data[salt_at:commit_at]),
        commitment=bytes(data[commit_at:DIRECT_HEADER_SIZE]),
    )


def binding_context(namespace: str, name: str) -> bytes:
    """Return the bytes that bind an object to its storage namespace and name.

    Raises:
        ValueError: a NUL in either, or either longer than 65535 UTF-8 bytes.
    """
    parts = []
    for label, text in (("namespace", namespace), ("file name", name)):
        if "\x00" in text:
            raise ValueError(f"The {label} {text!r} contains a NUL character.")
        encoded = unicodedata.normalize("NFC", text).encode("utf-8")
        if len(encoded) > 0xFFFF:
            raise ValueError(f"The {label} is longer than 65535 bytes.")
        parts.append(struct.pack(">H", len(encoded)) + encoded)
    return b"".join(parts)


def binding_fingerprint(secret: bytes, namespace: str, name: str) -> str:
    """Return the fingerprint of a binding to ``namespace`` and ``name`` under the
    key ``secret``, as 16 hex digits: ``HMAC-SHA-256(K, label || context)[0:8]``.

    It is not stored anywhere. Without the key it tells nothing about the name,
    and it never reveals the key; with the same key, the same binding always has
    the same fingerprint, so reports that withhold names can still be compared.

    Raises:
        ValueError: see ``binding_context``.
    """
    message = _FINGERPRINT_LABEL + binding_context(namespace, name)
    return hmac.new(secret, message, hashlib.sha256).digest()[:FINGERPRINT_SIZE].hex()


_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


class _HmacSha256:
    """HMAC-SHA-256 (RFC 2104) under one key, whose padded states are hashed once:
    each message then costs two copies and two short hashes, about half of what
    ``hmac.new`` costs, which builds them again for every message."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:
            raise AssertionError("internal error: an HMAC key longer than a block")
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(block.translate(_INNER_PAD))
        self._outer = hashlib.sha256(block.translate(_OUTER_PAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _hkdf_expand(prk: _HmacSha256, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869) with SHA-256, under the PRK's HMAC."""
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = prk.digest(block + info + bytes((counter,)))
        output += block
        counter += 1
    return output[:length]


AeadCipher = AESGCM | ChaCha20Poly1305


class KeySchedule:
    """The keys of one object: commitment and per-epoch AEAD keys and nonces."""

    def __init__(self, secret: bytes, header: Header, context: bytes) -> None:
        self._prk = _HmacSha256(hmac.digest(header.salt, secret, "sha256"))
        #: Every header byte but the commitment, as the transcript covers them.
        self.signed = signed = header.signed_bytes()
        self._transcript = hashlib.sha256(
            _TRANSCRIPT_LABEL
            + struct.pack(">I", len(signed))
            + signed
            + struct.pack(">I", len(context))
            + context
        ).digest()
        self._cipher_class = (
            AESGCM if header.aead_id == AEAD_AES_256_GCM else ChaCha20Poly1305
        )
        self._epoch_log2 = header.epoch_log2
        self._epochs: dict[int, tuple[AeadCipher, int]] = {}

    def commitment(self) -> bytes:
        """Return the 32-byte commitment to key, header and context."""
        return _hkdf_expand(
            self._prk, _COMMIT_LABEL + self._transcript, COMMITMENT_SIZE
        )

    def verify(self, commitment: bytes) -> bool:
        """Return whether ``commitment`` matches, compared in constant time."""
        return hmac.compare_digest(self.commitment(), commitment)

    def segment(self, index: int) -> tuple[AeadCipher, bytes]:
        """Return the AEAD and the nonce that seal segment ``index`` (thread-safe)."""
        epoch = index >> self._epoch_log2
        keys = self._epochs.get(epoch)
        if keys is None:
            material = _hkdf_expand(
                self._prk,
                _SEGMENT_LABEL + struct.pack(">Q", epoch) + self._transcript,
                32 + 12,
            )
            keys = (
                self._cipher_class(material[:32]),
                int.from_bytes(material[32:], "big"),
            )
            if len(self._epochs) > 4:  # a reader moves through epochs; keep a few
                self._epochs.clear()
            self._epochs[epoch] = keys
        cipher, nonce_base = keys
        return cipher, (nonce_base ^ index).to_bytes(12, "big")


def verifying_namespace(
    secret: bytes, header: Header, name: str, namespaces: Iterable[str]
) -> str | None:
    """Return the first of ``namespaces`` under which the name-bound ``header``
    verifies for ``name`` with the key ``secret``, or None if none does.

    Raises:
        ValueError: see ``binding_context``.
    """
    return next(
        (
            namespace
            for namespace in namespaces
            if KeySchedule(secret, header, binding_context(namespace, name)).verify(
                header.commitment
            )
        ),
        None,
    )


def trailer(header: bytes) -> bytes:
    """Return the trailer that closes an object with ``header``."""
    return header + struct.pack(">H", len(header))


def ends_with_trailer(tail: bytes) -> bool:
    """Return whether ``tail`` (an object's last ``TRAILER_SIZE`` bytes or more) ends
    with an LSE1 trailer: a direct-mode header length and the magic before it."""
    return (
        len(tail) >= TRAILER_SIZE
        and tail[-TRAILER_LENGTH_SIZE:] == struct.pack(">H", DIRECT_HEADER_SIZE)
        and tail[-TRAILER_SIZE:].startswith(MAGIC)
    )


def trailer_header(tail: bytes, *, file_name: str) -> bytes:
    """Return the header copy in ``tail``, an object's last ``TRAILER_SIZE`` bytes.

    Raises:
        TruncatedFileError: no trailer there: the object was cut or extended (or
            its last bytes were changed).
    """
    if not ends_with_trailer(tail):
        raise TruncatedFileError(
            f"{file_name!r} does not end with an LSE1 trailer (the copy of its header "
            "that closes every encrypted file): it was truncated, bytes were appended "
            "to it, or its last bytes were changed."
        )
    return bytes(tail[-TRAILER_SIZE:-TRAILER_LENGTH_SIZE])


def final_flag(is_final: bool) -> bytes:
    """Return the associated data that marks a segment final or not."""
    return b"\x01" if is_final else b"\x00"


def stored_size(header_size: int, segment_size: int, plaintext_size: int) -> int:
    """Return the object length for ``plaintext_size`` bytes (the length rule)."""
    full, rest = divmod(plaintext_size, segment_size)
    segments = full * (segment_size + TAG_SIZE) + rest + TAG_SIZE
    return header_size + segments + header_size + TRAILER_LENGTH_SIZE


def plaintext_layout(
    stored: int, header_size: int, segment_size: int, *, file_name: str
) -> tuple[int, int]:
    """Return ``(segments, plaintext size)`` for an object of ``stored`` bytes.

    Raises:
        TruncatedFileError: no length can end there, e.g. a cut at a segment boundary.
    """
    body = stored - 2 * header_size - TRAILER_LENGTH_SIZE - TAG_SIZE
    full, rest = divmod(body, segment_size + TAG_SIZE)
    if body < 0 or rest >= segment_size:
        # Every valid object ends with a short final segment, so a length that ends
        # exactly on a boundary (or inside a tag) can only be a truncation.
        raise TruncatedFileError(
            f"{file_name!r} is truncated: {stored} stored bytes cannot end an LSE1 "
            "object (the final segment is missing)."
        )
    if full + 1 > MAX_SEGMENTS:
        raise FormatError(f"{file_name!r} claims more than 2**40 segments.")
    return full + 1, full * segment_size + rest
