"""Seeking and reading in any order returns the plaintext, on every stack."""

from __future__ import annotations

import io
import random
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage import LayeredStorage
from layered_storage.streams import WHOLE_READ
from tests.conftest import make_storage
from tests.utils import SEGMENT

F = 4 * 1024  # frames of 2**12 bytes: many frames from little data
MIB = 1024 * 1024
STACKS = [["zstd"], ["aes-gcm"], ["zstd", "aes-gcm"], ["aes-gcm", "zstd"]]
STACK_IDS = ["+".join(stack) for stack in STACKS]


def layered(
    settings: Any,
    tmp_path: Path,
    kind: str,
    stack: list[str],
    *,
    workers: int | None,
    frame_log2: int,
) -> LayeredStorage:
    """Return a storage of ``stack`` over ``kind``, with zstd frames of
    ``2**frame_log2`` bytes and ``workers`` threads."""
    settings.LAYERED_STORAGE = {**settings.LAYERED_STORAGE, "WORKERS": workers}
    layers = [
        ("zstd", {"frame_log2": frame_log2}) if layer == "zstd" else layer
        for layer in stack
    ]
    return make_storage(settings, tmp_path, kind, layers)


@cache
def text(size: int) -> bytes:
    """Return ``size`` bytes of compressible text, different at every offset."""
    rng = random.Random(size)
    words = [b"seek ", b"table ", b"frame ", b"zstd ", b"layered\n", b"storage "]
    lines = (b"%d " % i + b"".join(rng.choices(words, k=6)) for i in range(size))
    out = io.BytesIO()
    while out.tell() < size:
        out.write(next(lines))
    return out.getvalue()[:size]


@pytest.mark.parametrize("workers", [0, None], ids=["no-workers", "workers"])
@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
@pytest.mark.parametrize(
    ("size", "frame_log2", "offset"),
    [(40 * F, 12, 60_000), (4 * MIB, 20, 1_500_000)],
    ids=["4k-frames", "1m-frames"],
)
def test_seek_back_to_the_start_reads_the_start(
    settings: Any,
    tmp_path: Path,
    inner_kind: str,
    stack: list[str],
    workers: int | None,
    size: int,
    frame_log2: int,
    offset: int,
) -> None:
    # Issue 9: the first frame was decoded from wherever the table read had left
    # the stored stream, giving another frame's text or a false format error.
    storage = layered(
        settings, tmp_path, inner_kind, stack, workers=workers, frame_log2=frame_log2
    )
    data = text(size)
    name = storage.save("notes.txt", ContentFile(data))
    with storage.open(name) as opened:
        opened.seek(offset)
        assert opened.read(10) == data[offset : offset + 10]
        opened.seek(0)
        assert opened.read(64) == data[:64]
        opened.seek(0)
        assert opened.read() == data
    assert storage.size(name) == size


def zip_archive() -> tuple[bytes, dict[str, bytes]]:
    """Return a zip archive of several members (1.3 MiB in all) and the members."""
    members = {
        "notes/a.txt": text(600 * 1024),
        "noise.bin": random.Random(9).randbytes(300 * 1024),
        "notes/b.txt": text(400 * 1024 + 7),
        "empty": b"",
        "last.txt": b"the last member",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (member, content) in enumerate(members.items()):
            kind = zipfile.ZIP_DEFLATED if index % 2 else zipfile.ZIP_STORED
            archive.writestr(member, content, compress_type=kind)
    return buffer.getvalue(), members


@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
@pytest.mark.parametrize(
    ("name", "frame_log2"),
    [("bundle.zip", 20), ("bundle.data", 12)],  # compression skipped, or used
)
def test_zipfile_reads_every_member_of_a_stored_archive(
    settings: Any,
    tmp_path: Path,
    inner_kind: str,
    stack: list[str],
    name: str,
    frame_log2: int,
) -> None:
    storage = layered(
        settings, tmp_path, inner_kind, stack, workers=None, frame_log2=frame_log2
    )
    archive, members = zip_archive()
    stored = storage.save(name, ContentFile(archive))
    # zipfile reads the directory at the end, then seeks back to each member.
    with storage.open(stored) as opened, zipfile.ZipFile(opened) as unzipped:
        assert unzipped.namelist() == list(members)
        for member in reversed(members):
            assert unzipped.read(member) == members[member]
        assert unzipped.testzip() is None


SIZES = st.one_of(
    st.sampled_from([0, 1, F - 1, F, F + 1, 5 * F + 7, SEGMENT + 5, 2 * SEGMENT + F]),
    st.integers(0, 10 * F),
)


@pytest.mark.parametrize("workers", [0, 2], ids=["no-workers", "workers"])
@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
@hsettings(
    max_examples=60,
    deadline=None,
    # One storage per test, shared by its examples: each saves its own file.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(size=SIZES, seed=st.integers(0, 2**32), data=st.data())
def test_any_seeks_and_reads_return_the_plaintext(
    settings: Any,
    tmp_path: Path,
    stack: list[str],
    workers: int,
    size: int,
    seed: int,
    data: st.DataObject,
) -> None:
    storage = layered(
        settings, tmp_path, "memory", stack, workers=workers, frame_log2=12
    )
    plain = text(size)[: size // 2] + random.Random(seed).randbytes(size - size // 2)
    name = storage.save("any.bin", ContentFile(plain))
    expected = io.BytesIO(plain)
    with storage.open(name) as opened:
        for _ in range(data.draw(st.integers(1, 12), label="operations")):
            if data.draw(st.booleans(), label="seek"):
                whence = data.draw(
                    st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
                )
                target = data.draw(
                    st.one_of(
                        st.just(0),
                        st.just(size),
                        st.integers(size, size + 3),  # at or past the end
                        st.integers(0, size + 2 * F),
                    ),
                    label="target",
                )
                base = {io.SEEK_SET: 0, io.SEEK_CUR: expected.tell(), io.SEEK_END: size}
                offset = target - base[whence]
                assert opened.seek(offset, whence) == expected.seek(offset, whence)
            else:
                count = data.draw(
                    st.one_of(st.just(-1), st.integers(0, 3 * F)), label="read"
                )
                assert opened.read(count) == expected.read(count)
            assert opened.tell() == expected.tell()
    storage.delete(name)


@pytest.mark.parametrize("stack", [["zstd"], ["aes-gcm", "zstd"]], ids=STACK_IDS[::3])
def test_bare_container_over_s3_reads_with_few_requests(
    settings: Any, tmp_path: Path, stack: list[str]
) -> None:
    storage = layered(settings, tmp_path, "s3", stack, workers=None, frame_log2=20)
    data = text(6 * MIB)
    name = storage.save("notes.txt", ContentFile(data))
    ranges: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        ranges.append(params.get("Range", "whole object"))

    inner: Any = storage.inner
    events = inner.connection.meta.client.meta.events
    events.register("before-parameter-build.s3.GetObject", count)
    try:
        with storage.open(name) as opened:
            assert opened.read() == data
        sequential, ranges[:] = list(ranges), []
        with storage.open(name) as opened:
            opened.seek(4 * MIB + 3)
            assert opened.read(1000) == data[4 * MIB + 3 : 4 * MIB + 1003]
        random_read = list(ranges)
    finally:
        events.unregister("before-parameter-build.s3.GetObject", count)
    # The tail (seek table) at open, then one stream from the descriptor on.
    assert len(sequential) == 2, sequential
    # A bare container is opened from both ends (its descriptor names its payload),
    # then the range itself, unless the stream from the start already reaches it.
    assert len(random_read) <= 3, random_read


#: Sizes and shares of noise of files read whole at open (stored in at most 256
#: KiB, even 300 KiB of text), and of files stored past it, read as they go.
WHOLE_OR_STREAMED = st.one_of(
    st.tuples(
        st.one_of(
            st.sampled_from([0, 1, 255, 256, SEGMENT - 1, SEGMENT, 300 * 1024]),
            st.integers(0, 300 * 1024),
        ),
        st.sampled_from([0.0, 0.5, 0.8]),
    ),
    st.tuples(st.integers(290 * 1024, 300 * 1024), st.sampled_from([0.95, 1.0])),
)


@pytest.mark.parametrize("stack", STACKS[:3], ids=STACK_IDS[:3])
@hsettings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(shape=WHOLE_OR_STREAMED, seed=st.integers(0, 2**32), data=st.data())
def test_small_objects_read_from_memory_as_streamed_ones_read(
    settings: Any,
    tmp_path: Path,
    stack: list[str],
    shape: tuple[int, float],
    seed: int,
    data: st.DataObject,
) -> None:
    # Up to WHOLE_READ (256 KiB) stored, FileSystemStorage reads a file whole at
    # open and decoders slice it (its payload decrypted at once); past it, they
    # read the file as they go. Any mix of reads must give the plaintext on both.
    storage = layered(
        settings, tmp_path, "filesystem", stack, workers=None, frame_log2=20
    )
    size, noise = shape
    cut = size - int(size * noise)
    plain = text(size)[:cut] + random.Random(seed).randbytes(size - cut)
    name = storage.save("small.bin", ContentFile(plain))
    if noise > 0.9:  # else 'aes-gcm' stores past it too: it does not compress
        assert storage.inner.size(name) > WHOLE_READ
    expected = io.BytesIO(plain)
    points = st.one_of(st.integers(0, size + 3), st.sampled_from([0, size, SEGMENT]))
    counts = st.one_of(st.just(-1), st.integers(0, 2 * SEGMENT + 1))
    with storage.open(name) as opened:
        for _ in range(data.draw(st.integers(1, 10), label="operations")):
            how = data.draw(st.sampled_from(["seek", "read", "readinto", "end"]))
            if how == "seek":
                target = data.draw(points, label="target")
                assert opened.seek(target) == expected.seek(target)
            elif how == "end":
                assert opened.seek(0, io.SEEK_END) == expected.seek(0, io.SEEK_END)
            elif how == "readinto":
                buffer = bytearray(data.draw(st.integers(0, 2 * SEGMENT + 1)))
                model = bytearray(len(buffer))
                assert opened.readinto(buffer) == expected.readinto(model)
                assert buffer == model
            else:
                count = data.draw(counts, label="read")
                assert opened.read(count) == expected.read(count)
            assert opened.tell() == expected.tell()
        assert opened.size == size
    storage.delete(name)
