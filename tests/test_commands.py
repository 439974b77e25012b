"""Management commands: keygen, and inspect, verify, rotate and encode over real
storages: output, JSON, shards, exit codes, and the findings of issue 13."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import call_command
from django.core.management.base import CommandError

from layered_storage import LayeredStorage
from layered_storage.bulk import Shard, in_shard, walk
from layered_storage.exceptions import SegmentAuthenticationError
from layered_storage.format import lse1
from layered_storage.keys import Key, generate_key
from layered_storage.layers.encryption import EncryptingStream
from layered_storage.maintenance import inspect, rotate
from tests.conftest import inner_config
from tests.utils import flip_byte, read_in_steps, sample, stored_bytes, tamper

ROOT = Path(__file__).resolve().parent.parent


def unknown_version(data: bytearray) -> bytes:
    """Forge an LSE1 version no reader knows, in the header and its copy."""
    forged = bytearray(data)
    forged[8] = forged[len(forged) - lse1.TRAILER_SIZE + 8] = 9
    return bytes(forged)


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str, code: int) -> tuple[str, str, str]:
    """Run a command that must fail with exit status ``code``; return its stdout,
    stderr and error message."""
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(*args, stdout=out, stderr=err)
    assert raised.value.returncode == code, raised.value
    return out.getvalue(), err.getvalue(), str(raised.value)


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_keygen_prints_a_usable_key_with_its_id() -> None:
    out, _ = run("layered_keygen")
    text, comment = out.strip().split("  # key id ")
    assert Key(base64.urlsafe_b64decode(text)).label == comment


def test_keygen_quiet_prints_only_keys() -> None:
    out, _ = run("layered_keygen", "--count", "3", "--quiet")
    keys = out.split()
    assert len(set(keys)) == 3
    assert all(len(base64.urlsafe_b64decode(k)) == 32 for k in keys)


def vault_storages(inner: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Return the STORAGES entries of a layered storage 'vault' over ``inner``."""
    return {
        "vault-inner": inner,
        "vault": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {
                "inner": "vault-inner",
                "layers": ["zstd", "aes-gcm"],
                **options,
            },
        },
    }


@pytest.fixture
def vault(settings: Any, tmp_path: Path, inner_kind: str) -> LayeredStorage:
    """A layered storage registered as STORAGES['vault'], as commands find it."""
    settings.STORAGES = {
        **settings.STORAGES,
        **vault_storages(inner_config(inner_kind, tmp_path)),
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


# -- inspect ------------------------------------------------------------------------


def test_inspect_shows_sizes_layers_and_keys(vault: LayeredStorage) -> None:
    vault.save("a/b.txt", ContentFile(b"inspect me"))
    vault.inner.save("plain.txt", ContentFile(b"legacy"))
    out, _ = run("layered_inspect", "--storage", "vault")
    key = vault.pipeline.keyring().primary.label
    stored = vault.inner.size("a/b.txt")
    assert f"a/b.txt: 10 bytes, {stored} bytes stored, " in out
    assert f"AES-256-GCM, key {key}, bound to its name" in out
    assert "plain.txt: 6 bytes, 6 bytes stored, no layers (plaintext)" in out
    assert "2 file(s) inspected: 1 layered, 1 plaintext" in out
    assert re.search(rf"{key} +1 file\(s\)  primary", out)


def test_inspect_reports_an_unreadable_header_and_goes_on(
    vault: LayeredStorage,
) -> None:
    vault.save("fine.txt", ContentFile(b"fine"))
    broken = vault.save("broken.txt", ContentFile(b"broken"))

    tamper(vault.inner, broken, unknown_version)
    out, err, message = run_failing("layered_inspect", "--storage", "vault", code=1)
    assert "fine.txt: 4 bytes" in out
    assert "FAILED broken.txt: UnsupportedFormatError" in err
    assert "1 file(s) have headers that cannot be read" in message


def test_inspect_names_a_key_the_keyring_lacks(
    vault: LayeredStorage, settings: Any
) -> None:
    vault.save("old.txt", ContentFile(b"old"))
    old_key = vault.pipeline.keyring().primary.label
    reopened(settings, [generate_key()])
    out, _, message = run_failing("layered_inspect", "--storage", "vault", code=1)
    assert "old.txt: size unknown (UnknownKeyError)" in out
    assert re.search(rf"{old_key} +1 file\(s\)  NOT IN THE KEYRING", out)
    assert "1 use a key the keyring lacks" in message


def test_inspect_json_gives_one_object_per_file(vault: LayeredStorage) -> None:
    vault.save("a.txt", ContentFile(b"aaa"))
    vault.inner.save("b.txt", ContentFile(b"bb"))
    out, err = run("layered_inspect", "--storage", "vault", "--json", "--jobs", "4")
    found = {record["name"]: record for record in json_lines(out)}
    assert found["a.txt"]["size"] == 3
    assert found["a.txt"]["key_id"] == vault.pipeline.keyring().primary.label
    assert found["a.txt"]["layers"] == ["zstd", "AES-256-GCM"] or found["a.txt"][
        "layers"
    ] == ["AES-256-GCM"]
    assert found["b.txt"] == {
        "name": "b.txt",
        "status": "ok",
        "size": 2,
        "stored_size": 2,
        "layers": [],
        "key_id": None,
        "aead": None,
        "name_bound": None,
    }
    assert "2 file(s) inspected" in err  # the summary stays off stdout


def vault_with_namespaces(
    settings: Any, tmp_path: Path, kind: str = "filesystem"
) -> tuple[LayeredStorage, LayeredStorage]:
    """Return the storage 'vault' of namespace 'B' and 'before' of namespace 'A',
    over the same inner storage, as after a change of the vault's namespace."""
    inner = vault_storages(inner_config(kind, tmp_path), namespace="B")
    before = {**inner["vault"], "OPTIONS": {**inner["vault"]["OPTIONS"]}}
    before["OPTIONS"]["namespace"] = "A"
    settings.STORAGES = {**settings.STORAGES, **inner, "before": before}
    vault, old = storages["vault"], storages["before"]
    assert isinstance(vault, LayeredStorage)
    assert isinstance(old, LayeredStorage)
    return vault, old


def test_inspect_says_what_each_file_is_bound_to(
    settings: Any, tmp_path: Path, inner_kind: str
) -> None:
    vault, before = vault_with_namespaces(settings, tmp_path, inner_kind)
    secret = vault.pipeline.keyring().primary.secret
    before.save("old/a.txt", ContentFile(b"written under A"))
    vault.save("new/b.txt", ContentFile(b"written under B"))
    with vault.inner.open("new/b.txt") as stored:
        vault.inner.save("moved/b.txt", stored)
    out, _ = run("layered_inspect", "--storage", "vault")
    a = lse1.binding_fingerprint(secret, "A", "old/a.txt")
    b = lse1.binding_fingerprint(secret, "B", "new/b.txt")
    assert f"bound to its name under namespace 'A', not 'B' (binding {a})" in out
    assert "new/b.txt: 15 bytes, " in out
    assert f"bound to its name in namespace 'B' (binding {b})" in out
    assert re.search(
        r"moved/b.txt: size unknown \(HeaderAuthenticationError\), .*, NOT bound to "
        r"its name in namespace 'B' or any other of the settings: likely copied or "
        "renamed",
        out,
    )
    assert (
        "name binding: 1 verified, 1 under another namespace, 1 bound to another "
        "name (likely copied or renamed)" in out
    )
    out, _ = run("layered_inspect", "--storage", "vault", "--json")
    found = {record["name"]: record["binding"] for record in json_lines(out)}
    assert found["old/a.txt"] == {
        "status": "other-namespace",
        "namespace": "A",
        "name": "old/a.txt",
        "fingerprint": a,
    }
    assert found["moved/b.txt"]["status"] == "mismatch"


def test_inspect_as_name_checks_a_renamed_file_against_its_old_name(
    settings: Any, tmp_path: Path
) -> None:
    vault, _ = vault_with_namespaces(settings, tmp_path)
    vault.save("new/b.txt", ContentFile(b"b"))
    with vault.inner.open("new/b.txt") as stored:
        vault.inner.save("moved/b.txt", stored)
    out, _ = run(
        "layered_inspect", "--storage", "vault", "--as-name", "new/b.txt", "moved/b.txt"
    )
    assert "moved/b.txt: " in out
    assert "bound to 'new/b.txt', not its own name, in namespace 'B'" in out
    assert "1 file(s) inspected" in out
    out, _ = run(
        "layered_inspect", "--storage", "vault", "--as-name", "x.txt", "moved/b.txt"
    )
    assert "NOT bound to 'x.txt' in namespace 'B'" in out
    # --namespace asks about another namespace first, here for every file.
    out, _ = run("layered_inspect", "--storage", "vault", "--namespace", "A")
    assert "new/b.txt: 1 bytes" in out
    assert "bound to its name under namespace 'B', not 'A'" in out
    for names in ([], ["new/b.txt", "moved/b.txt"]):
        _, _, message = run_failing(
            "layered_inspect", "--storage", "vault", "--as-name", "y", *names, code=2
        )
        assert "give exactly one file name" in message
    with pytest.raises(CommandError, match="NUL"):
        run("layered_inspect", "--storage", "vault", "--as-name", "a\x00b", "x")


def test_inspect_private_names_print_fingerprints_and_no_name(
    settings: Any, tmp_path: Path
) -> None:
    vault, before = vault_with_namespaces(settings, tmp_path)
    secret = vault.pipeline.keyring().primary.secret
    before.save("jane-doe/scan.pdf", ContentFile(b"A"))
    vault.save("john-roe/scan.pdf", ContentFile(b"B"))
    with vault.inner.open("john-roe/scan.pdf") as stored:
        vault.inner.save("mary-major/scan.pdf", stored)
    vault.inner.save("ann-other/plain.txt", ContentFile(b"plaintext"))
    broken = vault.save("bob-broken/scan.pdf", ContentFile(b"broken"))

    tamper(vault.inner, broken, unknown_version)

    def private(*extra: str) -> str:
        args = ("layered_inspect", "--storage", "vault", "--private-names", *extra)
        if "--as-name" in extra:
            out, err = run(*args)
            message = ""
        else:  # the broken header fails the run
            out, err, message = run_failing(*args, code=1)
        for person in ("jane-doe", "john-roe", "mary-major", "ann-other", "bob-broken"):
            assert person not in out + err + message
        return out

    text = private()
    json_out = private("--json")
    asked = private("--as-name", "john-roe/scan.pdf", "mary-major/scan.pdf")
    jane_a = lse1.binding_fingerprint(secret, "A", "jane-doe/scan.pdf")
    jane_b = lse1.binding_fingerprint(secret, "B", "jane-doe/scan.pdf")
    john = lse1.binding_fingerprint(secret, "B", "john-roe/scan.pdf")
    mary = lse1.binding_fingerprint(secret, "B", "mary-major/scan.pdf")
    assert f"name {jane_b}: " in text
    assert f"not 'B' (binding {jane_a})" in text
    assert f"name {john}: 1 bytes" in text
    assert f"name {mary}: size unknown" in text
    assert "(name withheld): 9 bytes, 9 bytes stored, no layers" in text
    assert "(name withheld): header cannot be read (UnsupportedFormatError)" in text
    records = json_lines(json_out)
    assert all(record["name"] is None for record in records)
    assert {record.get("name_fingerprint") for record in records} == {
        jane_b,
        john,
        mary,
        None,
    }
    # The renamed file's binding is the fingerprint of the name it was copied from.
    assert f"name {mary}: " in asked
    assert "bound to the other name given, not its own name, in namespace 'B' " in asked
    assert f"(binding {john})" in asked


def test_inspect_without_the_key_cannot_verify(
    vault: LayeredStorage, settings: Any
) -> None:
    vault.save("old.txt", ContentFile(b"old"))
    old_key = vault.pipeline.keyring().primary.label
    reopened(settings, [generate_key()])
    out, _, _ = run_failing("layered_inspect", "--storage", "vault", code=1)
    assert (
        f"bound to a name (cannot verify: key {old_key} is not in the keyring)" in out
    )
    assert "name binding: 1 not checked (no key)" in out


# -- verify -------------------------------------------------------------------------


def test_verify_reports_the_tampered_file(vault: LayeredStorage) -> None:
    vault.save("good.txt", ContentFile(sample(100_000)))
    bad = vault.save("bad.txt", ContentFile(sample(100_000, 2)))
    tamper(vault.inner, bad, lambda data: bytes(data[:-1]) + bytes([data[-1] ^ 1]))
    out, err, _ = run_failing("layered_verify", "--storage", "vault", code=1)
    assert "1 of 2 files verified" in out
    assert "FAILED bad.txt: TruncatedFileError" in err
    out, _ = run("layered_verify", "--storage", "vault", "good.txt")
    assert "1 of 1 files verified (100000 bytes" in out


def test_verify_json_reports_failures_as_objects(vault: LayeredStorage) -> None:
    vault.save("good.txt", ContentFile(b"good"))
    bad = vault.save("bad.txt", ContentFile(sample(200_000)))
    middle = len(stored_bytes(vault.inner, bad)) // 2
    tamper(vault.inner, bad, flip_byte(middle))
    out, _, _ = run_failing("layered_verify", "--storage", "vault", "--json", code=1)
    found = {record["name"]: record for record in json_lines(out)}
    assert found["good.txt"] == {"name": "good.txt", "status": "verified", "size": 4}
    assert found["bad.txt"]["status"] == "failed"
    assert found["bad.txt"]["error"] == "SegmentAuthenticationError"
    assert "'bad.txt' failed authentication" in found["bad.txt"]["message"]


# -- rotate -------------------------------------------------------------------------


def test_rotation_from_a_to_b(vault: LayeredStorage, settings: Any) -> None:
    key_a, key_b = generate_key(), generate_key()
    storage = reopened(settings, [key_a])
    names = [
        storage.save(f"doc{i}.bin", ContentFile(sample(200_000, i))) for i in range(3)
    ]
    storage = reopened(settings, [key_b, key_a])
    out, _ = run("layered_rotate", "--storage", "vault", "--dry-run")
    assert "3 of 3 files would be re-encrypted" in out
    out, _ = run("layered_rotate", "--storage", "vault", "--jobs", "3")
    assert "3 of 3 files re-encrypted" in out
    b_label = storage.pipeline.keyring().primary.label
    assert {inspect(storage, name).key_id for name in names} == {b_label}
    storage = reopened(settings, [key_b])
    for i, name in enumerate(names):
        assert storage.open(name).read() == sample(200_000, i)
    out, _ = run("layered_rotate", "--storage", "vault")  # nothing left to do
    assert "0 of 3 files re-encrypted" in out


def test_rotation_refuses_while_files_use_a_key_the_keyring_lacks(
    vault: LayeredStorage, settings: Any
) -> None:
    key_a, key_b, key_c = generate_key(), generate_key(), generate_key()
    reopened(settings, [key_a]).save("a.bin", ContentFile(b"a"))
    written_by_b = reopened(settings, [key_b]).save("b.bin", ContentFile(b"b"))
    before = stored_bytes(vault.inner, "a.bin")
    storage = reopened(settings, [key_c, key_a])  # key_b was dropped
    b_label = inspect(storage, written_by_b).key_id
    for extra in ([], ["--dry-run"]):
        _, err, message = run_failing(
            "layered_rotate", "--storage", "vault", *extra, code=3
        )
        assert f"Refusing to rotate: 1 file(s) use key(s) {b_label}" in message
        assert "nothing was changed" in message
        assert re.search(rf"{b_label} +1 file\(s\)  NOT IN THE KEYRING", err)
    assert stored_bytes(storage.inner, "a.bin") == before


def test_rotation_dry_run_counts_only_what_the_run_would_do(
    vault: LayeredStorage, settings: Any
) -> None:
    """Finding: --dry-run counted plaintext and damaged files."""
    old = generate_key()
    storage = reopened(settings, [old])
    for i in range(3):
        storage.save(f"old{i}.bin", ContentFile(sample(1000, i)))
    damaged = storage.save("damaged.bin", ContentFile(sample(300_000)))
    middle = len(stored_bytes(storage.inner, damaged)) // 2
    tamper(storage.inner, damaged, flip_byte(middle))
    storage = reopened(settings, [generate_key(), old])
    storage.save("new.bin", ContentFile(b"already with the primary key"))
    storage.inner.save("plain.txt", ContentFile(b"not encrypted at all"))
    out, err, _ = run_failing(
        "layered_rotate", "--storage", "vault", "--dry-run", code=1
    )
    assert "3 of 6 files would be re-encrypted" in out
    assert "FAILED damaged.bin: SegmentAuthenticationError" in err
    out, err, _ = run_failing("layered_rotate", "--storage", "vault", code=1)
    assert "3 of 6 files re-encrypted" in out
    assert "FAILED damaged.bin: SegmentAuthenticationError" in err


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


# -- encode -------------------------------------------------------------------------


def test_encode_layers_plaintext_in_place_and_skips_the_rest(
    vault: LayeredStorage,
) -> None:
    vault.inner.save("docs/a.txt", ContentFile(b"plain a"))
    vault.inner.save("docs/b.bin", ContentFile(sample(300_000)))
    vault.inner.save("other/c.txt", ContentFile(b"plain c"))
    vault.save("docs/d.txt", ContentFile(b"layered already"))
    before = stored_bytes(vault.inner, "docs/d.txt")
    out, _ = run("layered_encode", "--storage", "vault", "--dry-run")
    assert "3 of 4 files would be encoded (1 already layered)" in out
    assert inspect(vault, "docs/a.txt").layers == ()
    out, _ = run("layered_encode", "--storage", "vault", "--prefix", "docs/")
    assert "2 of 3 files encoded (1 already layered)" in out
    assert vault.open("docs/a.txt").read() == b"plain a"
    assert vault.open("docs/b.bin").read() == sample(300_000)
    assert stored_bytes(vault.inner, "docs/d.txt") == before
    assert inspect(vault, "other/c.txt").layers == ()
    out, _ = run("layered_encode", "--storage", "vault")
    assert "1 of 4 files encoded (3 already layered)" in out
    assert vault.open("other/c.txt").read() == b"plain c"


def test_encode_says_when_the_application_cannot_read_plaintext_meanwhile(
    vault: LayeredStorage,
) -> None:
    vault.inner.save("a.txt", ContentFile(b"a"))
    _, err = run("layered_encode", "--storage", "vault", "--dry-run")
    assert "does not set allow_plaintext" in err


def test_encode_refuses_while_files_use_a_key_the_keyring_lacks(
    vault: LayeredStorage, settings: Any
) -> None:
    vault.save("old.bin", ContentFile(b"old"))
    vault.inner.save("plain.txt", ContentFile(b"plain"))
    reopened(settings, [generate_key()])
    _, _, message = run_failing("layered_encode", "--storage", "vault", code=3)
    assert "Refusing to encode" in message
    assert inspect(vault, "plain.txt").layers == ()


class OwnSaveStorage(FileSystemStorage):
    """A storage with its own ``_save``: the generic backend, which cannot replace."""

    def _save(self, name: str, content: Any) -> str:
        return str(super()._save(name, content))  # type: ignore[misc]


def test_encode_stops_where_files_cannot_be_replaced_atomically(
    settings: Any, tmp_path: Path
) -> None:
    inner = {
        "BACKEND": "tests.test_commands.OwnSaveStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }
    settings.STORAGES = {**settings.STORAGES, **vault_storages(inner)}
    (tmp_path / "a.txt").write_bytes(b"plain")
    _, _, message = run_failing("layered_encode", "--storage", "vault", code=2)
    assert "cannot" in message
    assert "replace a file atomically" in message
    assert (tmp_path / "a.txt").read_bytes() == b"plain"


# -- choosing the storage and the files ---------------------------------------------


def test_commands_refuse_a_storage_that_is_not_layered() -> None:
    """Finding: the message named no layered alias."""
    _, _, message = run_failing("layered_verify", "--storage", "default", code=2)
    assert "STORAGES['default'] is a FileSystemStorage, not a LayeredStorage" in message
    assert "the LayeredStorage aliases are: 'private'" in message


def test_without_storage_the_only_layered_alias_is_used(
    settings: Any, tmp_path: Path
) -> None:
    """Finding: every command defaulted to 'default', a plain storage."""
    settings.STORAGES = {
        "default": inner_config("filesystem", tmp_path),
        "private": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": "default"},
        },
    }
    storages["private"].save("x.txt", ContentFile(b"x"))
    out, _ = run("layered_inspect")
    assert "x.txt: 1 bytes" in out


def test_without_storage_several_layered_aliases_are_named(
    vault: LayeredStorage,
) -> None:
    _, _, message = run_failing("layered_verify", code=2)
    assert "Choose a storage with --storage" in message
    assert "'private', 'vault'" in message


def test_wrong_arguments_exit_with_usage_status(vault: LayeredStorage) -> None:
    for bad in (["--shard", "4/4"], ["--shard", "x"], ["--jobs", "0"]):
        with pytest.raises(CommandError, match=r"shard|jobs"):
            run("layered_verify", "--storage", "vault", *bad)


def test_shards_partition_the_files(vault: LayeredStorage) -> None:
    names = {vault.save(f"f/{i:02}.txt", ContentFile(b"%d" % i)) for i in range(40)}
    seen: list[str] = []
    for index in range(4):
        out, _ = run(
            "layered_inspect", "--storage", "vault", "--json", "--shard", f"{index}/4"
        )
        part = [record["name"] for record in json_lines(out)]
        assert 0 < len(part) < 40
        seen += part
    assert sorted(seen) == sorted(names)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_failures_on_a_terminal_get_lines_of_their_own(
    vault: LayeredStorage,
) -> None:
    """Finding: 'verifying [        ] 1/209FAILED documents/big.bin: ...'."""
    for i in range(5):
        vault.save(f"f{i}.txt", ContentFile(b"fine"))
        vault.inner.save(f"plain{i}.txt", ContentFile(b"not layered"))
    err = Terminal()
    with pytest.raises(CommandError):
        call_command(
            "layered_verify", "--storage", "vault", stdout=Terminal(), stderr=err
        )
    shown = [
        line.rsplit("\r", 1)[-1].replace("\x1b[K", "")  # what the terminal shows
        for line in err.getvalue().split("\n")
    ]
    failures = [line for line in shown if "FAILED" in line]
    assert len(failures) == 5
    assert all(line.startswith("FAILED plain") for line in failures)
    assert "verifying  10 files, 5 failed" in shown


# -- many files ------------------------------------------------------------------------


def encoded(storage: LayeredStorage, name: str, data: bytes) -> bytes:
    """Return the bytes ``storage`` stores for ``data`` saved as ``name``."""
    return storage.pipeline.encode(io.BytesIO(data), storage.context(name)).read()


def put_stored(storage: LayeredStorage, objects: dict[str, bytes]) -> None:
    """Store each of ``objects`` (name: stored bytes) in the inner storage as is,
    many at a time (on S3 with one PUT each)."""
    inner: Any = storage.inner
    if not isinstance(inner, FileSystemStorage):
        client = inner.connection.meta.client

        def put(item: tuple[str, bytes]) -> None:
            key = inner._normalize_name(item[0])
            client.put_object(Bucket=inner.bucket_name, Key=key, Body=item[1])

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(put, objects.items()))
        return
    for name, data in objects.items():
        path = Path(inner.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_encode_1000_mixed_files_then_verify_them_all(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        **vault_storages(inner_config(kind, tmp_path), allow_plaintext=True),
    }
    vault = reopened(settings)
    originals = {
        f"m/{i // 100}/{i:04}.txt": sample(50 + i % 300, i) for i in range(1000)
    }

    put_stored(
        vault,
        {
            # A third already layered, the rest plaintext.
            name: encoded(vault, name, data) if i % 3 == 0 else data
            for i, (name, data) in enumerate(originals.items())
        },
    )
    plaintext = 666
    out, _ = run("layered_encode", "--storage", "vault", "--jobs", "8")
    assert f"{plaintext} of 1000 files encoded ({1000 - plaintext} already" in out
    settings.STORAGES["vault"]["OPTIONS"]["allow_plaintext"] = False
    vault = reopened(settings)
    out, _ = run("layered_verify", "--storage", "vault", "--jobs", "8")
    assert "1000 of 1000 files verified" in out
    for name, data in list(originals.items())[::50]:
        assert vault.open(name).read() == data


# -- killed and run again ---------------------------------------------------------

#: The child prints this as it starts encoding its first file.
READY = "encoding"

# The command, with a hook that says when the first file starts being encoded (after
# the inventory), so that the kills land among the rewrites.
KILL_CHILD = f"""
import django
from django.core.management import call_command
django.setup()
from layered_storage.management.commands import layered_encode
encode = layered_encode.encode
def announced(storage, name, **options):
    print({READY!r}, flush=True)
    layered_encode.encode = encode
    return encode(storage, name, **options)
layered_encode.encode = announced
call_command("layered_encode", "--storage", "vault", "--jobs", "4")
"""


def child_environment(folder: Path, module: str, storages: dict[str, Any]) -> Any:
    """Write a settings module for a child process; return its environment."""
    (folder / f"{module}.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        f"STORAGES = {{**STORAGES, **{storages!r}}}  # noqa: F405\n"
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": module,
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_encode_killed_and_run_again_loses_nothing_and_encodes_once(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    vault_entries = vault_storages(inner_config(kind, tmp_path), allow_plaintext=True)
    settings.STORAGES = {**settings.STORAGES, **vault_entries}
    vault = reopened(settings)
    rng = random.Random(13)
    sizes = [rng.choice([10, 2_000, 300_000, 1_200_000]) for _ in range(100)]
    originals = {f"k/{i:03}.bin": sample(size, i) for i, size in enumerate(sizes)}
    for i, (name, data) in enumerate(originals.items()):
        (vault if i % 4 == 0 else vault.inner).save(name, ContentFile(data))
    environment = child_environment(tmp_path, "encode_kill_settings", vault_entries)
    kills = 0
    codes: list[int] = []
    for attempt in range(40):
        errors = tmp_path / f"stderr-{attempt}.txt"
        with (
            errors.open("w") as stderr,
            subprocess.Popen(
                [sys.executable, "-c", KILL_CHILD],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=environment,
                cwd=ROOT,
            ) as child,
        ):
            assert child.stdout is not None
            # Threads that start together may both announce: "encodingencoding".
            if child.stdout.readline().startswith(READY):
                time.sleep(rng.uniform(0, 0.1 * 1.3**attempt))
                if child.poll() is None:
                    child.send_signal(signal.SIGKILL)
                    kills += 1
            code = child.wait(timeout=120)
        codes.append(code)
        # A run that was not killed ends well, or only with files that failed.
        assert code in (0, -signal.SIGKILL), errors.read_text()
        # After every kill: every file there, read back as it was, layered at most
        # once (a file encoded twice would read back as LSE1 bytes).
        assert sorted(walk(vault, "k/")) == sorted(originals)
        for name, data in originals.items():
            with vault.open(name) as opened:
                assert read_in_steps(opened, 1024 * 1024) == data, name
        if code == 0:
            break
    else:
        pytest.fail("the encoding never completed between the kills")
    assert kills >= 2, f"the kills should land while files are encoded: {codes}"
    assert all(inspect(vault, name).layered for name in originals)


# -- memory while walking many objects --------------------------------------------

MEMORY_CHILD = """
import io, json, sys, django
from django.core.management import call_command
django.setup()

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(field))

def verify(prefix):
    out = io.StringIO()
    call_command("layered_verify", "--storage", "vault", "--prefix", prefix,
                 "--jobs", "16", "--shard", sys.argv[1], stdout=out,
                 stderr=io.StringIO())
    return out.getvalue()

verify("warm/")  # imports, threads and connections, as any run has them
try:  # reset the peak to the current size (Linux), else measure from the peak
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
except OSError:
    pass
before = status("VmHWM:")
out = verify("many/")
print(json.dumps({"growth": status("VmHWM:") - before, "out": out}))
"""

MANY = 10_000


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_walking_10000_objects_keeps_memory_bounded(
    settings: Any, tmp_path: Path, kind: str
) -> None:
    # Unbound files, so one encrypted blob is valid under every name.
    layers = [("aes-gcm", {"bind_name": False})]
    entries = vault_storages(inner_config(kind, tmp_path))
    entries["vault"]["OPTIONS"]["layers"] = layers
    settings.STORAGES = {**settings.STORAGES, **entries}
    vault = reopened(settings)
    blob = stored_bytes(vault.inner, vault.save("blob", ContentFile(b"tiny")))
    names = [f"warm/{i}" for i in range(50)]
    names += [f"many/{i // 1000}/{i:05}" for i in range(MANY)]
    put_stored(vault, dict.fromkeys(names, blob))
    environment = child_environment(tmp_path, "memory_walk_settings", entries)
    # Every object is listed; on S3 a tenth are read (one GET each, at a few
    # hundred a second on two cores), the rest skipped by their shard.
    shard = Shard(0, 10 if kind == "s3" else 1)
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, f"{shard.index}/{shard.count}"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    verified = sum(in_shard(name, shard) for name in names if name.startswith("many/"))
    assert f"{verified} of {verified} files verified" in result["out"]
    assert result["growth"] < 64 * 1024 * 1024, result["growth"]
