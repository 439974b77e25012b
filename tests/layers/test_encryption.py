"""The encryption layers against the attack classes of the format design."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import re
import struct
from typing import Any

import pytest
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage import (
    DecryptionError,
    FormatError,
    LayeredStorageError,
    TruncatedFileError,
    UnknownKeyError,
)
from layered_storage.exceptions import (
    HeaderAuthenticationError,
    PolicyError,
    SegmentAuthenticationError,
    UnsupportedFormatError,
)
from layered_storage.format import lse1
from layered_storage.keys import Key, generate_key, parse_keys
from layered_storage.layers.base import PAYLOAD_RAW, FileContext, ReadPolicy
from layered_storage.layers.encryption import (
    AesGcmLayer,
    ChaCha20Poly1305Layer,
    EncryptingStream,
)
from layered_storage.pipeline import Pipeline
from tests.utils import SEGMENT, SEGMENT_EDGES, sample

AEADS = [AesGcmLayer, ChaCha20Poly1305Layer]
TAGGED = SEGMENT + lse1.TAG_SIZE
H = lse1.DIRECT_HEADER_SIZE
T = lse1.TRAILER_SIZE
CONTEXT = FileContext(name="scans/0042.pdf", namespace="media")


def encode(data: bytes, layer: Any = None, context: FileContext = CONTEXT) -> bytes:
    pipeline = Pipeline([layer or AesGcmLayer()], ReadPolicy())
    return pipeline.encode(io.BytesIO(data), context).read()


def decode(
    stored: bytes,
    layer: Any = None,
    context: FileContext = CONTEXT,
    policy: ReadPolicy | None = None,
) -> bytes:
    pipeline = Pipeline([layer or AesGcmLayer()], policy or ReadPolicy())
    with pipeline.decode(io.BytesIO(stored), context) as reader:
        return reader.read()


@pytest.mark.parametrize("layer_class", AEADS)
@pytest.mark.parametrize("size", SEGMENT_EDGES)
def test_round_trip_on_segment_edges(layer_class: Any, size: int) -> None:
    data = sample(size)
    stored = encode(data, layer_class())
    assert len(stored) == lse1.stored_size(H, SEGMENT, size)
    assert decode(stored, layer_class()) == data


@hsettings(max_examples=60, deadline=None)
@given(st.binary(max_size=3 * SEGMENT), st.sampled_from(AEADS))
def test_round_trip_any_payload(payload: bytes, layer_class: Any) -> None:
    assert decode(encode(payload, layer_class()), layer_class()) == payload


def test_each_write_uses_a_fresh_salt() -> None:
    first, second = encode(b"same"), encode(b"same")
    assert first[26:58] != second[26:58]
    assert first != second


# -- truncation, extension, reordering ----------------------------------------------


def segments_of(stored: bytes) -> list[bytes]:
    body = stored[H:-T]
    return [body[i : i + TAGGED] for i in range(0, len(body), TAGGED)]


def with_segments(stored: bytes, segments: list[bytes]) -> bytes:
    """Return ``stored`` with its segments replaced, header and trailer kept."""
    return stored[:H] + b"".join(segments) + stored[-T:]


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_cut_at_a_segment_boundary_is_rejected_before_decrypting(segments: int) -> None:
    stored = encode(sample(3 * SEGMENT + 10))
    cut = stored[: H + segments * TAGGED]
    with pytest.raises(TruncatedFileError, match="does not end with an LSE1 trailer"):
        decode(cut)
    # With the trailer put back, the length rule still refuses it, before any AEAD.
    with pytest.raises(TruncatedFileError, match="final segment is missing"):
        decode(cut + stored[-T:])


def test_file_with_size_a_multiple_of_the_segment_cannot_lose_its_last_segment() -> (
    None
):
    stored = encode(sample(2 * SEGMENT))  # ends with an empty final segment
    assert len(stored) == H + 2 * TAGGED + lse1.TAG_SIZE + T
    with pytest.raises(TruncatedFileError):
        decode(stored[: -lse1.TAG_SIZE - T] + stored[-T:])


@pytest.mark.parametrize("cut", [1, 17, 100, T, T + 1, TAGGED - 1, TAGGED + 5])
def test_cut_between_boundaries_fails_authentication(cut: int) -> None:
    stored = encode(sample(3 * SEGMENT + 10))
    with pytest.raises(DecryptionError):
        decode(stored[:-cut])
    with pytest.raises(DecryptionError):  # the attacker keeps the trailer
        decode(stored[: -cut - T] + stored[-T:])


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 16, b"y" * TAGGED])
def test_appended_bytes_are_rejected(extra: bytes) -> None:
    stored = encode(sample(SEGMENT + 10))
    with pytest.raises(DecryptionError):
        decode(stored + extra)
    with pytest.raises(DecryptionError):  # appended before the trailer
        decode(stored[:-T] + extra + stored[-T:])


@pytest.mark.parametrize(
    "rearrange",
    [
        pytest.param(lambda s: [s[1], s[0], *s[2:]], id="swap"),
        pytest.param(lambda s: [s[0], s[0], *s[2:]], id="duplicate"),
        pytest.param(lambda s: [s[0], *s[2:]], id="delete"),
        pytest.param(lambda s: [*s[:-1], s[-2]], id="final-replaced"),
    ],
)
def test_reordered_duplicated_or_deleted_segments_are_rejected(rearrange: Any) -> None:
    stored = encode(sample(3 * SEGMENT + 10))
    forged = with_segments(stored, rearrange(segments_of(stored)))
    with pytest.raises(DecryptionError):
        decode(forged)


def test_segment_spliced_from_another_file_is_rejected() -> None:
    # Same key, same name, same size: only the per-file salt tells them apart.
    one, two = encode(sample(2 * SEGMENT + 1, 1)), encode(sample(2 * SEGMENT + 1, 2))
    spliced = with_segments(one, [segments_of(two)[0], *segments_of(one)[1:]])
    with pytest.raises(SegmentAuthenticationError, match="segment 0 of 3") as caught:
        decode(spliced)
    assert caught.value.segment == 0


def test_header_of_another_file_is_rejected() -> None:
    one, two = encode(sample(SEGMENT, 1)), encode(sample(SEGMENT, 2))
    with pytest.raises(DecryptionError):
        decode(two[:H] + one[H:-T] + two[-T:])  # both copies swapped
    with pytest.raises(HeaderAuthenticationError, match="differs from the copy"):
        decode(two[:H] + one[H:])  # only the leading one


def test_no_plaintext_is_released_from_a_tampered_segment() -> None:
    stored = bytearray(encode(sample(3 * SEGMENT)))
    stored[H + TAGGED + 5] ^= 0x01  # inside segment 1
    pipeline = Pipeline([AesGcmLayer()], ReadPolicy())
    with pipeline.decode(io.BytesIO(bytes(stored)), CONTEXT) as reader:
        assert reader.read(SEGMENT) == sample(3 * SEGMENT)[:SEGMENT]
        with pytest.raises(SegmentAuthenticationError, match="segment 1"):
            reader.read(1)


def opened(stored: bytes) -> Any:
    return Pipeline([AesGcmLayer()], ReadPolicy()).decode(io.BytesIO(stored), CONTEXT)


@pytest.mark.parametrize("size", [2 * SEGMENT, 20 * SEGMENT + 7, 40 * SEGMENT])
@pytest.mark.parametrize("buffer", [SEGMENT, 3 * SEGMENT + 5, 17 * SEGMENT])
def test_whole_segments_are_opened_straight_into_the_callers_buffer(
    size: int, buffer: int
) -> None:
    # readinto() with room for whole segments takes them in batches, the rest one
    # segment at a time: both give the same bytes, from any starting point.
    data = sample(size)
    with opened(encode(data)) as reader:
        for start in (0, 1, SEGMENT, size - SEGMENT - 1):
            reader.seek(start)
            received = bytearray()
            chunk = bytearray(buffer)
            while count := reader.readinto(chunk):
                received += chunk[:count]
            assert received == data[start:]


@pytest.mark.parametrize("tampered", [0, 1, 15, 16, 17])
def test_a_tampered_segment_in_a_batch_is_rejected_and_never_released(
    tampered: int,
) -> None:
    data = sample(20 * SEGMENT + 3)
    stored = bytearray(encode(data))
    stored[H + tampered * TAGGED + 100] ^= 0x01
    buffer = bytearray(b"\xee" * (18 * SEGMENT))  # two batches: 16 segments, then 2
    with (
        opened(bytes(stored)) as reader,
        pytest.raises(SegmentAuthenticationError, match=f"segment {tampered} "),
    ):
        reader.readinto(buffer)
    # decrypt_into writes plaintext before it checks the tag: the failed batch is
    # wiped; an earlier batch holds authentic plaintext, a later one nothing.
    failed = tampered // 16 * 16 * SEGMENT
    assert buffer[:failed] == data[:failed]
    assert not any(buffer[failed : failed + 16 * SEGMENT][: 18 * SEGMENT - failed])
    assert set(buffer[failed + 16 * SEGMENT :]) <= {0xEE}


def test_a_segment_that_fails_leaves_no_plaintext_in_the_reader() -> None:
    # Segment 1 fails after segment 0 was read: reading segment 0 again must give
    # its own bytes, not what decrypt_into wrote of segment 1 before checking it.
    data = sample(3 * SEGMENT)
    stored = bytearray(encode(data))
    stored[H + TAGGED + 5] ^= 0x01
    with opened(bytes(stored)) as reader:
        assert reader.read(10) == data[:10]
        reader.seek(SEGMENT)
        with pytest.raises(SegmentAuthenticationError, match="segment 1"):
            reader.read(10)
        reader.seek(20)
        assert reader.read(SEGMENT - 20) == data[20:SEGMENT]


# -- the header ------------------------------------------------------------------


def patched(stored: bytes, at: int, value: int) -> bytes:
    """Return ``stored`` with header byte ``at`` set in both copies, as an attacker
    who knows the format would (changing one copy fails the comparison)."""
    forged = bytearray(stored)
    forged[at] = forged[len(forged) - T + at] = value
    return bytes(forged)


#: Every bit of both header copies and of the trailer's length field.
HEADER_BITS = [*range(H * 8), *(-bit - 1 for bit in range(T * 8))]


@pytest.mark.parametrize("bit", HEADER_BITS)
def test_every_header_bit_flip_is_rejected(bit: int) -> None:
    stored = bytearray(encode(b"header bits " * 100))
    stored[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(LayeredStorageError):
        decode(bytes(stored))


def test_relabelled_algorithm_fails_the_commitment() -> None:
    forged = patched(encode(b"downgrade me", AesGcmLayer()), 9, 2)
    with pytest.raises(HeaderAuthenticationError, match="failed header authentication"):
        decode(forged, ChaCha20Poly1305Layer())


def test_relabelled_segment_size_fails_the_commitment() -> None:
    forged = patched(encode(sample(5 * 4096)), 11, 12)
    with pytest.raises(HeaderAuthenticationError):
        decode(forged)


def test_unknown_version_is_unsupported_not_decrypted() -> None:
    with pytest.raises(UnsupportedFormatError, match="version 2"):
        decode(patched(encode(b"v"), 8, 2))


def test_reserved_flags_and_envelope_mode_are_unsupported() -> None:
    for flags in (0x04, 0x80, lse1.FLAG_ENVELOPE | lse1.FLAG_NAME_BOUND):
        with pytest.raises(UnsupportedFormatError):
            decode(patched(encode(b"f"), 14, flags))


def test_unbound_file_is_refused_when_binding_is_required() -> None:
    stored = encode(b"unbound", AesGcmLayer(bind_name=False))
    with pytest.raises(PolicyError, match="not bound to its file name"):
        decode(stored)
    relaxed = ReadPolicy(require_name_binding=False)
    assert decode(stored, policy=relaxed, context=FileContext("other")) == b"unbound"


def test_clearing_the_binding_flag_fails_the_commitment() -> None:
    forged = patched(encode(b"bound"), 14, 0)
    with pytest.raises(HeaderAuthenticationError):
        decode(forged, policy=ReadPolicy(require_name_binding=False))


@pytest.mark.parametrize(
    "context",
    [
        FileContext(name="scans/0043.pdf", namespace="media"),
        FileContext(name="scans/0042.pdf", namespace="backups"),
        FileContext(name="scans/0042.pdf"),
    ],
)
def test_file_moved_to_another_name_or_namespace_fails(context: FileContext) -> None:
    stored = encode(b"bound to its name")
    with pytest.raises(HeaderAuthenticationError, match="renamed"):
        decode(stored, context=context)


def test_renamed_file_in_storage_fails_to_open(storage: Any) -> None:
    name = storage.save("invoice-1.pdf", ContentFile(b"pay 10"))
    with storage.inner.open(name) as stored:
        storage.inner.save("invoice-2.pdf", ContentFile(stored.read()))
    with pytest.raises(HeaderAuthenticationError, match=re.escape("'invoice-2.pdf'")):
        storage.open("invoice-2.pdf")


# -- keys --------------------------------------------------------------------------


def test_wrong_key_names_the_missing_key_id(settings: Any) -> None:
    stored = encode(b"for key A")
    key_a = parse_keys(settings.LAYERED_STORAGE["KEYS"], source="test").primary
    settings.LAYERED_STORAGE = {"KEYS": [generate_key()]}
    with pytest.raises(UnknownKeyError, match=key_a.label) as caught:
        decode(stored)
    assert caught.value.key_id == key_a.label


def test_rotation_keeps_old_files_readable_until_their_key_is_removed(
    settings: Any,
) -> None:
    key_a, key_b = generate_key(), generate_key()
    settings.LAYERED_STORAGE = {"KEYS": [key_a]}
    old = encode(b"written under A")
    settings.LAYERED_STORAGE = {"KEYS": [key_b, key_a]}
    assert decode(old) == b"written under A"
    new = encode(b"written under B")
    assert new[18:26] == Key(base64.urlsafe_b64decode(key_b)).id
    settings.LAYERED_STORAGE = {"KEYS": [key_b]}
    assert decode(new) == b"written under B"
    with pytest.raises(UnknownKeyError):
        decode(old)


def test_keys_option_points_at_another_keyring(settings: Any) -> None:
    settings.ARCHIVE_KEYS = [generate_key()]
    archive = AesGcmLayer(keys="ARCHIVE_KEYS")
    stored = encode(b"archived", archive)
    assert decode(stored, AesGcmLayer(keys="ARCHIVE_KEYS")) == b"archived"
    with pytest.raises(UnknownKeyError):
        decode(stored)


# -- untrusted input ------------------------------------------------------------


@hsettings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    size=st.integers(0, 3 * SEGMENT),
    edits=st.lists(
        st.tuples(st.integers(0, 10**7), st.integers(0, 255)), min_size=1, max_size=4
    ),
    cut=st.integers(0, 40),
    extra=st.binary(max_size=40),
)
def test_mutated_files_only_raise_library_errors(
    size: int, edits: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    original = encode(sample(size, size))
    stored = bytearray(original)
    for position, value in edits:
        stored[position % len(stored)] = value
    mutated = bytes(stored[: len(stored) - cut] + extra)
    if mutated == original:
        return
    with pytest.raises(LayeredStorageError):
        decode(mutated)


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_header_parser_takes_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        lse1.parse_header(lse1.MAGIC + data, file_name="x")


def test_error_messages_hold_no_key_or_plaintext(settings: Any) -> None:
    secrets_text = [
        value
        for key in settings.LAYERED_STORAGE["KEYS"]
        for value in (key, Key(base64.urlsafe_b64decode(key)).secret.hex())
    ]
    plaintext = b"TOP-SECRET-PAYLOAD " * 10000
    stored = encode(plaintext)
    failures: list[Exception] = []
    for forged in (
        stored[:-1],
        stored[: H + TAGGED],
        stored[:50] + b"\x00" + stored[51:],
        stored[:20] + b"\xff" + stored[21:],
    ):
        try:
            decode(forged)
        except LayeredStorageError as exc:
            failures.append(exc)
    assert len(failures) == 4
    for failure in failures:
        text = str(failure) + repr(failure)
        assert "TOP-SECRET" not in text
        assert not any(secret in text for secret in secrets_text)
    key = Key(b"k" * 32)
    assert "k" * 32 not in repr(key)
    assert b"k".hex() * 32 not in repr(key)


# -- test vectors: the format is pinned ---------------------------------------------

VECTOR_KEY = bytes(range(32))
VECTOR_SALT = bytes([0x5A]) * 32
#: (plaintext, bound name, AEAD id, object length, SHA-256 of the object). These pin
#: the format: a change here means old files no longer read.
VECTORS = [
    (
        b"",
        "vectors/empty.bin",
        lse1.AEAD_AES_256_GCM,
        198,
        "0ab32c83545cffccce85f066928ee4ce166fe87d39f9c6c22ff27cb609906818",
    ),
    (
        b"hello, layered storage",
        "vectors/hello.txt",
        lse1.AEAD_CHACHA20_POLY1305,
        220,
        "f8908f6256432d933e2a768946185239de275e1b2973f3190217f3d1ae0352ac",
    ),
    (
        bytes(i % 251 for i in range(70000)),
        "vectors/two-segments.bin",
        lse1.AEAD_AES_256_GCM,
        70214,
        "e664653a319dccfb147163b7c77fe8f2f2af6f94be0f3e11bcade01e592f909d",
    ),
]


def vector(plaintext: bytes, name: str, aead: int) -> bytes:
    binding = lse1.binding_context("", name)
    stream = EncryptingStream(
        io.BytesIO(plaintext),
        key=Key(VECTOR_KEY),
        aead_id=aead,
        payload=PAYLOAD_RAW,
        binding=binding,
        salt=VECTOR_SALT,
    )
    return stream.read()


def test_vector_header_layout() -> None:
    """The byte layout of docs/reference/file-format.rst, field by field."""
    stored = vector(b"", "vectors/empty.bin", lse1.AEAD_AES_256_GCM)
    assert stored[:8] == b"\x89LSE\r\n\x1a\n"
    assert stored[8:18] == bytes([1, 1, 1, 16, 20, 0, 1, 8, 0, 0])
    assert stored[18:26] == Key(VECTOR_KEY).id
    assert stored[26:58] == VECTOR_SALT
    assert len(stored) == H + lse1.TAG_SIZE + T
    assert struct.unpack(">H", stored[16:18]) == (0,)
    assert stored[-T:] == stored[:H] + struct.pack(">H", H)


@pytest.mark.parametrize(("plaintext", "name", "aead", "length", "digest"), VECTORS)
def test_vectors_are_stable(
    plaintext: bytes, name: str, aead: int, length: int, digest: str
) -> None:
    stored = vector(plaintext, name, aead)
    assert (len(stored), hashlib.sha256(stored).hexdigest()) == (length, digest)
    context = FileContext(name=name)
    layer = AesGcmLayer() if aead == lse1.AEAD_AES_256_GCM else ChaCha20Poly1305Layer()
    layer.__dict__["keyring"] = parse_keys([VECTOR_KEY], source="vectors")
    assert decode(stored, layer, context=context) == plaintext


@pytest.mark.parametrize(("plaintext", "name", "aead", "length", "digest"), VECTORS)
def test_vectors_follow_the_written_key_schedule(
    plaintext: bytes, name: str, aead: int, length: int, digest: str
) -> None:
    # An independent reading of the spec, with cryptography's own HKDF: if this and
    # the implementation disagree, one of them is not the documented format.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as chmac
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    stored = vector(plaintext, name, aead)
    extract = chmac.HMAC(VECTOR_SALT, hashes.SHA256())
    extract.update(VECTOR_KEY)
    prk = extract.finalize()
    encoded = name.encode()
    context = struct.pack(">H", 0) + struct.pack(">H", len(encoded)) + encoded
    transcript = hashlib.sha256(
        b"layered-storage/v1/transcript"
        + struct.pack(">I", H - 32)
        + stored[: H - 32]
        + struct.pack(">I", len(context))
        + context
    ).digest()

    def expand(info: bytes, size: int) -> bytes:
        return HKDFExpand(hashes.SHA256(), size, info).derive(prk)

    assert stored[H - 32 : H] == expand(b"ls1 commit" + transcript, 32)
    material = expand(b"ls1 seg" + struct.pack(">Q", 0) + transcript, 44)
    cipher = (AESGCM if aead == lse1.AEAD_AES_256_GCM else ChaCha20Poly1305)(
        material[:32]
    )
    assert stored[-T:] == stored[:H] + struct.pack(">H", H)  # the trailer
    body = stored[H:-T]
    recovered = b""
    for index in range((len(body) + TAGGED - 1) // TAGGED):
        chunk = body[index * TAGGED : (index + 1) * TAGGED]
        final = (index + 1) * TAGGED >= len(body)
        nonce = (int.from_bytes(material[32:], "big") ^ index).to_bytes(12, "big")
        recovered += cipher.decrypt(nonce, chunk, b"\x01" if final else b"\x00")
    assert recovered == plaintext


def test_files_spanning_many_key_epochs_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Writers change AEAD keys every 2**20 segments; with epochs of two segments the
    # key schedule and the reader's epoch cache are exercised on a small file.
    monkeypatch.setattr(lse1, "WRITE_EPOCH_LOG2", 1)
    data = sample(15 * SEGMENT + 123)
    stored = encode(data)
    assert stored[12] == 1
    assert decode(stored) == data
    pipeline = Pipeline([AesGcmLayer()], ReadPolicy())
    with pipeline.decode(io.BytesIO(stored), CONTEXT) as reader:
        for offset in (14 * SEGMENT, 0, 9 * SEGMENT + 5, 3 * SEGMENT, 15 * SEGMENT):
            reader.seek(offset)
            assert reader.read(SEGMENT) == data[offset : offset + SEGMENT]
    swapped = bytearray(stored)
    first, third = H, H + 2 * TAGGED  # segments 0 and 2: epochs 0 and 1
    swapped[first : first + TAGGED], swapped[third : third + TAGGED] = (
        stored[third : third + TAGGED],
        stored[first : first + TAGGED],
    )
    with pytest.raises(SegmentAuthenticationError):
        decode(bytes(swapped))
