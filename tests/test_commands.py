"""Management commands: keygen, and inspect, verify and rotate over real storages."""

from __future__ import annotations

import base64
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from layered_storage import LayeredStorage
from layered_storage.exceptions import SegmentAuthenticationError
from layered_storage.format import lse1
from layered_storage.keys import Key, generate_key
from layered_storage.layers.encryption import EncryptingStream
from layered_storage.maintenance import inspect, rotate
from tests.conftest import inner_config
from tests.utils import sample, stored_bytes, tamper


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_keygen_prints_a_usable_key_with_its_id() -> None:
    out, _ = run("layered_keygen")
    text, comment = out.strip().split("  # key id ")
    assert Key(base64.urlsafe_b64decode(text)).label == comment


def test_keygen_quiet_prints_only_keys() -> None:
    out, _ = run("layered_keygen", "--count", "3", "--quiet")
    keys = out.split()
    assert len(set(keys)) == 3
    assert all(len(base64.urlsafe_b64decode(k)) == 32 for k in keys)


@pytest.fixture
def vault(settings: Any, tmp_path: Path, inner_kind: str) -> LayeredStorage:
    """A layered storage registered as STORAGES['vault'], as commands find it."""
    settings.STORAGES = {
        **settings.STORAGES,
        "vault-inner": inner_config(inner_kind, tmp_path),
        "vault": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": "vault-inner", "layers": ["zstd", "aes-gcm"]},
        },
    }
    return reopened(settings)


def reopened(settings: Any, keys: list[str] | None = None) -> LayeredStorage:
    """Return STORAGES['vault'] built afresh (after a change of keys, as at start-up).

    The inner storage is kept: only the layered storage is rebuilt.
    """
    if keys is not None:
        settings.LAYERED_STORAGE = {"KEYS": keys}
    inner = storages["vault-inner"]
    settings.STORAGES = dict(settings.STORAGES)  # Django forgets built storages
    storages._storages["vault-inner"] = inner  # type: ignore[attr-defined]
    storage = storages["vault"]
    assert isinstance(storage, LayeredStorage)
    return storage


def test_inspect_reads_headers(vault: LayeredStorage) -> None:
    vault.save("a/b.txt", ContentFile(b"inspect me"))
    vault.inner.save("plain.txt", ContentFile(b"legacy"))
    out, _ = run("layered_inspect", "--storage", "vault")
    key = vault.pipeline.keyring().primary.label
    assert f"a/b.txt: {vault.inner.size('a/b.txt')} bytes stored" in out
    assert f"zstd + AES-256-GCM, key {key}, bound to its name" in out
    assert "plain.txt: 6 bytes stored, no layers (plaintext)" in out


def test_inspect_reports_an_unreadable_header_and_goes_on(
    vault: LayeredStorage,
) -> None:
    vault.save("fine.txt", ContentFile(b"fine"))
    broken = vault.save("broken.txt", ContentFile(b"broken"))

    def unknown_version(data: bytearray) -> bytes:  # in the header and its copy
        forged = bytearray(data)
        forged[8] = forged[len(forged) - lse1.TRAILER_SIZE + 8] = 9
        return bytes(forged)

    tamper(vault.inner, broken, unknown_version)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 file"):
        call_command("layered_inspect", "--storage", "vault", stdout=out, stderr=err)
    assert "fine.txt: " in out.getvalue()
    assert "FAILED broken.txt: UnsupportedFormatError" in err.getvalue()


def test_verify_reports_the_tampered_file(vault: LayeredStorage) -> None:
    vault.save("good.txt", ContentFile(sample(100_000)))
    bad = vault.save("bad.txt", ContentFile(sample(100_000, 2)))
    tamper(vault.inner, bad, lambda data: bytes(data[:-1]) + bytes([data[-1] ^ 1]))
    with pytest.raises(CommandError, match="1 file"):
        run("layered_verify", "--storage", "vault")
    out, _ = run("layered_verify", "--storage", "vault", "good.txt")
    assert "1 of 1 files verified (100000 bytes" in out


def test_rotation_from_a_to_b(vault: LayeredStorage, settings: Any) -> None:
    key_a, key_b = generate_key(), generate_key()
    storage = reopened(settings, [key_a])
    names = [
        storage.save(f"doc{i}.bin", ContentFile(sample(200_000, i))) for i in range(3)
    ]
    storage = reopened(settings, [key_b, key_a])
    out, _ = run("layered_rotate", "--storage", "vault", "--dry-run")
    assert "3 of 3 files would be re-encrypted" in out
    out, _ = run("layered_rotate", "--storage", "vault")
    assert "3 of 3 files re-encrypted" in out
    b_label = storage.pipeline.keyring().primary.label
    assert {inspect(storage, name).key_id for name in names} == {b_label}
    storage = reopened(settings, [key_b])
    for i, name in enumerate(names):
        assert storage.open(name).read() == sample(200_000, i)


def test_rotation_reports_ids_the_keyring_lacks(
    vault: LayeredStorage, settings: Any
) -> None:
    vault.save("old.bin", ContentFile(b"old"))
    reopened(settings, [generate_key()])
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="could not be rotated"):
        call_command("layered_rotate", "--storage", "vault", stdout=out, stderr=err)
    assert "is not in the keyring" in err.getvalue()


def test_failed_rotation_keeps_the_original(
    vault: LayeredStorage, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = vault.save("keep.bin", ContentFile(sample(3 * 1024 * 1024)))
    before = stored_bytes(vault.inner, name)
    storage = reopened(settings, [generate_key(), *settings.LAYERED_STORAGE["KEYS"]])
    sealed = 0

    def seal_then_fail(self: EncryptingStream, batch: Any) -> bytearray:
        nonlocal sealed
        sealed += 1
        if sealed > 2:  # part of the new version is written: then the disk fills
            raise OSError("disk full")
        return original_seal(self, batch)

    original_seal = EncryptingStream._seal
    monkeypatch.setattr(EncryptingStream, "_seal", seal_then_fail)
    with pytest.raises(OSError, match="disk full"):
        rotate(storage, name)
    monkeypatch.undo()
    assert stored_bytes(storage.inner, name) == before
    assert storage.listdir("")[1] == [name]
    assert storage.open(name).read() == sample(3 * 1024 * 1024)


def test_rotation_of_a_damaged_file_keeps_it_as_it_was(
    vault: LayeredStorage, settings: Any
) -> None:
    name = vault.save("torn.bin", ContentFile(sample(2 * 1024 * 1024)))
    middle = len(stored_bytes(vault.inner, name)) // 2
    tamper(
        vault.inner,
        name,
        lambda data: (
            bytes(data[:middle]) + bytes([data[middle] ^ 1]) + bytes(data[middle + 1 :])
        ),
    )
    damaged = stored_bytes(vault.inner, name)
    storage = reopened(settings, [generate_key(), *settings.LAYERED_STORAGE["KEYS"]])
    with pytest.raises(SegmentAuthenticationError):
        rotate(storage, name)
    assert stored_bytes(storage.inner, name) == damaged


def test_commands_refuse_a_storage_that_is_not_layered() -> None:
    with pytest.raises(CommandError, match="not a LayeredStorage"):
        run("layered_verify", "--storage", "default")
