"""Saves and rewrites that fail, race or grow too large lose nothing and leave nothing.

Over every real inner backend: a save that fails part-way keeps the older file of
the same name (S3 and ``allow_overwrite`` overwrite in place), a save that loses a
race for its name leaves no partial file under any name, ``max_file_size`` stops a
runaway save with nothing stored, and ``replace`` swaps whole versions only.
"""

from __future__ import annotations

import errno
import io
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import django
import pytest
from django.core.files.base import ContentFile, File

from layered_storage import FileTooLargeError, LayeredStorage, LayeredStorageError
from layered_storage.backends import Backend
from layered_storage.backends.base import is_partial
from layered_storage.backends.filesystem import FileSystemBackend
from tests.conftest import inner_config, make_storage
from tests.utils import sample

MiB = 1024 * 1024
STACKS = [["zstd"], ["aes-gcm"], ["zstd", "aes-gcm"]]
INNER = ["filesystem", "memory", "s3"]


class DroppedUpload(io.RawIOBase):
    """A binary stream of ``data`` that fails once ``fail_at`` bytes are read, as a
    client that goes away mid-upload; ``on_first_read`` runs before the first."""

    def __init__(
        self,
        data: bytes,
        fail_at: int | None,
        on_first_read: Callable[[], object] | None = None,
        *,
        rewindable: bool = False,
    ) -> None:
        super().__init__()
        self._rewindable = rewindable
        self._data = memoryview(data)
        self._position = 0
        self._fail_at = fail_at
        self._on_first_read = on_first_read

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._rewindable

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._rewindable or (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("a network stream only moves forward")
        self._position = 0
        return 0

    def readinto(self, buffer: Any) -> int:
        if self._on_first_read is not None:
            callback, self._on_first_read = self._on_first_read, None
            callback()
        if self._fail_at is not None and self._position >= self._fail_at:
            raise ConnectionResetError("client went away")
        end = len(self._data)
        if self._fail_at is not None:
            end = min(end, self._fail_at)
        count = min(len(buffer), end - self._position)
        buffer[:count] = self._data[self._position : self._position + count]
        self._position += count
        return count


def as_file(stream: io.RawIOBase) -> File[bytes]:
    """Return ``stream`` wrapped as Django wraps an upload."""
    return File(cast("IO[bytes]", stream))


def stored_names(storage: LayeredStorage, folder: str = "") -> list[str]:
    """Return every name the inner storage holds below ``folder``, partial ones too."""
    try:
        # The backend lists: AzureStorage.listdir gives full names, all the way down.
        folders, files = storage.backend.listdir(folder)
    except FileNotFoundError:  # a FileSystemStorage that never stored anything
        return []
    prefix = f"{folder}/" if folder else ""
    names = [prefix + file for file in files]
    for sub in folders:
        names += stored_names(storage, prefix + sub)
    return sorted(names)


def overwriting_storage(
    settings: Any, tmp_path: Path, kind: str, layers: list[str]
) -> LayeredStorage:
    """Return a layered storage over an inner one that overwrites a taken name."""
    config = inner_config(kind, tmp_path)
    if kind == "filesystem":
        if django.VERSION < (5, 1):
            pytest.skip("FileSystemStorage(allow_overwrite=True) needs Django 5.1")
        config["OPTIONS"]["allow_overwrite"] = True
    settings.STORAGES = {**settings.STORAGES, "inner-over": config}
    return LayeredStorage(inner="inner-over", layers=layers)


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
@pytest.mark.parametrize("layers", STACKS, ids="+".join)
def test_failed_overwrite_keeps_the_older_version(
    settings: Any, tmp_path: Path, kind: str, layers: list[str]
) -> None:
    # Defect: the "is it ours?" test compared leading bytes, which for a bare LSZ1
    # container are the same for every file, so the older version was deleted.
    storage = overwriting_storage(settings, tmp_path, kind, layers)
    older = sample(3 * MiB, 1)
    assert storage.save("keep.txt", ContentFile(older)) == "keep.txt"
    newer = sample(4 * MiB, 2)
    with pytest.raises(ConnectionResetError):
        storage.save("keep.txt", as_file(DroppedUpload(newer, 3 * MiB + 5)))
    assert storage.open("keep.txt").read() == older
    assert stored_names(storage) == ["keep.txt"]


def test_failed_multipart_upload_keeps_the_older_object(
    settings: Any, tmp_path: Path
) -> None:
    # Past s3transfer's 8 MiB threshold the upload is multipart: it is aborted.
    storage = make_storage(settings, tmp_path, "s3", ["aes-gcm"])
    older = os.urandom(MiB)
    storage.save("big.bin", ContentFile(older))
    with pytest.raises(ConnectionResetError):
        storage.save("big.bin", as_file(DroppedUpload(os.urandom(20 * MiB), 18 * MiB)))
    assert storage.open("big.bin").read() == older
    client = storage.inner.connection.meta.client  # type: ignore[attr-defined]
    uploads = client.list_multipart_uploads(Bucket=storage.inner.bucket_name)  # type: ignore[attr-defined]
    assert not uploads.get("Uploads")


@pytest.mark.parametrize("kind", INNER)
@pytest.mark.parametrize("outcome", ["fails", "completes", "cannot-rewind"])
def test_save_that_loses_its_name_to_another_writer_leaves_no_partial_file(
    settings: Any, tmp_path: Path, kind: str, outcome: str
) -> None:
    # Defect: the first 1 MiB is read before the inner storage is called; another
    # writer taking the name then made the inner storage write under another name,
    # and cleanup after a failure looked only at the requested name.
    storage = make_storage(settings, tmp_path, kind, ["zstd", "aes-gcm"])
    theirs = sample(2 * MiB, 3)
    ours = sample(5 * MiB, 4)
    name = "data/export.csv"

    def other_writer() -> None:
        assert storage.save(name, ContentFile(theirs)) == name

    content = as_file(
        DroppedUpload(
            ours,
            3 * MiB if outcome == "fails" else None,
            other_writer,
            rewindable=outcome != "cannot-rewind",
        )
    )
    if outcome == "completes" or (outcome == "cannot-rewind" and kind == "s3"):
        saved = storage.save(name, content)
        assert storage.open(saved).read() == ours
        names = stored_names(storage)
        # S3 overwrites a taken name (last writer wins); the others find a free one.
        assert len(names) == (1 if kind == "s3" else 2)
        assert not any(is_partial(n.rsplit("/", 1)[-1]) for n in names)
    else:
        # A file bound to its name cannot move to another one: without a way to
        # read the content again, nothing is kept, and the error says so.
        error = ConnectionResetError if outcome == "fails" else LayeredStorageError
        with pytest.raises(error):
            storage.save(name, content)
        assert stored_names(storage) == [name]
    if kind != "s3" or outcome == "fails":
        assert storage.open(name).read() == theirs


@pytest.mark.parametrize("kind", INNER)
def test_max_file_size_stops_a_runaway_save_with_nothing_stored(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    storage = make_storage(
        settings, tmp_path, kind, ["zstd", "aes-gcm"], max_file_size=2 * MiB
    )
    at_limit = sample(2 * MiB, 5)
    assert storage.open(storage.save("ok.bin", ContentFile(at_limit))).read() == (
        at_limit
    )
    # Of unknown size (a stream): counted as it is read.
    with pytest.raises(FileTooLargeError, match="max_file_size of 2097152 bytes"):
        storage.save("runaway.bin", as_file(DroppedUpload(sample(3 * MiB, 6), None)))
    # Of known size: refused before any byte is read or written.
    with pytest.raises(FileTooLargeError, match=r"'big\.bin' is larger"):
        storage.save("big.bin", ContentFile(at_limit + b"!"))
    assert stored_names(storage) == ["ok.bin"]


@pytest.mark.parametrize("kind", INNER)
def test_replace_swaps_whole_versions_and_a_failed_one_changes_nothing(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    storage = make_storage(settings, tmp_path, kind, ["zstd", "aes-gcm"])
    older, newer = sample(3 * MiB, 7), sample(2 * MiB + 5, 8)
    name = storage.save("doc.txt", ContentFile(older))
    with pytest.raises(ConnectionResetError):
        storage.replace(name, as_file(DroppedUpload(newer, MiB + 3)))
    assert storage.open(name).read() == older
    storage.replace(name, ContentFile(newer))
    assert storage.open(name).read() == newer
    assert stored_names(storage) == [name]


def test_filesystem_save_publishes_only_complete_files(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    assert isinstance(storage.backend, FileSystemBackend)
    folder = Path(storage.inner.path("deep/er"))
    seen: list[list[str]] = []

    class Watched(DroppedUpload):
        def readinto(self, buffer: Any) -> int:
            seen.append(sorted(os.listdir(folder)) if folder.exists() else [])
            return super().readinto(buffer)

    data = sample(6 * MiB, 9)
    name = storage.save("deep/er/file.txt", as_file(Watched(data, None)))
    assert name == "deep/er/file.txt"
    # While it was written the final name never existed, only a hidden temporary
    # file beside it; afterwards only the complete file is there.
    assert not any("file.txt" in listing for listing in seen)
    assert any(len(listing) == 1 and is_partial(listing[0]) for listing in seen)
    assert os.listdir(folder) == ["file.txt"]
    assert storage.open(name).read() == data


def test_filesystem_save_makes_missing_folders_only_and_refuses_a_file_in_the_way(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    storage.inner.directory_permissions_mode = 0o750  # type: ignore[attr-defined]
    assert storage.save("new/folder/a.txt", ContentFile(b"a")) == "new/folder/a.txt"
    for folder in ("new", "new/folder"):
        assert Path(storage.inner.path(folder)).stat().st_mode & 0o777 == 0o750
    assert storage.save("new/folder/b.txt", ContentFile(b"b")) == "new/folder/b.txt"
    storage.save("blocker", ContentFile(b"a file where a folder would go"))
    with pytest.raises(FileExistsError, match="not a directory"):
        storage.save("blocker/c.txt", ContentFile(b"c"))
    assert sorted(os.listdir(storage.inner.path("new/folder"))) == ["a.txt", "b.txt"]
    assert storage.listdir("")[1] == ["blocker"]


def test_killed_writer_leftovers_are_not_listed(settings: Any, tmp_path: Path) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    storage.save("a/kept.txt", ContentFile(b"kept"))
    leftover = Path(storage.inner.path("a/.layered-0123456789abcdef.partial"))
    leftover.write_bytes(b"what a killed process left")
    assert storage.listdir("a") == ([], ["kept.txt"])
    assert type(storage.backend) is not Backend


@pytest.mark.parametrize("kind", INNER)
def test_a_large_plaintext_file_reads_whole(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    # Over S3 a read returns at most what one response holds: read() must loop.
    storage = make_storage(
        settings, tmp_path, kind, ["zstd", "aes-gcm"], allow_plaintext=True
    )
    data = sample(1_200_000, 13)
    storage.inner.save("legacy.bin", ContentFile(data))
    assert storage.open("legacy.bin").read() == data


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem (tmpfs), so writes fail with ENOSPC part-way."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def write_pieces(storage: LayeredStorage, name: str, pieces: list[bytearray]) -> None:
    with storage.open(name, "wb") as file:
        for piece in pieces:
            file.write(piece)


@pytest.mark.parametrize("layers", STACKS, ids="+".join)
def test_filesystem_save_that_runs_out_of_space_leaves_nothing(
    settings: Any, full_disk: Path, layers: list[str]
) -> None:
    # Gathered writes (writev) may be written in part before the disk is full:
    # every failed save raises ENOSPC, keeps the older version and leaves no file.
    settings.STORAGES = {
        **settings.STORAGES,
        "tiny": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(full_disk)},
        },
    }
    storage = LayeredStorage(inner="tiny", layers=layers)
    noise = random.Random(2).randbytes
    older = noise(100_000)
    storage.save("kept.bin", ContentFile(older))
    for size in (200_000, 600_000, 3 * MiB):
        with pytest.raises(OSError, match="No space left") as failed:
            storage.save("new.bin", ContentFile(noise(size)))
        assert failed.value.errno == errno.ENOSPC
        pieces = [bytearray(noise(50_000)) for _ in range(size // 50_000)]
        with pytest.raises(OSError, match="No space left"):
            write_pieces(storage, "kept.bin", pieces)
        assert sorted(os.listdir(full_disk)) == ["kept.bin"]
        assert storage.open("kept.bin").read() == older
    fits = noise(50_000)
    assert storage.open(storage.save("new.bin", ContentFile(fits))).read() == fits
