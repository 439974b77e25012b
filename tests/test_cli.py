"""``python -m layered_storage``: keygen, and encrypt, decrypt and inspect stored
bytes with no Django settings, raising what the storage raises."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from layered_storage import LayeredStorage
from layered_storage.__main__ import KEYS_ENV, main
from layered_storage.format import lse1
from layered_storage.keys import Key, generate_key
from tests.conftest import make_storage
from tests.utils import flip_byte, sample, stored_bytes, tamper

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: bytes = b"", keys: str | None = None) -> Any:
    """Run ``python -m layered_storage`` in a fresh process with no Django settings."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", KEYS_ENV)
    }
    if keys is not None:
        environment[KEYS_ENV] = keys
    return subprocess.run(
        [sys.executable, "-m", "layered_storage", *args],
        input=stdin,
        capture_output=True,
        env=environment,
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture
def key_file(tmp_path: Path, settings: Any) -> Path:
    """The storage's keys, written as layered_keygen prints them."""
    path = tmp_path / "keys.txt"
    lines = [
        f"{key}  # key id {Key(base64.urlsafe_b64decode(key)).label}"
        for key in settings.LAYERED_STORAGE["KEYS"]
    ]
    path.write_text("# the keys of STORAGES['private']\n" + "\n".join(lines) + "\n")
    return path


def failure(storage: LayeredStorage, name: str) -> str:
    """Return what reading ``name`` through the storage raises, as the CLI shows it."""
    with pytest.raises(Exception) as raised:  # noqa: PT011 (any class: compared below)
        storage.open(name).read()
    return f"{type(raised.value).__name__}: {raised.value}\n"


def saved_in_media(
    settings: Any, tmp_path: Path, name: str, content: bytes
) -> tuple[LayeredStorage, str, Path]:
    """Save ``content`` through aes-gcm in namespace "media"; return the storage,
    the name it got, and a copy of its stored bytes outside the storage."""
    storage = make_storage(
        settings, tmp_path, "filesystem", ["aes-gcm"], namespace="media"
    )
    name = storage.save(name, ContentFile(content))
    stored = tmp_path / "stored.bin"
    stored.write_bytes(stored_bytes(storage.inner, name))
    return storage, name, stored


def test_keygen_needs_no_settings() -> None:
    done = cli("keygen", "--count", "2")
    assert done.returncode == 0, done.stderr
    for line in done.stdout.decode().splitlines():
        text, comment = line.split("  # key id ")
        assert Key(base64.urlsafe_b64decode(text)).label == comment
    quiet = cli("keygen", "--quiet").stdout.decode().split()
    assert len(base64.urlsafe_b64decode(quiet[0])) == 32


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_a_stored_file_decrypts_without_django(
    settings: Any, tmp_path: Path, kind: str, key_file: Path
) -> None:
    storage = make_storage(settings, tmp_path, kind, ["zstd", "aes-gcm"])
    data = sample(700_000)
    name = storage.save("scans/0042.pdf", ContentFile(data))
    if kind == "s3":  # straight from the bucket, as any S3 client would fetch it
        import boto3

        inner: Any = storage.inner
        client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
        key = inner._normalize_name(name)
        stored = client.get_object(Bucket=inner.bucket_name, Key=key)["Body"].read()
    else:
        stored = stored_bytes(storage.inner, name)
    (tmp_path / "stored.bin").write_bytes(stored)
    out = tmp_path / "out.pdf"
    done = cli(
        "decrypt",
        "--key-file",
        str(key_file),
        "--name",
        name,
        str(tmp_path / "stored.bin"),
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == data
    piped = cli(
        "decrypt",
        "--name",
        name,
        stdin=stored,
        keys=",".join(settings.LAYERED_STORAGE["KEYS"]),
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == data


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: bytes(d[:-1]) + bytes([d[-1] ^ 1]), id="last-byte"),
        pytest.param(
            lambda d: bytes(d[:5000]) + bytes([d[5000] ^ 1]) + bytes(d[5001:]),
            id="middle",
        ),
        pytest.param(lambda d: bytes(d[:-70_000]), id="cut"),
        pytest.param(
            lambda d: bytes(d[:20]) + bytes([d[20] ^ 1]) + bytes(d[21:]), id="header"
        ),
    ],
)
def test_a_tampered_file_fails_as_the_storage_fails(
    settings: Any,
    tmp_path: Path,
    key_file: Path,
    change: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    name = storage.save("a/b.bin", ContentFile(sample(300_000)))
    tamper(storage.inner, name, change)
    expected = failure(storage, name)
    (tmp_path / "stored.bin").write_bytes(stored_bytes(storage.inner, name))
    out = tmp_path / "out.bin"
    code = main(
        [
            "decrypt",
            "--key-file",
            str(key_file),
            "--name",
            name,
            str(tmp_path / "stored.bin"),
            str(out),
        ]
    )
    assert code == 1
    assert capsys.readouterr().err == expected
    assert not out.exists()
    assert list(tmp_path.glob(".out.bin*")) == []  # no partial plaintext either


def test_a_tampered_file_fails_the_same_in_a_fresh_process(
    settings: Any, tmp_path: Path, key_file: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    name = storage.save("x.bin", ContentFile(sample(200_000)))
    tamper(storage.inner, name, flip_byte(5000))
    done = cli(
        "decrypt",
        "--key-file",
        str(key_file),
        "--name",
        name,
        stdin=stored_bytes(storage.inner, name),
    )
    assert done.returncode == 1
    assert done.stderr.decode() == failure(storage, name)


def test_a_wrong_name_or_key_fails_as_the_storage_fails(
    settings: Any, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, name, stored = saved_in_media(settings, tmp_path, "right.txt", b"right")
    args = ["decrypt", "--key-file", str(key_file), str(stored), str(tmp_path / "o")]
    assert main([*args, "--name", name, "--namespace", "media"]) == 0
    assert (tmp_path / "o").read_bytes() == b"right"
    assert main([*args, "--name", name]) == 1  # the namespace is bound too
    assert (
        "HeaderAuthenticationError: 'right.txt' failed header"
        in capsys.readouterr().err
    )
    other_keys = tmp_path / "other.txt"
    other_keys.write_text(generate_key())
    assert (
        main(
            [
                "decrypt",
                "--key-file",
                str(other_keys),
                "--name",
                name,
                "--namespace",
                "media",
                str(stored),
                str(tmp_path / "o2"),
            ]
        )
        == 1
    )
    assert (
        "UnknownKeyError: 'right.txt' was encrypted with key" in capsys.readouterr().err
    )


def test_encrypted_bytes_open_in_the_storage(
    settings: Any, tmp_path: Path, key_file: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    data = sample(400_000, 3)
    (tmp_path / "in.bin").write_bytes(data)
    target = Path(storage.inner.path("made/offline.bin"))
    target.parent.mkdir(parents=True)
    done = cli(
        "encrypt",
        "--key-file",
        str(key_file),
        "--name",
        "made/offline.bin",
        str(tmp_path / "in.bin"),
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert storage.open("made/offline.bin").read() == data
    piped = cli(
        "encrypt",
        "--layers",
        "aes-gcm",
        "--unbound",
        stdin=data,
        keys=settings.LAYERED_STORAGE["KEYS"][1],
    )
    assert piped.returncode == 0, piped.stderr
    unbound = make_storage(
        settings, tmp_path / "u", "filesystem", [("aes-gcm", {"bind_name": False})]
    )
    unbound.inner.save("any-name.bin", ContentFile(piped.stdout))
    assert unbound.open("any-name.bin").read() == data


def test_inspect_shows_the_header_and_with_keys_the_size(
    settings: Any, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["zstd", "aes-gcm"])
    name = storage.save("doc.txt", ContentFile(sample(100_000)))
    stored = tmp_path / "stored.bin"
    stored.write_bytes(stored_bytes(storage.inner, name))
    label = storage.pipeline.keyring().primary.label
    assert main(["inspect", str(stored)]) == 0
    assert (
        f"size unknown (no key given), {stored.stat().st_size} bytes stored, zstd + "
        f"AES-256-GCM, key {label}, bound to a name (cannot verify: no key given)"
        in capsys.readouterr().out
    )
    assert (
        main(
            [
                "inspect",
                "--key-file",
                str(key_file),
                "--name",
                name,
                "--json",
                str(stored),
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["size"] == 100_000
    assert record["key_id"] == label
    assert record["binding"]["status"] == "verified"


def test_inspect_checks_the_binding_with_the_key(
    settings: Any, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage, name, stored = saved_in_media(
        settings, tmp_path, "people/jane-doe.txt", b"jane"
    )
    secret = storage.pipeline.keyring().primary.secret
    fingerprint = lse1.binding_fingerprint(secret, "media", name)

    def inspect(*args: str) -> str:
        assert main(["inspect", "--key-file", str(key_file), *args, str(stored)]) == 0
        return capsys.readouterr().out

    out = inspect("--name", name, "--namespace", "media")
    assert out.startswith(f"{name}: 4 bytes, ")
    assert f"bound to its name in namespace 'media' (binding {fingerprint})" in out
    assert "NOT bound to its name in namespace '': likely copied or renamed" in (
        inspect("--name", name)
    )
    assert "NOT bound to its name in namespace 'media': likely" in (
        inspect("--name", "people/john-roe.txt", "--namespace", "media")
    )
    assert "bound to a name (cannot verify: no name given)" in inspect()
    private = inspect("--name", name, "--namespace", "media", "--private-names")
    assert "jane" not in private
    assert private.startswith(f"name {fingerprint}: 4 bytes")
    record = json.loads(
        inspect("--name", name, "--namespace", "media", "--private-names", "--json")
    )
    assert "jane" not in json.dumps(record)
    assert record["name"] is None
    assert record["name_fingerprint"] == record["binding"]["fingerprint"] == fingerprint


def test_inspect_without_keys_withholds_a_private_name(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["aes-gcm"])
    name = storage.save("people/jane-doe.txt", ContentFile(b"jane"))
    done = cli(
        "inspect",
        "--name",
        name,
        "--private-names",
        stdin=stored_bytes(storage.inner, name),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("(name withheld): size unknown (no key")
    assert b"jane" not in done.stdout + done.stderr


def test_keys_never_come_from_an_argument(tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x")
    for attempt in (["--key", generate_key()], ["--keys", generate_key()]):
        done = cli("encrypt", "--name", "n", *attempt, str(tmp_path / "in"))
        assert done.returncode == 2
        assert b"unrecognized arguments" in done.stderr


def test_missing_and_malformed_keys_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEYS_ENV, raising=False)
    (tmp_path / "in").write_bytes(b"x")
    assert main(["decrypt", "--name", "n", str(tmp_path / "in")]) == 2
    assert "decrypt needs keys" in capsys.readouterr().err
    secret = "not-a-key-but-secret"
    monkeypatch.setenv(KEYS_ENV, secret)
    assert main(["decrypt", "--name", "n", str(tmp_path / "in")]) == 2
    err = capsys.readouterr().err
    assert f"${KEYS_ENV}" in err
    assert secret not in err
    assert (
        main(["decrypt", "--key-file", str(tmp_path / "none"), str(tmp_path / "in")])
        == 2
    )
    assert "cannot read the key file" in capsys.readouterr().err


def test_a_name_bound_file_needs_its_name(
    settings: Any, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = make_storage(settings, tmp_path, "filesystem", ["aes-gcm"])
    name = storage.save("bound.txt", ContentFile(b"bound"))
    (tmp_path / "stored").write_bytes(stored_bytes(storage.inner, name))
    assert main(["decrypt", "--key-file", str(key_file), str(tmp_path / "stored")]) == 2
    assert "give --name NAME" in capsys.readouterr().err


def documented_reader() -> Any:
    """Return ``decode`` from the reader that docs/howto/recover.rst gives, written
    from the format reference alone."""
    text = (ROOT / "docs" / "howto" / "recover.rst").read_text()
    section = text.split("Without this package", 1)[1]
    block = section.split(".. code-block:: python\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "recover.rst", "exec"), namespace)
    return namespace["decode"]


@pytest.mark.parametrize(
    "layers", [["zstd", "aes-gcm"], ["aes-gcm"], ["zstd", "chacha20-poly1305"]]
)
def test_the_documented_reader_decodes_what_the_storage_writes(
    settings: Any, tmp_path: Path, layers: list[str]
) -> None:
    decode = documented_reader()
    storage = make_storage(
        settings, tmp_path, "filesystem", layers, namespace="archive"
    )
    key = base64.urlsafe_b64decode(settings.LAYERED_STORAGE["KEYS"][0])
    for size in (0, 1, 65535, 65536, 70_000, 2 * 1024 * 1024 + 5):
        data = sample(size, size)
        name = storage.save(f"dir/é-{size}.bin", ContentFile(data))
        stored = stored_bytes(storage.inner, name)
        assert decode(stored, key, name, "archive") == data
        with pytest.raises(Exception, match="wrong key, name or namespace"):
            decode(stored, key, name + "x", "archive")
        if size > 70_000:  # cut at a segment boundary, trailer put back
            with pytest.raises(ValueError, match="truncated"):
                decode(stored[: 90 + 65552] + stored[-92:], key, name, "archive")
