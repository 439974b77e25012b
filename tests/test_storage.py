"""LayeredStorage as users see it, over every real inner backend."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, InMemoryStorage
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.management import call_command
from django.http import FileResponse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from layered_storage import FormatError, HeaderAuthenticationError, LayeredStorage
from layered_storage.backends import Backend
from layered_storage.exceptions import FileTooLargeError, NotLayeredError
from tests.conftest import make_storage
from tests.utils import (
    FRAME,
    FRAME_EDGES,
    SEGMENT,
    SEGMENT_EDGES,
    read_in_steps,
    sample,
    stored_bytes,
)


@pytest.mark.parametrize("size", SEGMENT_EDGES + FRAME_EDGES)
def test_saved_file_reads_back_exactly(any_storage: LayeredStorage, size: int) -> None:
    data = sample(size, seed=size)
    name = any_storage.save("docs/report.txt", ContentFile(data))
    with any_storage.open(name) as opened:
        assert opened.read() == data
    assert any_storage.size(name) == size


def test_stored_bytes_are_not_the_plaintext(storage: LayeredStorage) -> None:
    data = b"a secret line that must not be on disk\n" * 100
    name = storage.save("secret.txt", ContentFile(data))
    stored = stored_bytes(storage.inner, name)
    assert b"secret line" not in stored
    assert len(stored) < len(data)  # compressed too


def test_save_returns_the_name_the_inner_storage_used(storage: LayeredStorage) -> None:
    first = storage.save("same.txt", ContentFile(b"one"))
    second = storage.save("same.txt", ContentFile(b"two"))
    assert first == "same.txt"
    if storage.inner.exists(first) and second != first:  # backends that rename
        assert storage.open(second).read() == b"two"
    assert storage.open(first).read() == (b"one" if second != first else b"two")


def test_delegates_naming_and_listing(storage: LayeredStorage) -> None:
    storage.save("dir/a.txt", ContentFile(b"a"))
    storage.save("dir/sub/b.txt", ContentFile(b"b"))
    assert storage.exists("dir/a.txt")
    dirs, files = storage.listdir("dir")
    # The backend's listing: AzureStorage.listdir gives full names, all the way down.
    assert (dirs, files) == storage.backend.listdir("dir")
    assert "a.txt" in files
    assert dirs == ["sub"]
    assert storage.get_available_name("x y.txt") == storage.inner.get_available_name(
        "x y.txt"
    )
    assert storage.generate_filename("a b/c d.txt") == storage.inner.generate_filename(
        "a b/c d.txt"
    )
    storage.delete("dir/a.txt")
    assert not storage.exists("dir/a.txt")


def test_missing_file_raises_file_not_found(storage: LayeredStorage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.open("nope.bin")
    with pytest.raises(FileNotFoundError):
        storage.size("nope.bin")


def test_modified_time_is_the_inner_storage_time(fs_storage: LayeredStorage) -> None:
    name = fs_storage.save("t.txt", ContentFile(b"t"))
    assert fs_storage.get_modified_time(name) == fs_storage.inner.get_modified_time(
        name
    )


def test_path_is_not_offered(fs_storage: LayeredStorage) -> None:
    # The bytes on disk are not the file: handing out a path would leak ciphertext
    # to code that expects the content.
    name = fs_storage.save("p.txt", ContentFile(b"p"))
    with pytest.raises(NotImplementedError):
        fs_storage.path(name)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda data: ContentFile(data), id="ContentFile"),
        pytest.param(lambda data: File(io.BytesIO(data)), id="File"),
        pytest.param(lambda data: SimpleUploadedFile("u.bin", data), id="upload"),
        pytest.param(lambda data: io.BytesIO(data), id="bare-stream"),
    ],
)
def test_saves_every_kind_of_content(fs_storage: LayeredStorage, content: Any) -> None:
    data = sample(3 * SEGMENT + 5)
    name = fs_storage.save("in.bin", content(data))
    assert fs_storage.open(name).read() == data


def _temporary_upload(data: bytes) -> TemporaryUploadedFile:
    upload = TemporaryUploadedFile("big.txt", "text/plain", 0, None)
    upload.write(data)
    upload.flush()
    return upload


def test_temporary_upload_is_left_or_taken_as_the_inner_storage_does(
    storage: LayeredStorage,
) -> None:
    # FileSystemStorage moves an upload's temporary file into place and
    # InMemoryStorage deletes it, so no copy of the plaintext stays in the
    # temporary folder; object storages read it and leave it to its owner. The
    # layered save encodes the bytes, then does what its inner storage would.
    data = b"temporary upload " * 1000
    plain_upload = _temporary_upload(data)
    storage.inner.save("plain.txt", plain_upload)
    plain_kept = Path(plain_upload.temporary_file_path()).exists()
    plain_upload.close()

    upload = _temporary_upload(data)
    name = storage.save("big.txt", upload)
    assert Path(upload.temporary_file_path()).exists() == plain_kept
    assert plain_kept == (
        not isinstance(storage.inner, (FileSystemStorage, InMemoryStorage))
    )
    assert storage.open(name).read() == data
    assert b"temporary upload" not in stored_bytes(storage.inner, name)
    # The caller's file still reads, and closing it is quiet either way.
    upload.seek(0)
    assert upload.read() == data
    upload.close()


def test_failed_save_leaves_the_temporary_upload(settings: Any, tmp_path: Path) -> None:
    # The upload claims size 0, so the limit trips while its bytes stream through.
    storage = make_storage(
        settings, tmp_path, "filesystem", ["zstd", "aes-gcm"], max_file_size=1000
    )
    upload = _temporary_upload(b"x" * 5000)
    with pytest.raises(FileTooLargeError):
        storage.save("big.txt", upload)
    assert Path(upload.temporary_file_path()).exists()
    assert not storage.exists("big.txt")
    upload.close()


def test_text_content_is_stored_as_utf8(fs_storage: LayeredStorage) -> None:
    name = fs_storage.save("t.txt", ContentFile("grüße\n"))
    assert fs_storage.open(name).read() == "grüße\n".encode()


def test_save_leaves_the_callers_content_open_and_rewindable(
    fs_storage: LayeredStorage,
) -> None:
    content = ContentFile(b"keep me open")
    fs_storage.save("c.txt", content)
    assert not content.closed
    content.seek(0)
    assert content.read() == b"keep me open"


class FailingContent(File):  # type: ignore[type-arg]
    """Content that yields ``good`` bytes, then fails like a dropped upload."""

    def __init__(self, good: int) -> None:
        super().__init__(io.BytesIO(sample(good)), "failing.bin")

    def chunks(self, chunk_size: int | None = None) -> Any:
        yield from super().chunks(SEGMENT)
        raise ConnectionResetError("client went away")


@pytest.mark.parametrize("good", [0, 10, 5 * SEGMENT, 9 * 1024 * 1024])
def test_failed_save_leaves_no_partial_file(storage: LayeredStorage, good: int) -> None:
    with pytest.raises(ConnectionResetError):
        storage.save("partial.bin", FailingContent(good))
    assert not storage.exists("partial.bin")


def test_failed_save_keeps_an_older_file_of_the_same_name(
    settings: Any, tmp_path: Path
) -> None:
    # S3 overwrites in place: a failed upload must not take the old object with it.
    storage = make_storage(settings, tmp_path, "s3", ["zstd", "aes-gcm"])
    storage.save("keep.bin", ContentFile(b"older version"))
    with pytest.raises(ConnectionResetError):
        storage.save("keep.bin", FailingContent(3 * SEGMENT))
    assert storage.open("keep.bin").read() == b"older version"


def test_open_streams_the_file_api(storage: LayeredStorage) -> None:
    lines = [f"line {i}\n".encode() for i in range(20000)]
    data = b"".join(lines)
    name = storage.save("lines.txt", ContentFile(data))
    with storage.open(name) as opened:
        assert opened.name == name
        assert opened.size == len(data)
        assert list(opened) == lines
        opened.seek(0)
        assert b"".join(opened.chunks(chunk_size=7000)) == data
        opened.seek(len(data) - 10)
        assert opened.tell() == len(data) - 10
        assert opened.read() == data[-10:]
        buffer = bytearray(100)
        opened.seek(SEGMENT - 50)
        assert opened.readinto(buffer) == 100
        assert bytes(buffer) == data[SEGMENT - 50 : SEGMENT + 50]
    assert opened.closed


def test_open_in_text_mode_decodes(storage: LayeredStorage) -> None:
    name = storage.save("t.txt", ContentFile("héllo\nwörld\n".encode()))
    with storage.open(name, "r") as opened:
        assert opened.read() == "héllo\nwörld\n"


@pytest.mark.parametrize("mode", ["a", "ab", "r+", "rb+", "w+", "x", "xb"])
def test_update_modes_are_refused_clearly(storage: LayeredStorage, mode: str) -> None:
    name = storage.save("r.txt", ContentFile(b"r"))
    with pytest.raises(ValueError, match="cannot work on authenticated, compressed"):
        storage.open(name, mode)
    assert storage.open(name).read() == b"r"


def test_closed_file_reopens_from_storage(storage: LayeredStorage) -> None:
    name = storage.save("re.txt", ContentFile(b"reopen me"))
    opened = storage.open(name)
    opened.close()
    with opened.open() as again:
        assert again.read() == b"reopen me"


def test_file_response_streams_plaintext_with_length(storage: LayeredStorage) -> None:
    data = sample(2 * 1024 * 1024 + 3)
    name = storage.save("dl/report.bin", ContentFile(data))
    with storage.open(name) as opened:
        response = FileResponse(opened, as_attachment=True)
        assert response["Content-Length"] == str(len(data))
        assert 'filename="report.bin"' in response["Content-Disposition"]
        assert b"".join(response.streaming_content) == data  # type: ignore[arg-type]


def test_size_reads_only_header_and_tail(fs_storage: LayeredStorage) -> None:
    data = sample(6 * 1024 * 1024)
    name = fs_storage.save("big.bin", ContentFile(data))
    inner: Any = fs_storage.inner
    reads: list[int] = []
    original_open = inner.open

    def counting_open(n: str, mode: str = "rb") -> Any:
        opened = original_open(n, mode)
        real_read = opened.file.read

        def read(size: int = -1) -> bytes:
            chunk: bytes = real_read(size)
            reads.append(len(chunk))
            return chunk

        opened.file = _ReadSpy(opened.file, read)
        return opened

    inner.open = counting_open
    try:
        assert fs_storage.size(name) == len(data)
    finally:
        del inner.open
    assert sum(reads) < 3 * SEGMENT + 4096


class _ReadSpy(io.RawIOBase):
    """Count what is read through a real file (no behaviour changed)."""

    def __init__(self, wrapped: Any, read: Any) -> None:
        self._wrapped = wrapped
        self.read = read  # type: ignore[method-assign]

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._wrapped.seek(offset, whence))

    def tell(self) -> int:
        return int(self._wrapped.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._wrapped.close()
        super().close()


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.binary(max_size=3 * SEGMENT),
    step=st.integers(1, SEGMENT + 1),
    offset=st.integers(0, 3 * SEGMENT),
)
def test_reads_in_any_steps_from_any_offset(
    fs_storage: LayeredStorage, payload: bytes, step: int, offset: int
) -> None:
    name = fs_storage.save("h.bin", ContentFile(payload))
    with fs_storage.open(name) as opened:
        assert read_in_steps(opened, step) == payload
        opened.seek(offset)
        assert opened.read() == payload[offset:]
    fs_storage.delete(name)


def test_plaintext_file_is_refused_by_default(storage: LayeredStorage) -> None:
    storage.inner.save("legacy.txt", ContentFile(b"old plaintext"))
    with pytest.raises(NotLayeredError, match=re.escape("'legacy.txt'")):
        storage.open("legacy.txt")
    assert issubclass(NotLayeredError, FormatError)


def test_plaintext_file_reads_when_allowed(settings: Any, tmp_path: Path) -> None:
    storage = make_storage(
        settings, tmp_path, "filesystem", ["zstd", "aes-gcm"], allow_plaintext=True
    )
    storage.inner.save("legacy.txt", ContentFile(b"old plaintext"))
    assert storage.open("legacy.txt").read() == b"old plaintext"
    assert storage.size("legacy.txt") == len(b"old plaintext")
    new = storage.save("new.txt", ContentFile(b"new"))
    assert b"new" not in stored_bytes(storage.inner, new)


def test_repr_and_deconstruct_hold_no_secret(storage: LayeredStorage) -> None:
    path, args, kwargs = storage.deconstruct()  # type: ignore[attr-defined]
    assert path == "layered_storage.LayeredStorage"
    text = repr((path, args, kwargs)) + repr(storage)
    for key in storage.pipeline.keyring().keys:
        assert key.secret.hex() not in text
    assert kwargs["layers"] == ["zstd", "aes-gcm"]


def test_unbound_stack_reads_its_own_files(settings: Any, tmp_path: Path) -> None:
    storage = make_storage(
        settings, tmp_path, "filesystem", ["zstd", ("aes-gcm", {"bind_name": False})]
    )
    name = storage.save("u.txt", ContentFile(b"unbound but encrypted"))
    assert storage.open(name).read() == b"unbound but encrypted"


def test_stack_compressing_after_encryption_refuses_planted_unencrypted_files(
    settings: Any, tmp_path: Path
) -> None:
    from layered_storage import PolicyError

    planter = make_storage(settings, tmp_path, "filesystem", ["zstd"])
    planter.save("planted.txt", ContentFile(b"not encrypted"))
    odd = make_storage(settings, tmp_path, "filesystem", ["aes-gcm", "zstd"])
    with pytest.raises(PolicyError, match="not encrypted"):
        odd.open("planted.txt")


@pytest.mark.parametrize("layers", [["zstd", "aes-gcm"], ["aes-gcm"], ["zstd"]])
def test_max_file_size_is_about_the_plaintext(
    settings: Any, tmp_path: Path, layers: list[str]
) -> None:
    from layered_storage import LayeredStorageError

    limit = 2_000_000
    storage = make_storage(
        settings, tmp_path, "filesystem", layers, max_file_size=limit
    )
    incompressible = sample(2 * limit, 5)[limit:]  # the random half: grows when stored
    name = storage.save("at-limit.bin", ContentFile(incompressible))
    assert storage.open(name).read() == incompressible
    # Written by a storage without the limit, refused by the one with it.
    unlimited = LayeredStorage(inner=storage.inner_alias, layers=layers)
    over = unlimited.save("over.bin", ContentFile(incompressible + b"!"))
    with pytest.raises(LayeredStorageError, match="limit"):
        storage.open(over).read()


def test_every_exception_is_importable_from_the_package() -> None:
    import layered_storage
    from layered_storage import exceptions

    tree = {
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and value.__module__ == exceptions.__name__
    }
    assert tree <= set(layered_storage.__all__)


class CustomSaveStorage(FileSystemStorage):
    """A user's FileSystemStorage with its own ``_save``: the generic save path.

    It overwrites in place (so an older file is at stake) and can be switched to
    refuse every save, as a read-only volume does.
    """

    read_only = False

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name

    def _save(self, name: str, content: Any) -> str:
        if self.read_only:
            raise PermissionError("read-only volume")
        if self.exists(name):
            self.delete(name)
        return str(super()._save(name, content))  # type: ignore[misc]


@pytest.mark.parametrize("layers", [["zstd"], ["zstd", "aes-gcm"]])
def test_generic_save_that_fails_keeps_an_older_file(
    settings: Any, tmp_path: Path, layers: list[str]
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "custom": {
            "BACKEND": f"{__name__}.CustomSaveStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    storage = LayeredStorage(inner="custom", layers=layers)
    assert type(storage.backend) is Backend
    storage.save("older.txt", ContentFile(b"older"))
    # The inner storage refuses before reading a byte: nothing of this save exists,
    # so the file already stored under that name must stay.
    storage.inner.read_only = True  # type: ignore[attr-defined]
    with pytest.raises(PermissionError):
        storage.save("older.txt", ContentFile(b"newer"))
    storage.inner.read_only = False  # type: ignore[attr-defined]
    assert storage.open("older.txt").read() == b"older"
    assert storage.listdir("")[1] == ["older.txt"]


def test_inner_public_attributes_read_through_the_wrapper(
    storage: LayeredStorage,
) -> None:
    inner = storage.inner
    names = {
        "FileSystemStorage": [
            "location",
            "base_location",
            "base_url",
            "file_permissions_mode",
            "directory_permissions_mode",
        ],
        "InMemoryStorage": ["location", "base_url", "file_permissions_mode"],
        "S3Storage": ["bucket_name", "location", "file_overwrite", "default_acl"],
        "AzureStorage": ["azure_container", "location", "overwrite_files"],
        "GoogleCloudStorage": ["bucket_name", "location", "file_overwrite"],
    }[type(inner).__name__]
    for attribute in names:
        assert getattr(storage, attribute) == getattr(inner, attribute), attribute
    # What would bypass the layers stays the wrapper's own, or is refused.
    assert storage.deconstruct()[0] == "layered_storage.LayeredStorage"  # type: ignore[attr-defined]
    with pytest.raises(NotImplementedError):
        storage.path("a.txt")
    for attribute in dir(inner):
        own = hasattr(LayeredStorage, attribute) or attribute.startswith("_")
        if not own and callable(getattr(inner, attribute)):
            with pytest.raises(AttributeError, match="bypass the layers"):
                getattr(storage, attribute)
    for missing in ("no_such_attribute", "_private_state"):
        with pytest.raises(AttributeError):
            getattr(storage, missing)


def test_media_root_overrides_reach_the_inner_location(
    settings: Any, tmp_path: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "plain-default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    storage = LayeredStorage(inner="plain-default", layers=["zstd", "aes-gcm"])
    settings.MEDIA_ROOT = str(tmp_path / "one")
    assert storage.base_location == str(tmp_path / "one")  # type: ignore[attr-defined]
    settings.MEDIA_ROOT = str(tmp_path / "two")
    assert storage.location == str(tmp_path / "two")  # type: ignore[attr-defined]
    name = storage.save("x.txt", ContentFile(b"x"))
    assert (tmp_path / "two" / name).exists()


@pytest.mark.parametrize("size", [1, SEGMENT + 3, 2 * FRAME + 5])
@pytest.mark.parametrize("start", [0, SEGMENT + 1, FRAME + 1])
def test_read_to_the_end_from_anywhere(
    any_storage: LayeredStorage, size: int, start: int
) -> None:
    # read() with no size takes the one-block and the whole-result paths.
    data = sample(size, 11)
    name = any_storage.save("whole.bin", ContentFile(data))
    with any_storage.open(name) as opened:
        opened.seek(start)
        assert opened.read() == data[start:]
        assert opened.read() == b""


@pytest.mark.parametrize("size", [0, 5, FRAME + 3])
def test_plaintext_files_read_whole_and_by_pieces(
    settings: Any, tmp_path: Path, size: int
) -> None:
    storage = make_storage(
        settings, tmp_path, "filesystem", ["zstd", "aes-gcm"], allow_plaintext=True
    )
    data = b"legacy " * (size // 7) + b"x" * (size % 7)
    storage.inner.save("legacy.txt", ContentFile(data))
    with storage.open("legacy.txt") as opened:
        assert opened.read() == data
        opened.seek(size // 2)
        assert opened.read() == data[size // 2 :]
        opened.seek(1)
        assert read_in_steps(opened, 1000) == data[1:]


def test_a_changed_namespace_is_named_in_the_error(
    settings: Any, tmp_path: Path
) -> None:
    writer = make_storage(
        settings, tmp_path, "filesystem", ["zstd", "aes-gcm"], namespace="private"
    )
    name = writer.save("contract.pdf", ContentFile(b"signed"))
    # The tutorial's storage had a namespace; the settings now have none, as the
    # README's example. The error says so instead of a bare authentication failure.
    settings.STORAGES = {
        **settings.STORAGES,
        "old": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": writer.inner_alias, "namespace": "private"},
        },
    }
    reader = LayeredStorage(inner=writer.inner_alias, layers=["zstd", "aes-gcm"])
    with pytest.raises(HeaderAuthenticationError) as raised:
        reader.open(name)
    assert "written under namespace 'private'" in str(raised.value)
    assert "this storage's namespace is ''" in str(raised.value)
    # A renamed file is not blamed on a namespace.
    with writer.inner.open(name) as stored:
        writer.inner.save("moved.pdf", stored)
    with pytest.raises(HeaderAuthenticationError, match="copied or renamed") as raised:
        writer.open("moved.pdf")
    # The command the message suggests tells where the file came from.
    hint = "`manage.py layered_inspect --as-name OLD_NAME moved.pdf`"
    assert hint in str(raised.value)
    out = io.StringIO()
    call_command(
        "layered_inspect",
        "--storage",
        "old",
        "--as-name",
        name,
        "moved.pdf",
        stdout=out,
    )
    assert f"bound to {name!r}, not its own name" in out.getvalue()


def test_assigning_a_forwarded_attribute_changes_the_inner_storage(
    fs_storage: LayeredStorage,
) -> None:
    # Django's own tests set base_url = None and expect url() to refuse.
    fs_storage.base_url = None  # type: ignore[attr-defined]
    assert fs_storage.inner.base_url is None  # type: ignore[attr-defined]
    fs_storage.url_policy = "inner"
    assert "url_policy" not in vars(fs_storage.inner)
    with pytest.raises(ValueError, match="not accessible via a URL"):
        fs_storage.url("a.txt")
    fs_storage.brand_new = 1  # type: ignore[attr-defined]
    assert not hasattr(fs_storage.inner, "brand_new")
