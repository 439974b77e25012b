"""The attack suite: what an adversary with write access to the inner storage can do.

Every stack is attacked through ``LayeredStorage`` over real inner backends: cuts and
extensions at every boundary of the outermost format, flipped bits in the container
metadata, segments and frames reordered or spliced from files written with the same
key, whole files swapped between names, hostile size and count claims (memory and time
measured in a fresh process) and a seeded fuzz of thousands of mutated files. The one
rule: a read path returns exactly the bytes that were saved, or raises a
``LayeredStorageError`` that names the file; never fewer or other bytes, never
another exception type.

tests/layers/test_encryption.py already covers the LSE1 layer on its own (every header
bit, cuts with the trailer kept, segment reordering); here the same attacks meet the
stacks, the LSZ1 container and the storage read paths (``size()``, ``open()``, seeks).
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import accumulate, pairwise
from pathlib import Path
from typing import Any

import pytest
import zstandard as zstd
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage import LayeredStorage, LayeredStorageError
from layered_storage.format import lse1, lsz1
from layered_storage.layers.base import PAYLOAD_LSZ1, FileContext, ReadPolicy
from layered_storage.layers.compression import CompressingStream
from layered_storage.layers.encryption import (
    DecryptingReader,
    EncryptingStream,
)
from layered_storage.pipeline import Pipeline
from layered_storage.streams import WHOLE_READ
from tests.conftest import make_storage
from tests.utils import replace_stored, sample, stored_bytes

MIB = 1024 * 1024
FRAME_LOG2 = 12  # the smallest frames and segments readers accept: small files, many
SEGMENT_LOG2 = 12  # boundaries
F = 1 << FRAME_LOG2
S = 1 << SEGMENT_LOG2
TAGGED = S + lse1.TAG_SIZE
H = lse1.DIRECT_HEADER_SIZE
T = lse1.TRAILER_SIZE
FOOTER = lsz1.FOOTER_SIZE

STACKS = [["zstd"], ["aes-gcm"], ["zstd", "aes-gcm"], ["aes-gcm", "zstd"]]
ENCRYPTED = [stack for stack in STACKS if "aes-gcm" in stack]
#: The stacks whose stored bytes are an LSE1 object, authenticated to the last byte.
LSE1_OUTSIDE = [["aes-gcm"], ["zstd", "aes-gcm"]]
#: The stacks whose stored bytes are an LSZ1 container (unauthenticated outside).
LSZ1_OUTSIDE = [["zstd"], ["aes-gcm", "zstd"]]


def stack_id(stack: list[str]) -> str:
    return "+".join(stack)


def specs(stack: list[str]) -> list[Any]:
    """Return ``stack`` as layer specs, with the smallest zstd frames."""
    return [
        ("zstd", {"frame_log2": FRAME_LOG2}) if layer == "zstd" else layer
        for layer in stack
    ]


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    # Writers use 64 KiB segments; a reader takes the size from each file's header
    # and accepts 4 KiB, so multi-segment files stay a few KiB and fast to attack.
    monkeypatch.setattr(lse1, "WRITE_SEGMENT_LOG2", SEGMENT_LOG2)


def layered(settings: Any, tmp_path: Path, kind: str, stack: list[str]) -> Any:
    return make_storage(settings, tmp_path, kind, specs(stack))


def sibling(storage: LayeredStorage, stack: list[str]) -> LayeredStorage:
    """Return a storage with ``stack`` over the same inner storage as ``storage``."""
    return LayeredStorage(inner=storage.inner_alias, layers=specs(stack))


def saved(storage: LayeredStorage, name: str, data: bytes) -> tuple[str, bytes]:
    """Save ``data`` as ``name``; return the name used and the stored bytes."""
    used = storage.save(name, ContentFile(data))
    return used, stored_bytes(storage.inner, used)


def written_as(storage: LayeredStorage, name: str, data: bytes) -> bytes:
    """Return the bytes ``storage`` stores for ``data`` saved as ``name``, leaving
    nothing stored: a file the attacker kept from an earlier write of ``name``."""
    used, stored = saved(storage, name, data)
    assert used == name, "the name is free, so it must be used as given"
    storage.delete(used)
    return stored


# -- read paths and the one rule --------------------------------------------------


def seek_pattern(size: int) -> list[tuple[int, int]]:
    """Return ``(offset, count)`` reads that jump around, back to the start included
    (after a random access), and to the last bytes; -1 reads to the end."""
    return [
        (F + 1, 10),
        (0, F + 10),
        (size // 2, 100),
        (max(size - 5, 0), 10),
        (size // 3, -1),
        (0, 10),
        (size + 3, 1),
    ]


def first_difference(got: bytes, expected: bytes) -> str:
    at = next(
        (i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
        min(len(got), len(expected)),
    )
    return f"{len(got)} bytes instead of {len(expected)}, first difference at {at}"


def read_paths(
    storage: LayeredStorage, name: str, expected: bytes
) -> dict[str, Callable[[], None]]:
    """Return the read paths over ``name``; each asserts what it returns."""

    def size() -> None:
        got = storage.size(name)
        if got != len(expected):
            raise AssertionError(f"size() answered {got}, not {len(expected)}")

    def read_all() -> None:
        with storage.open(name) as opened:
            got = opened.read()
        if got != expected:
            raise AssertionError(f"read() returned {first_difference(got, expected)}")

    def seeks() -> None:
        with storage.open(name) as opened:
            for offset, count in seek_pattern(len(expected)):
                opened.seek(offset)
                got = opened.read(count)
                want = expected[offset:] if count < 0 else expected[offset:][:count]
                if got != want:
                    raise AssertionError(
                        f"read({count}) after seek({offset}) returned "
                        + first_difference(got, want)
                    )
            end = opened.seek(0, io.SEEK_END)
            if (end, opened.size) != (len(expected), len(expected)):
                raise AssertionError(f"the end is at {end}, size {opened.size}")

    return {"size": size, "read": read_all, "seeks": seeks}


def rejecting_paths(
    storage: LayeredStorage, name: str, expected: bytes, *, missing: bool = False
) -> list[str]:
    """Run every read path over ``name``; return those that raised a library error.

    A path that does not raise returned exactly ``expected`` (its own assertions).
    ``missing``: the file was deleted, so FileNotFoundError counts as a rejection.

    Raises:
        AssertionError: wrong bytes, a library error that does not name the file,
            or an exception of another type.
    """
    rejected = []
    for path, run in read_paths(storage, name, expected).items():
        try:
            run()
        except LayeredStorageError as exc:
            if name not in str(exc):
                raise AssertionError(
                    f"{path}: {type(exc).__name__} does not name the file: {exc}"
                ) from exc
            rejected.append(path)
        except FileNotFoundError:
            if not missing:
                raise
            rejected.append(path)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from exc
        except Exception as exc:
            raise AssertionError(
                f"{path} raised {type(exc).__name__}, not a LayeredStorageError: {exc}"
            ) from exc
    return rejected


PATHS = ["size", "read", "seeks"]


def attack(
    storage: LayeredStorage,
    name: str,
    expected: bytes,
    forged: bytes,
    case: str,
    *,
    every: bool = False,
) -> str | None:
    """Store ``forged`` as ``name``; return why the attack succeeded, or None.

    It succeeds when a read path returns anything but ``expected``, when the whole
    read does not fail, or (``every``) when any path does not fail. A path that does
    not touch the changed bytes may answer truly: a size from an intact end, a seek
    into untouched frames.
    """
    replace_stored(storage.inner, name, forged)
    try:
        rejected = rejecting_paths(storage, name, expected)
    except AssertionError as exc:
        return f"{case}: {exc}"
    required = PATHS if every else ["read"]
    if not set(required) <= set(rejected):
        accepted = sorted(set(required) - set(rejected))
        return f"{case}: {accepted} accepted the forged file"
    return None


def assert_reads_back(storage: LayeredStorage, name: str, data: bytes) -> None:
    """Every read path returns ``data`` exactly: the file was not attacked."""
    for path, run in read_paths(storage, name, data).items():
        try:
            run()
        except Exception as exc:
            raise AssertionError(f"{path} refused an intact file: {exc!r}") from exc


# -- where the parts of a stored object meet ------------------------------------------


def lsz1_table(stored: bytes) -> tuple[int, list[int]]:
    """Return where the seek table of an LSZ1 stream starts and its compressed sizes
    (read independently of the library's parser)."""
    count, flags = struct.unpack("<IB", stored[-FOOTER:-4])
    width = 12 if flags & 0x80 else 8
    start = len(stored) - (8 + count * width + FOOTER)
    sizes = [
        struct.unpack_from("<I", stored, start + 8 + i * width)[0] for i in range(count)
    ]
    return start, sizes


def boundaries(stored: bytes) -> list[int]:
    """Return the offsets where the parts of an LSE1 or LSZ1 object meet: magic,
    header, every segment or frame, trailer or seek table, footer."""
    if stored.startswith(lse1.MAGIC):
        segment = 1 << stored[11]
        trailer = len(stored) - T
        edges = [8, lse1.FIXED_SIZE, H, *range(H, trailer, segment + 16), trailer]
        edges.append(len(stored) - lse1.TRAILER_LENGTH_SIZE)
    else:
        table, sizes = lsz1_table(stored)
        edges = [12, *accumulate(sizes), table, table + 8, len(stored) - FOOTER]
        edges.append(len(stored) - 5)
    return sorted(set(edges) - {len(stored)})


def tail_part(stored: bytes) -> bytes:
    """Return what closes the object: the LSE1 trailer or the LSZ1 seek table."""
    if stored.startswith(lse1.MAGIC):
        return stored[-T:]
    return stored[lsz1_table(stored)[0] :]


def cuts(stored: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield every truncation around every boundary, also with the closing part
    (trailer, seek table) put back after the cut as an attacker would."""
    tail = tail_part(stored)
    for edge in [0, *boundaries(stored)]:
        for length in (edge - 1, edge, edge + 1):
            if 0 <= length < len(stored):
                yield f"cut to {length}", stored[:length]
            if 0 < length < len(stored) - len(tail):
                yield f"cut to {length}, tail kept", stored[:length] + tail


def extensions(stored: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield appended bytes of every kind and bytes inserted at every boundary."""
    rng = random.Random(len(stored))
    tail = tail_part(stored)
    appended = {
        "a zero byte": b"\x00",
        "a 0xff byte": b"\xff",
        "its last 2 bytes": stored[-2:],
        "its last 9 bytes": stored[-FOOTER:],
        "a tag's worth": rng.randbytes(lse1.TAG_SIZE),
        "its closing part again": tail,
        "a segment's worth": rng.randbytes(TAGGED),
        "itself": stored,
    }
    for what, extra in appended.items():
        yield f"appended {what}", stored + extra
    for edge in boundaries(stored):
        yield f"a byte inserted at {edge}", stored[:edge] + b"\x00" + stored[edge:]
        block = stored[max(edge - 16, 0) : edge]
        yield f"16 bytes repeated at {edge}", stored[:edge] + block + stored[edge:]


BOUNDARY_SIZES = [0, 2 * F, 3 * F + 7]
BOUNDARY_CASES = [
    pytest.param(kind, stack, size, id=f"{kind}-{stack_id(stack)}-{size}")
    for kind in ("filesystem", "memory")
    for stack in STACKS
    for size in BOUNDARY_SIZES
] + [  # one stack per outermost format over S3's ranged reads
    pytest.param("s3", stack, 3 * F + 7, id=f"s3-{stack_id(stack)}-{3 * F + 7}")
    for stack in (["zstd"], ["zstd", "aes-gcm"])
]


@pytest.mark.parametrize(("kind", "stack", "size"), BOUNDARY_CASES)
def test_every_cut_and_extension_at_every_boundary_is_rejected(
    settings: Any, tmp_path: Path, kind: str, stack: list[str], size: int
) -> None:
    storage = layered(settings, tmp_path, kind, stack)
    data = sample(size, size)
    name, stored = saved(storage, "attacked/report.txt", data)
    assert_reads_back(storage, name, data)
    forgeries = [*cuts(stored), *extensions(stored)]
    failures = [
        failure
        for case, forged in forgeries
        if (failure := attack(storage, name, data, forged, case, every=True))
    ]
    assert not failures, f"{len(failures)} of {len(forgeries)} accepted:\n" + "\n".join(
        failures
    )


# -- flipped bits in the container metadata -------------------------------------------


def flipped(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def lsz1_metadata(stream: bytes) -> tuple[list[int], list[int]]:
    """Return the byte offsets of an LSZ1 stream's metadata: those every reader must
    check (descriptor, seek-table header, entries, footer) and the per-frame
    checksums of the seek table (they may be checked against the frames' own).

    The last entry's plaintext size is left out: see
    ``test_size_agrees_with_the_last_frame``.
    """
    table, sizes = lsz1_table(stream)
    width = 12 if stream[-5] & 0x80 else 8
    checked = [*range(lsz1.DESCRIPTOR_SIZE), *range(table, table + 8)]
    checksums: list[int] = []
    for index in range(len(sizes)):
        entry = table + 8 + index * width
        last = index == len(sizes) - 1
        checked += range(entry, entry + (4 if last else 8))
        checksums += range(entry + 8, entry + width)
    checked += range(len(stream) - FOOTER, len(stream))
    return checked, checksums


def check_flips(
    storage: LayeredStorage,
    name: str,
    data: bytes,
    offsets: list[int],
    forge: Callable[[int], bytes],
) -> list[str]:
    """Flip every bit at ``offsets`` (through ``forge``); return the failures."""
    failures = []
    for offset in offsets:
        for bit in range(8):
            case = f"bit {bit} of byte {offset} flipped"
            if failure := attack(storage, name, data, forge(offset * 8 + bit), case):
                failures.append(failure)
    return failures


@pytest.mark.parametrize("stack", LSZ1_OUTSIDE, ids=stack_id)
def test_every_bit_of_the_outer_container_metadata_is_checked(
    settings: Any, tmp_path: Path, stack: list[str]
) -> None:
    storage = layered(settings, tmp_path, "memory", stack)
    data = sample(3 * F + 7, 1)
    name, stored = saved(storage, "flips.txt", data)
    assert_reads_back(storage, name, data)
    checked, checksums = lsz1_metadata(stored)
    failures = check_flips(
        storage, name, data, checked, lambda bit: flipped(stored, bit)
    )
    assert not failures, "\n".join(failures)
    for offset in checksums:  # unread or checked: never wrong bytes
        for bit in range(8):
            replace_stored(storage.inner, name, flipped(stored, offset * 8 + bit))
            rejecting_paths(storage, name, data)


def decrypted_payload(storage: LayeredStorage, name: str, stored: bytes) -> bytes:
    """Return the plaintext payload of an LSE1 object: what the key holder sees."""
    reader = DecryptingReader(
        io.BytesIO(stored),
        keyring=storage.pipeline.keyring(),
        context=storage.context(name),
        policy=ReadPolicy(),
    )
    with reader:
        return reader.read()


def encrypted_payload(
    storage: LayeredStorage, name: str, payload: bytes, payload_type: int
) -> bytes:
    """Return ``payload`` sealed for ``name`` with the storage's key: a file only a
    key holder (a malicious or buggy writer) could make."""
    context = storage.context(name)
    stream = EncryptingStream(
        io.BytesIO(payload),
        key=storage.pipeline.keyring().primary,
        aead_id=lse1.AEAD_AES_256_GCM,
        payload=payload_type,
        binding=lse1.binding_context(context.namespace, name),
    )
    return stream.read()


def test_every_bit_of_the_inner_container_metadata_is_checked(
    settings: Any, tmp_path: Path
) -> None:
    # A key holder can seal any LSZ1 stream: the container inside LSE1 gets the
    # same checks as one outside, so no malformed table or descriptor is trusted.
    storage = layered(settings, tmp_path, "memory", ["zstd", "aes-gcm"])
    data = sample(3 * F + 7, 2)
    name, stored = saved(storage, "inner-flips.txt", data)
    assert_reads_back(storage, name, data)
    inner = decrypted_payload(storage, name, stored)
    assert lsz1.is_lsz1(inner)
    assert encrypted_payload(storage, name, inner, PAYLOAD_LSZ1) != stored
    checked, checksums = lsz1_metadata(inner)
    assert not checksums  # inside LSE1 the AEAD authenticates: no checksums

    def forge(bit: int) -> bytes:
        return encrypted_payload(storage, name, flipped(inner, bit), PAYLOAD_LSZ1)

    failures = check_flips(storage, name, data, checked, forge)
    assert not failures, "\n".join(failures)


def with_last_size(stream: bytes, size: int) -> bytes:
    """Return ``stream`` with the plaintext size in its last seek-table entry
    replaced (the frame itself unchanged)."""
    table, sizes = lsz1_table(stream)
    width = 12 if stream[-5] & 0x80 else 8
    at = table + 8 + (len(sizes) - 1) * width + 4
    return stream[:at] + struct.pack("<I", size) + stream[at + 4 :]


@pytest.mark.parametrize("stack", [["zstd"]], ids=stack_id)
def test_size_agrees_with_the_last_frame(
    settings: Any, tmp_path: Path, stack: list[str]
) -> None:
    # size() must not answer a length that read() then refuses: the last frame's
    # own header says how much it holds, and it lies next to the table. Compress
    # only, anyone can change the table. Inside LSE1 only a key holder can, who
    # could as well write any consistent file: not checked there, as it would cost
    # size() a second request on S3.
    storage = layered(settings, tmp_path, "memory", stack)
    data = sample(3 * F + 7, 12)
    name, stored = saved(storage, "last-frame.txt", data)
    assert_reads_back(storage, name, data)
    encrypted = stored.startswith(lse1.MAGIC)
    stream = decrypted_payload(storage, name, stored) if encrypted else stored

    def forge(last: int) -> bytes:
        changed = with_last_size(stream, last)
        if encrypted:
            return encrypted_payload(storage, name, changed, PAYLOAD_LSZ1)
        return changed

    failures = []
    for last in (6, 8, F):
        case = f"last entry claims {last} bytes"
        if failure := attack(storage, name, data, forge(last), case, every=True):
            failures.append(failure)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "stack", [["zstd", "aes-gcm"], ["aes-gcm", "zstd"]], ids=stack_id
)
def test_every_parameter_bit_of_a_stacked_lse1_header_is_authenticated(
    settings: Any, tmp_path: Path, stack: list[str]
) -> None:
    # The parameters (AEAD, KDF, segment size, epochs, payload type, flags) changed
    # in both copies, as an attacker who knows the format would; under compression
    # the payload type is the interesting one (LSZ1 vs raw).
    storage = layered(settings, tmp_path, "memory", stack)
    data = sample(3 * F + 7, 3)
    name, stored = saved(storage, "params.txt", data)
    assert_reads_back(storage, name, data)
    outside = stored.startswith(lse1.MAGIC)
    header_file = stored if outside else lse1_of(stored)

    def forge(bit: int) -> bytes:
        copies = flipped(header_file, bit)
        copies = flipped(copies, (len(copies) - T) * 8 + bit)
        return copies if outside else rewrapped(copies)

    failures = check_flips(storage, name, data, list(range(9, 15)), forge)
    assert not failures, "\n".join(failures)


# -- reordering, splicing, swapping ---------------------------------------------------


def lse1_of(stored: bytes) -> bytes:
    """Return the LSE1 object inside an outer LSZ1 container (no key needed)."""
    decoder = zstd.ZstdDecompressor().stream_reader(
        io.BytesIO(stored), read_across_frames=True
    )
    data: bytes = decoder.read()
    return data


def rewrapped(lse1_object: bytes) -> bytes:
    """Return a valid outer LSZ1 container around ``lse1_object``: the container
    carries no key, so an attacker can rebuild it around any bytes."""
    stream = CompressingStream(
        io.BytesIO(lse1_object),
        level=3,
        frame_log2=FRAME_LOG2,
        checksums=True,
        payload=lsz1.PAYLOAD_LSE1,
    )
    return stream.read()


def segments(lse1_object: bytes) -> list[bytes]:
    """Return the sealed segments of an LSE1 object (header and trailer left out)."""
    size = (1 << lse1_object[11]) + lse1.TAG_SIZE
    body = lse1_object[H:-T]
    return [body[i : i + size] for i in range(0, len(body), size)]


def rebuilt(lse1_object: bytes, parts: list[bytes]) -> bytes:
    return lse1_object[:H] + b"".join(parts) + lse1_object[-T:]


def segment_forgeries(
    own: bytes, same_name: bytes, other_name: bytes
) -> Iterator[tuple[str, bytes]]:
    """Yield LSE1 objects made of ``own``'s segments moved around, or mixed with
    those of another write of the same name and of a file of another name, all
    sealed with the same key."""
    mine, theirs, others = segments(own), segments(same_name), segments(other_name)
    assert len(mine) >= 4, "need segments to move"
    moved = {
        "segments 0 and 1 swapped": [mine[1], mine[0], *mine[2:]],
        "segment 0 repeated": [mine[0], mine[0], *mine[2:]],
        "segment 1 deleted": [mine[0], *mine[2:]],
        "segment 1 repeated": [mine[0], mine[1], mine[1], *mine[2:]],
        "final segment moved first": [mine[-1], *mine[1:-1], mine[0]],
        "segment 1 of the same name's other write": [mine[0], theirs[1], *mine[2:]],
        "final segment of the same name's other write": [*mine[:-1], theirs[-1]],
        "segment 1 of another name": [mine[0], others[1], *mine[2:]],
        "segment 0 of another name": [others[0], *mine[1:]],
    }
    for case, parts in moved.items():
        yield case, rebuilt(own, parts)
    yield "body of the same name's other write", rebuilt(own, theirs)
    yield "header and trailer of the same name's other write", rebuilt(same_name, mine)
    yield "header and trailer of another name", rebuilt(other_name, mine)


@pytest.mark.parametrize("kind", ["filesystem", "memory"])
@pytest.mark.parametrize("stack", ENCRYPTED, ids=stack_id)
def test_reordered_and_spliced_segments_are_rejected(
    settings: Any, tmp_path: Path, kind: str, stack: list[str]
) -> None:
    storage = layered(settings, tmp_path, kind, stack)
    size = 8 * F + 7  # at least four segments even after compression
    data, other_data = sample(size, 4), sample(size, 5)
    same_name = written_as(storage, "ledger.txt", other_data)
    other_name = written_as(storage, "journal.txt", data)  # even the same content
    name, stored = saved(storage, "ledger.txt", data)
    assert name == "ledger.txt"
    assert_reads_back(storage, name, data)
    outside = stored.startswith(lse1.MAGIC)

    def unwrap(stored: bytes) -> bytes:
        return stored if outside else lse1_of(stored)

    failures = []
    for case, forged in segment_forgeries(
        unwrap(stored), unwrap(same_name), unwrap(other_name)
    ):
        # Under an outer LSZ1 the attacker rebuilds a valid container around it.
        final = forged if outside else rewrapped(forged)
        if failure := attack(storage, name, data, final, case):
            failures.append(failure)
    assert not failures, "\n".join(failures)


def frames(stream: bytes) -> list[bytes]:
    """Return the stored data frames of an LSZ1 stream, in order."""
    _, sizes = lsz1_table(stream)
    return [stream[start:end] for start, end in pairwise(accumulate(sizes))]


def with_frames(stream: bytes, parts: list[bytes], *, new_table: bool = False) -> bytes:
    """Return ``stream`` with its data frames replaced, the descriptor kept and the
    seek table kept or (``new_table``) rewritten to describe them, checksums and
    all, as anyone can without a key."""
    table, _ = lsz1_table(stream)
    if not new_table:
        return stream[: lsz1.DESCRIPTOR_SIZE] + b"".join(parts) + stream[table:]
    entries = b"".join(
        struct.pack(
            "<II4s",
            len(part),
            zstd.get_frame_parameters(part).content_size,
            part[-4:],  # the frame's own checksum, which the table repeats
        )
        for part in parts
    )
    rewritten = seek_table(entries, len(parts), checksums=True)
    return stream[: lsz1.DESCRIPTOR_SIZE] + b"".join(parts) + rewritten


def test_frames_moved_or_spliced_under_an_outer_container_are_rejected(
    settings: Any, tmp_path: Path
) -> None:
    # In ["aes-gcm", "zstd"] the container carries no key: with its seek table
    # rewritten, frames moved or taken from another write pass every container
    # check, and only the LSE1 segments inside can tell.
    storage = layered(settings, tmp_path, "memory", ["aes-gcm", "zstd"])
    data, other_data = sample(6 * F, 6), sample(6 * F, 7)
    same_name = written_as(storage, "frames.txt", other_data)
    name, stored = saved(storage, "frames.txt", data)
    assert_reads_back(storage, name, data)
    mine, theirs = frames(stored), frames(same_name)
    assert len(mine) >= 3
    assert len(mine[0]) == len(mine[1]) == len(theirs[1])  # raw blocks: equal sizes
    assert with_frames(stored, mine, new_table=True) == stored
    forgeries = {
        "frames 0 and 1 swapped": [mine[1], mine[0], *mine[2:]],
        "frame 0 repeated": [mine[0], mine[0], *mine[2:]],
        "frame 1 deleted": [mine[0], *mine[2:]],
        "frame 1 of the same name's other write": [mine[0], theirs[1], *mine[2:]],
    }
    failures = []
    for case, parts in forgeries.items():
        for new_table in (False, True):
            forged = with_frames(stored, parts, new_table=new_table)
            label = f"{case}, table {'rewritten' if new_table else 'kept'}"
            if failure := attack(storage, name, data, forged, label):
                failures.append(failure)
    assert not failures, "\n".join(failures)


def test_frame_spliced_into_a_compress_only_file_fails_its_table_checksum(
    settings: Any, tmp_path: Path
) -> None:
    # Unauthenticated: an attacker who rewrites the table too gets anything through.
    # But a frame from another write at the same place (a restored block, a mixed
    # backup) disagrees with the checksum the seek table holds for that place.
    storage = layered(settings, tmp_path, "memory", ["zstd"])
    rng = random.Random(8)
    data, other_data = rng.randbytes(3 * F + 7), rng.randbytes(3 * F + 7)
    same_name = written_as(storage, "raw.bin", other_data)
    name, stored = saved(storage, "raw.bin", data)
    assert_reads_back(storage, name, data)
    mine, theirs = frames(stored), frames(same_name)
    assert len(mine[1]) == len(theirs[1])
    forged = with_frames(stored, [mine[0], theirs[1], *mine[2:]])
    assert attack(storage, name, data, forged, "frame 1 spliced") is None


@pytest.mark.parametrize("kind", ["filesystem", "memory", "s3"])
@pytest.mark.parametrize("stack", ENCRYPTED, ids=stack_id)
def test_files_swapped_between_names_fail_to_open(
    settings: Any, tmp_path: Path, kind: str, stack: list[str]
) -> None:
    storage = layered(settings, tmp_path, kind, stack)
    first, second = sample(2 * F + 1, 9), sample(2 * F + 1, 10)
    one, one_stored = saved(storage, "invoices/1.txt", first)
    two, two_stored = saved(storage, "invoices/2.txt", second)
    assert_reads_back(storage, one, first)
    assert_reads_back(storage, two, second)
    failures = [
        attack(storage, one, first, two_stored, "2 stored as 1"),
        attack(storage, two, second, one_stored, "1 stored as 2"),
    ]
    assert failures == [None, None], failures


# -- hostile size and count claims, measured in a fresh process -----------------------


def seek_table(
    entries: bytes, count: int, checksums: bool, *, declared: int | None = None
) -> bytes:
    """Return a seek-table frame over raw ``entries`` bytes (descriptor's included)
    whose footer claims ``declared`` entries (default ``count``)."""
    width = 12 if checksums else 8
    descriptor_entry = struct.pack("<II", lsz1.DESCRIPTOR_SIZE, 0)
    if checksums:
        descriptor_entry += bytes(4)
    body = descriptor_entry + entries
    assert len(body) == (count + 1) * width
    footer = struct.pack(
        "<IBI",
        (count + 1) if declared is None else declared,
        0x80 if checksums else 0,
        lsz1.SEEK_TABLE_FOOTER_MAGIC,
    )
    return struct.pack("<II", lsz1.SKIPPABLE_SEEK_TABLE, len(body) + FOOTER) + (
        body + footer
    )


def zero_frames(
    count: int, frame_log2: int, checksums: bool, payload: int = lsz1.PAYLOAD_RAW
) -> tuple[bytes, bytes, bytes]:
    """Return the descriptor, ``count`` stored frames of zeros and their entries."""
    compressor = zstd.ZstdCompressor(
        level=1, write_content_size=True, write_checksum=checksums
    )
    frame = compressor.compress(bytes(1 << frame_log2))
    entry = struct.pack("<II", len(frame), 1 << frame_log2)
    if checksums:
        entry += frame[-4:]
    descriptor = lsz1.Descriptor(frame_log2, checksums, payload).to_bytes()
    return descriptor, frame * count, entry * count


def footer_claims_2_27_frames(storage: LayeredStorage, name: str) -> bytes:
    descriptor, _, _ = zero_frames(0, FRAME_LOG2, True)
    return descriptor + seek_table(b"", 0, True, declared=2**27)


def footer_claims_2_32_frames(storage: LayeredStorage, name: str) -> bytes:
    descriptor, _, _ = zero_frames(0, FRAME_LOG2, True)
    return descriptor + seek_table(b"", 0, True, declared=2**32 - 1)


LYING_ENTRIES = 512 * 1024  # a 6 MiB seek table describing frames that are not there


def table_of_half_a_million_absent_frames(storage: LayeredStorage, name: str) -> bytes:
    descriptor, _, entries = zero_frames(LYING_ENTRIES, FRAME_LOG2, True)
    return descriptor + seek_table(entries, LYING_ENTRIES, True)


def outer_table_of_half_a_million_absent_frames(
    storage: LayeredStorage, name: str
) -> bytes:
    descriptor, _, entries = zero_frames(
        LYING_ENTRIES, FRAME_LOG2, True, lsz1.PAYLOAD_LSE1
    )
    return descriptor + seek_table(entries, LYING_ENTRIES, True)


def sealed_table_of_half_a_million_absent_frames(
    storage: LayeredStorage, name: str
) -> bytes:
    descriptor, _, entries = zero_frames(LYING_ENTRIES, FRAME_LOG2, False)
    payload = descriptor + seek_table(entries, LYING_ENTRIES, False)
    return encrypted_payload(storage, name, payload, PAYLOAD_LSZ1)


def half_a_million_real_frames(storage: LayeredStorage, name: str) -> bytes:
    # Valid: 2 GiB of zeros in 4 KiB frames, about 10 MiB stored.
    descriptor, data, entries = zero_frames(LYING_ENTRIES, FRAME_LOG2, True)
    return descriptor + data + seek_table(entries, LYING_ENTRIES, True)


def half_a_million_frames_and_a_stray_byte(storage: LayeredStorage, name: str) -> bytes:
    # The table fits and is read whole before its sizes fail to add up.
    descriptor, data, entries = zero_frames(LYING_ENTRIES, FRAME_LOG2, True)
    return descriptor + data + b"\x00" + seek_table(entries, LYING_ENTRIES, True)


BOMB_FRAMES = 64  # of 8 MiB: 512 MiB of zeros in about 20 KiB


def bomb_with_a_table_off_by_one(storage: LayeredStorage, name: str) -> bytes:
    descriptor, data, entries = zero_frames(BOMB_FRAMES, 23, True)
    return descriptor + data + b"\x00" + seek_table(entries, BOMB_FRAMES, True)


def bomb_of_8_mib_frames(storage: LayeredStorage, name: str) -> bytes:
    descriptor, data, entries = zero_frames(BOMB_FRAMES // 4, 23, True)
    return descriptor + data + seek_table(entries, BOMB_FRAMES // 4, True)


def frame_claiming_2_40_bytes(storage: LayeredStorage, name: str) -> bytes:
    descriptor, frame, entry = zero_frames(1, FRAME_LOG2, True)
    # Frame header descriptor 0xE0: single segment, 8-byte content size.
    header = lsz1.ZSTD_FRAME_MAGIC + b"\xe0" + struct.pack("<Q", 2**40)
    forged = header + frame[len(header) - 4 :]
    entry = struct.pack("<II", len(forged), F) + entry[8:]
    return descriptor + forged + seek_table(entry, 1, True)


def lse1_header_claiming_4_mib_segments(storage: LayeredStorage, name: str) -> bytes:
    honest = written_as(storage, name, b"x")
    header = bytearray(honest[:H])
    header[11] = 22  # 4 MiB segments, commitment left as it was
    body = random.Random(11).randbytes(3 * ((1 << 22) + 16) + 100)
    return bytes(header) + body + lse1.trailer(bytes(header))


#: (how to build it, stack, plaintext size of a valid file; None: must be refused).
HOSTILE: list[tuple[Callable[[LayeredStorage, str], bytes], list[str], int | None]] = [
    (footer_claims_2_27_frames, ["zstd"], None),
    (footer_claims_2_32_frames, ["zstd"], None),
    (table_of_half_a_million_absent_frames, ["zstd"], None),
    (outer_table_of_half_a_million_absent_frames, ["aes-gcm", "zstd"], None),
    (sealed_table_of_half_a_million_absent_frames, ["zstd", "aes-gcm"], None),
    (half_a_million_real_frames, ["zstd"], LYING_ENTRIES * F),
    (half_a_million_frames_and_a_stray_byte, ["zstd"], None),
    (bomb_with_a_table_off_by_one, ["zstd"], None),
    (bomb_of_8_mib_frames, ["zstd"], BOMB_FRAMES // 4 * 8 * MIB),
    (frame_claiming_2_40_bytes, ["zstd"], None),
    (lse1_header_claiming_4_mib_segments, ["aes-gcm"], None),
]


def test_hostile_claims_stay_within_memory_and_time_bounds(
    settings: Any, tmp_path: Path
) -> None:
    location = tmp_path / "inner"
    probes = []
    base = layered(settings, tmp_path, "filesystem", ["zstd"])
    for build, stack, size in HOSTILE:
        storage = sibling(base, stack)
        case = build.__name__
        name = f"hostile/{case}.bin"
        stored = build(storage, name)
        base.inner.save(name, ContentFile(stored))
        probe = {"case": case, "stack": specs(stack), "name": name, "size": size}
        probes.append(probe)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys; from tests.utils import probe_reads; "
            "print(json.dumps(probe_reads(sys.argv[1], json.loads(sys.argv[2]))))",
            str(location),
            json.dumps(probes),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert done.returncode == 0, done.stderr
    reports = json.loads(done.stdout.strip().splitlines()[-1])
    summary = "\n".join(
        f"{r['case']}: {r['stored'] / MIB:.2f} MiB stored, peak +"
        f"{r['growth'] / MIB:.1f} MiB, "
        + ", ".join(f"{p} {o} in {t:.2f}s" for p, (o, t) in r["paths"].items())
        for r in reports
    )
    print(summary)
    problems = []
    for report, (_, _, size) in zip(reports, HOSTILE, strict=True):
        case, stored = report["case"], report["stored"]
        limit = max(1.0, stored / MIB)  # seconds: 1 per MiB stored, at least 1
        if report["growth"] > 64 * MIB:
            problems.append(f"{case}: peak RSS grew {report['growth'] / MIB:.0f} MiB")
        for path, (outcome, seconds) in report["paths"].items():
            if outcome not in ("exact", "rejected", "completed"):
                problems.append(f"{case}: {path} {outcome}")
            if outcome == "rejected" and seconds > limit:
                problems.append(f"{case}: {path} took {seconds:.1f}s to fail")
        if size is None and report["paths"]["read"][0] != "rejected":
            problems.append(f"{case}: read() did not refuse it")
        if size is not None:
            refused = [p for p, (o, _) in report["paths"].items() if o != "exact"]
            if refused:
                problems.append(f"{case}: {refused} refused a valid file")
    assert not problems, "\n".join(problems) + "\n" + summary


# -- the fuzz ------------------------------------------------------------------------

FUZZ_SEED = int(os.environ.get("LAYERED_FUZZ_SEED", "20250917"))
FUZZ_CASES = int(os.environ.get("LAYERED_FUZZ_CASES", "5000"))
FUZZ_SIZES = [0, 1, F - 1, F + 1, 3 * F + 7, 40 * F + 3]


class Corpus:
    """Valid files of every stack, for the mutations to start from and splice in."""

    def __init__(self, storages: dict[str, LayeredStorage]) -> None:
        self.storages = storages
        self.originals: dict[tuple[str, int], tuple[str, bytes, bytes]] = {}
        #: (stack, name, stored bytes) of every valid file, another write of each
        #: name included.
        self.donors: list[tuple[str, str, bytes]] = []
        for key, storage in storages.items():
            for size in FUZZ_SIZES:
                data = sample(size, size)
                name = f"fuzz/{key}/{size}.txt"
                other = written_as(storage, name, sample(size, size + 1))
                used, stored = saved(storage, name, data)
                assert used == name
                self.originals[key, size] = (name, data, stored)
                self.donors += [(key, name, other), (key, name, stored)]


def mutate(
    rng: random.Random, stored: bytes, corpus: Corpus, key: str, name: str
) -> tuple[str, bytes | None]:
    """Return a description and the mutated bytes (None: delete the file)."""
    kind = rng.choice(
        ["flip", "flips", "set", "insert", "delete", "truncate", "extend", "splice",
         "garbage", "other file", "empty", "missing"]
    )  # fmt: skip
    size = len(stored)
    at = rng.randrange(size + 1)
    if kind == "flip" and size:
        bit = rng.randrange(size * 8)
        return f"bit {bit} flipped", flipped(stored, bit)
    if kind == "flips" and size:
        bits = [rng.randrange(size * 8) for _ in range(rng.randint(2, 8))]
        changed = stored
        for bit in bits:
            changed = flipped(changed, bit)
        return f"bits {bits} flipped", changed
    if kind == "set" and size:
        at = rng.randrange(size)
        value = rng.randrange(256)
        return f"byte {at} set to {value}", stored[:at] + bytes((value,)) + stored[
            at + 1 :
        ]
    if kind == "insert":
        extra = rng.randbytes(rng.randint(1, 20))
        return f"{len(extra)} bytes inserted at {at}", stored[:at] + extra + stored[at:]
    if kind == "delete" and size:
        count = rng.randint(1, 20)
        return f"{count} bytes deleted at {at}", stored[:at] + stored[at + count :]
    if kind == "truncate":
        return f"truncated to {at}", stored[:at]
    if kind == "extend":
        extra = rng.randbytes(rng.randint(1, 64))
        return f"{len(extra)} bytes appended", stored + extra
    if kind in ("splice", "other file"):
        donors = [(k, n, d) for k, n, d in corpus.donors if d != stored]
        if kind == "other file":
            # Not another write of this name (a rollback: valid by design), nor any
            # compress-only file in a compress-only storage (nothing authenticates).
            donor_key, donor_name, donor = rng.choice(
                [
                    (k, n, d)
                    for k, n, d in donors
                    if not (k == key and (n == name or key == "zstd"))
                ]
            )
            return f"the valid {donor_key} file {donor_name!r}", donor
        donor_key, donor_name, donor = rng.choice(donors)
        start = rng.randrange(len(donor) + 1)
        length = rng.randint(1, 512)
        end = min(at + length, size)
        piece = donor[start : start + length]
        return (
            f"bytes {start}:{start + len(piece)} of {donor_key} {donor_name!r} over "
            f"{at}:{end}",
            stored[:at] + piece + stored[end:],
        )
    if kind == "garbage":
        prefix = rng.choice([b"", lse1.MAGIC, lsz1.DESCRIPTOR_HEAD, stored[:24]])
        return "garbage", prefix + rng.randbytes(rng.randint(0, 3 * S))
    if kind == "empty":
        return "emptied", b""
    if kind == "missing":
        return "deleted", None
    return "unchanged", stored


def test_fuzzed_files_read_back_exactly_or_fail_cleanly(
    settings: Any, tmp_path: Path
) -> None:
    """Seeded: a failure names its seed and case, and LAYERED_FUZZ_SEED and
    LAYERED_FUZZ_CASES replay or widen the run. Files get fresh salts each run, so
    a case replays the same mutation of the same plaintext's file."""
    base = layered(settings, tmp_path, "memory", ["zstd"])
    storages = {stack_id(stack): sibling(base, stack) for stack in STACKS}
    corpus = Corpus(storages)
    outside_lse1 = {stack_id(stack) for stack in LSE1_OUTSIDE}
    failures: list[str] = []
    for (key, size), (name, data, stored) in corpus.originals.items():
        replace_stored(storages[key].inner, name, stored)
        try:
            if refused := rejecting_paths(storages[key], name, data):
                failures.append(f"{key} {size} bytes, intact: {refused} refused it")
        except AssertionError as exc:
            failures.append(f"{key} {size} bytes, intact: {exc}")
    for case in range(FUZZ_CASES):
        rng = random.Random(f"{FUZZ_SEED}:{case}")
        key = rng.choice(sorted(storages))
        size = rng.choice(FUZZ_SIZES)
        name, data, stored = corpus.originals[key, size]
        what, mutated = mutate(rng, stored, corpus, key, name)
        where = f"LAYERED_FUZZ_SEED={FUZZ_SEED} case {case}: {key} {size} bytes, {what}"
        storage = storages[key]
        started = time.perf_counter()
        try:
            if mutated is None:
                storage.inner.delete(name)
            else:
                replace_stored(storage.inner, name, mutated)
            rejected = rejecting_paths(storage, name, data, missing=mutated is None)
        except AssertionError as exc:
            failures.append(f"{where}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        if mutated == stored and rejected:
            failures.append(f"{where}: {rejected} refused an intact file")
        elif mutated != stored and key in outside_lse1 and "read" not in rejected:
            failures.append(f"{where}: read() accepted a changed LSE1 object")
        if elapsed > max(1.0, len(mutated or b"") / MIB):
            failures.append(f"{where}: took {elapsed:.2f}s")
        if len(failures) >= 20:
            break
    assert not failures, "\n".join(failures)


#: Valid stored files, per (stack, size), encoded once for the hypothesis examples.
_ENCODED: dict[tuple[str, int], bytes] = {}
CONTEXT = FileContext(name="hypothesis/file.txt")


def pipeline_for(stack: list[str]) -> Pipeline:
    """Return the pipeline and read policy a storage of ``stack`` has."""
    from layered_storage.layers.base import build_layers

    encrypted = "aes-gcm" in stack
    policy = ReadPolicy(require_encryption=encrypted, require_name_binding=encrypted)
    return Pipeline(build_layers(specs(stack)), policy)


def encoded(stack: list[str], size: int) -> bytes:
    key = (stack_id(stack), size)
    if key not in _ENCODED:
        data = io.BytesIO(sample(size, size))
        _ENCODED[key] = pipeline_for(stack).encode(data, CONTEXT).read()
    return _ENCODED[key]


@hsettings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    stack=st.sampled_from(STACKS),
    size=st.sampled_from([0, 1, F + 1, 3 * F + 7]),
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.binary(min_size=0, max_size=8)),
        min_size=1,
        max_size=3,
    ),
    cut=st.integers(0, 40),
    extra=st.binary(max_size=40),
    offset=st.integers(0, 4 * F),
)
def test_edited_stacked_files_read_back_exactly_or_fail_cleanly(
    stack: list[str],
    size: int,
    edits: list[tuple[int, bytes]],
    cut: int,
    extra: bytes,
    offset: int,
) -> None:
    # Each edit replaces as many bytes as it brings (or deletes one when it brings
    # none), so lengths change as well as contents.
    original = encoded(stack, size)
    stored = bytearray(original)
    for position, value in edits:
        at = position % (len(stored) + 1)
        stored[at : at + max(len(value), 1)] = value
    mutated = bytes(stored[: max(len(stored) - cut, 0)] + extra)
    data = sample(size, size)
    pipeline = pipeline_for(stack)
    try:
        with pipeline.decode(io.BytesIO(mutated), CONTEXT) as reader:
            whole = reader.read()
            reader.seek(offset)
            part = reader.read(F + 1)
            length = reader.size
    except LayeredStorageError:
        return
    assert (whole, part, length) == (data, data[offset : offset + F + 1], size)
    if stack in LSE1_OUTSIDE:
        assert mutated == original, "a changed LSE1 object was read"


# -- small objects read whole at open, and the threshold -------------------------------

#: Text and noise by turns: it compresses, and its stored size grows with its length.
THRESHOLD_BASE = b"".join(
    noise + b"layered storage text " * 20
    for noise in map(random.Random(9).randbytes, [700] * 400)
)
_THRESHOLD_LENGTHS: dict[str, int] = {}


def length_stored_as(storage: LayeredStorage, stack: list[str], target: int) -> int:
    """Return how much of ``THRESHOLD_BASE`` ``stack`` stores in ``target`` bytes."""

    def stored(length: int) -> int:
        data = io.BytesIO(THRESHOLD_BASE[:length])
        return len(storage.pipeline.encode(data, CONTEXT).read())

    key = stack_id(stack)
    if key not in _THRESHOLD_LENGTHS:
        low, high = 0, len(THRESHOLD_BASE)
        while low < high:
            middle = (low + high) // 2
            low, high = (
                (middle + 1, high) if stored(middle) < WHOLE_READ else (low, middle)
            )
        _THRESHOLD_LENGTHS[key] = low
    length = _THRESHOLD_LENGTHS[key] + target - WHOLE_READ
    assert stored(length) == target, "one more byte of it stores one more byte"
    return length


def threshold_forgeries(stored: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield cuts and extensions at the ends of ``stored`` (some cross WHOLE_READ
    one way or the other), and for an LSE1 object, segments moved at both ends."""
    edges = boundaries(stored)
    near = {*edges[:3], *edges[-4:], len(stored) - 1, len(stored) - 17}
    for case, forged in [*cuts(stored), *extensions(stored)]:
        if any(f" {edge}" in case for edge in near) or case.startswith("appended"):
            yield case, forged
    if stored.startswith(lse1.MAGIC):
        mine = segments(stored)
        moved = {
            "segments 0 and 1 swapped": [mine[1], mine[0], *mine[2:]],
            "the last two full segments swapped": [
                *mine[:-3],
                *mine[-2:-4:-1],
                mine[-1],
            ],
            "the last full segment deleted": [*mine[:-2], mine[-1]],
            "segment 0 repeated": [mine[0], *mine],
        }
        for case, parts in moved.items():
            yield case, rebuilt(stored, parts)
    for at in (0, 20, H + 5, len(stored) // 2, len(stored) - T - 1, len(stored) - 3):
        yield f"bit flipped at {at}", flipped(stored, 8 * at)


def read_again_after_failure(
    storage: LayeredStorage, name: str, expected: bytes
) -> str:
    """Read ``name`` in steps until it fails, then seek back and read it again:
    return what went wrong, or ""."""
    try:
        opened = storage.open(name)
    except LayeredStorageError:
        return ""  # refused at open, as a small object is
    with opened:
        got = b""
        try:
            while chunk := opened.read(5000):
                got += chunk
        except LayeredStorageError:
            pass
        else:
            return "" if got == expected else "a stepped read returned wrong bytes"
        if not expected.startswith(got):
            return "a stepped read returned wrong bytes before failing"
        for offset in (0, len(got)):
            opened.seek(offset)
            try:
                again = opened.read()
            except LayeredStorageError:
                continue
            return f"a read from {offset} after the failure returned {len(again)} bytes"
    return ""


THRESHOLD_CASES = [
    pytest.param(kind, stack, target, id=f"{kind}-{stack_id(stack)}-{target}")
    for kind in ("filesystem", "memory")
    for stack in [*LSE1_OUTSIDE, ["zstd"]]
    for target in (WHOLE_READ - 1, WHOLE_READ, WHOLE_READ + 1)
] + [  # S3 reads a small object whole in its opening request, a larger one ranged
    pytest.param("s3", ["zstd", "aes-gcm"], target, id=f"s3-zstd+aes-gcm-{target}")
    for target in (WHOLE_READ, WHOLE_READ + 1)
]


@pytest.mark.parametrize(("kind", "stack", "target"), THRESHOLD_CASES)
def test_forgeries_at_the_whole_read_threshold_are_rejected(
    settings: Any, tmp_path: Path, kind: str, stack: list[str], target: int
) -> None:
    # Up to WHOLE_READ stored bytes, an object is read whole at open and its
    # payload decrypted whole; one byte more and it is read as it goes. A cut or
    # an extension by a byte moves a file across, and both ways must refuse it.
    storage = layered(settings, tmp_path, kind, stack)
    data = THRESHOLD_BASE[: length_stored_as(storage, stack, target)]
    name, stored = saved(storage, "threshold/file.txt", data)
    assert len(stored) == target
    if "zstd" in stack:
        assert lsz1.is_lsz1(stored) or stored[13] == PAYLOAD_LSZ1  # compressed
    assert_reads_back(storage, name, data)
    failures = []
    for case, forged in threshold_forgeries(stored):
        if failure := attack(storage, name, data, forged, case):
            failures.append(failure)
        elif problem := read_again_after_failure(storage, name, data):
            failures.append(f"{case}: {problem}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("size", [0, 1, 255, 256])
@pytest.mark.parametrize("stack", LSE1_OUTSIDE, ids=stack_id)
def test_every_bit_of_a_tiny_file_is_authenticated(stack: list[str], size: int) -> None:
    # Under 256 bytes zstd is skipped and the bytes are sealed as they are, in one
    # segment opened whole at open; from 256 they carry the container inside.
    stored = encoded(stack, size)
    assert (stored[13] == PAYLOAD_LSZ1) == (size >= 256 and "zstd" in stack)
    pipeline = pipeline_for(stack)
    with pipeline.decode(io.BytesIO(stored), CONTEXT) as reader:
        assert reader.read() == sample(size, size)
    accepted = []
    for bit in range(8 * len(stored)):
        try:
            with pipeline.decode(io.BytesIO(flipped(stored, bit)), CONTEXT) as reader:
                reader.read()
                reader.seek(0)
                reader.read(1)
        except LayeredStorageError:
            continue
        accepted.append(bit)
    assert not accepted, f"flipped bits {accepted} were accepted"
