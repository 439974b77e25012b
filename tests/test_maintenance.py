"""Maintenance and bulk work: the streamed walk, shards, the bounded runner, encode,
inspect with sizes, the inventory and the offline pipeline."""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from hypothesis import given
from hypothesis import strategies as st

from layered_storage import LayeredStorage
from layered_storage.bulk import Shard, in_shard, run_each, walk
from layered_storage.exceptions import (
    ConfigurationError,
    DecryptionError,
    HeaderAuthenticationError,
    NotLayeredError,
)
from layered_storage.format import lse1
from layered_storage.keys import generate_key, parse_keys
from layered_storage.layers.base import FileContext
from layered_storage.maintenance import (
    encode,
    inspect,
    missing_key_ids,
    offline_pipeline,
    take_inventory,
)
from tests.conftest import make_storage
from tests.utils import sample, stored_bytes

NAMES = ["a.txt", "docs/x.txt", "docs/2024/y.txt", "docs/2024-old.txt", "z/z/z.txt"]


@pytest.fixture
def filled(storage: LayeredStorage) -> LayeredStorage:
    for name in NAMES:
        storage.save(name, ContentFile(name.encode()))
    return storage


def test_walk_yields_every_file(filled: LayeredStorage) -> None:
    assert sorted(walk(filled)) == sorted(NAMES)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("docs/", ["docs/x.txt", "docs/2024/y.txt", "docs/2024-old.txt"]),
        ("docs/2024", ["docs/2024/y.txt", "docs/2024-old.txt"]),
        ("docs/2024/", ["docs/2024/y.txt"]),
        ("z", ["z/z/z.txt"]),
        ("nothing/", []),
    ],
)
def test_walk_takes_a_name_prefix(
    filled: LayeredStorage, prefix: str, expected: list[str]
) -> None:
    assert sorted(walk(filled, prefix)) == sorted(expected)


def test_walk_skips_unfinished_writes(fs_storage: LayeredStorage) -> None:
    fs_storage.save("kept.txt", ContentFile(b"kept"))
    Path(fs_storage.inner.path("sub")).mkdir()
    for folder in ("", "sub/"):
        Path(fs_storage.inner.path(f"{folder}.layered-0123abcd.partial")).write_bytes(
            b"half"
        )
    assert list(walk(fs_storage)) == ["kept.txt"]


def test_walk_on_s3_pages_without_holding_the_listing(
    settings: Any, tmp_path: Path
) -> None:
    storage = make_storage(settings, tmp_path, "s3", ["aes-gcm"])
    inner: Any = storage.inner
    client = inner.connection.meta.client
    for i in range(5):
        client.put_object(
            Bucket=inner.bucket_name, Key=inner._normalize_name(f"p/{i}"), Body=b"x"
        )
    client.put_object(  # a "folder" as consoles make them
        Bucket=inner.bucket_name, Key=inner._normalize_name("p") + "/", Body=b""
    )
    pages: list[int] = []
    paginate = client.get_paginator("list_objects_v2").paginate

    def small_pages(**kwargs: Any) -> Iterator[Any]:
        for page in paginate(PaginationConfig={"PageSize": 2}, **kwargs):
            pages.append(len(page.get("Contents", ())))
            yield page

    class Paginator:
        paginate = staticmethod(small_pages)

    original = client.get_paginator
    client.get_paginator = lambda operation: Paginator()
    try:
        names = walk(storage)
        assert next(names) == "p/0"
        assert pages == [2]  # one page fetched, not the whole listing
        assert list(names) == ["p/1", "p/2", "p/3", "p/4"]
    finally:
        client.get_paginator = original


# -- shards -------------------------------------------------------------------------


def test_shard_parses_i_of_n() -> None:
    assert Shard.parse("3/4") == Shard(3, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)


def test_shard_of_a_name_is_stable() -> None:
    # The hash is part of the interface: machines with other Python versions must
    # agree. SHA-256 of the UTF-8 name, first 8 bytes big-endian, modulo N.
    for name, index in (("a.txt", 1), ("scans/0042.pdf", 0), ("é/ü.bin", 3)):
        digest = hashlib.sha256(name.encode("utf-8")).digest()
        assert int.from_bytes(digest[:8], "big") % 4 == index
        assert [i for i in range(4) if in_shard(name, Shard(i, 4))] == [index]


@given(st.lists(st.text(min_size=1), max_size=50), st.integers(1, 12))
def test_shards_partition_any_names(names: list[str], count: int) -> None:
    for name in names:
        owners = [i for i in range(count) if in_shard(name, Shard(i, count))]
        assert len(owners) == 1


# -- the runner ---------------------------------------------------------------------


def test_run_each_keeps_few_names_in_flight() -> None:
    drawn = 0
    finished = 0
    lock = threading.Lock()
    most_ahead = 0

    def names() -> Iterator[str]:
        nonlocal drawn, most_ahead
        for i in range(200):
            with lock:
                drawn += 1
                most_ahead = max(most_ahead, drawn - finished)
            yield str(i)

    def work(name: str) -> int:
        nonlocal finished
        time.sleep(0.001)
        with lock:
            finished += 1
        return int(name)

    outcomes = list(run_each(names(), work, jobs=4))
    assert sorted(o.value for o in outcomes if o.value is not None) == list(range(200))
    assert most_ahead <= 2 * 4 + 1


@pytest.mark.parametrize("jobs", [1, 4])
def test_run_each_reports_file_errors_and_goes_on(jobs: int) -> None:
    def work(name: str) -> str:
        if name == "bad":
            raise DecryptionError("'bad' failed authentication")
        if name == "gone":
            raise FileNotFoundError(name)
        return name

    outcomes = {o.name: o for o in run_each(["a", "bad", "gone", "b"], work, jobs=jobs)}
    assert outcomes["a"].value == "a"
    assert isinstance(outcomes["bad"].error, DecryptionError)
    assert isinstance(outcomes["gone"].error, FileNotFoundError)
    assert outcomes["b"].value == "b"


@pytest.mark.parametrize("jobs", [1, 4])
@pytest.mark.parametrize("error", [OSError("disk full"), ConfigurationError("no")])
def test_run_each_stops_at_other_errors(jobs: int, error: Exception) -> None:
    started: list[str] = []

    def work(name: str) -> None:
        started.append(name)
        if name == "3":
            raise error

    with pytest.raises(type(error)):
        list(run_each((str(i) for i in range(1000)), work, jobs=jobs))
    assert len(started) < 20  # the rest never started


# -- one file ---------------------------------------------------------------------


def test_encode_layers_plaintext_and_leaves_layered_files(
    any_storage: LayeredStorage,
) -> None:
    data = sample(200_000)
    any_storage.inner.save("plain.bin", ContentFile(data))
    layered = any_storage.save("layered.bin", ContentFile(b"layered"))
    before = stored_bytes(any_storage.inner, layered)
    assert encode(any_storage, "plain.bin", dry_run=True)
    assert stored_bytes(any_storage.inner, "plain.bin") == data
    assert encode(any_storage, "plain.bin")
    assert inspect(any_storage, "plain.bin").layered
    assert any_storage.open("plain.bin").read() == data
    assert not encode(any_storage, "plain.bin")  # never twice
    assert not encode(any_storage, layered)
    assert stored_bytes(any_storage.inner, layered) == before
    assert any_storage.listdir("")[1] == sorted(["layered.bin", "plain.bin"])


def test_encode_reads_the_version_it_inspected(
    fs_storage: LayeredStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file layered by another process between the header check and the read
    is not encoded twice: the check and the read use one open file."""
    fs_storage.inner.save("race.txt", ContentFile(b"plaintext"))
    original_open = fs_storage.backend.open

    def open_then_race(name: str) -> Any:
        stored = original_open(name)
        fs_storage.replace(name, ContentFile(b"layered by another process"))
        return stored

    monkeypatch.setattr(fs_storage.backend, "open", open_then_race)
    assert encode(fs_storage, "race.txt")
    monkeypatch.undo()
    # One layer of encoding, over the version that was inspected.
    assert fs_storage.open("race.txt").read() == b"plaintext"


def test_inspect_with_size_reads_the_plaintext_length(storage: LayeredStorage) -> None:
    name = storage.save("s.bin", ContentFile(sample(3 * 1024 * 1024)))
    storage.inner.save("p.txt", ContentFile(b"12345"))
    assert inspect(storage, name).size is None
    assert inspect(storage, name, size=True).size == 3 * 1024 * 1024
    assert inspect(storage, "p.txt", size=True).size == 5


def test_inspect_names_why_the_size_is_unknown(settings: Any, tmp_path: Path) -> None:
    settings.LAYERED_STORAGE = {"KEYS": [generate_key()]}
    writer = make_storage(settings, tmp_path, "filesystem", ["aes-gcm"])
    name = writer.save("k.bin", ContentFile(b"secret"))
    settings.LAYERED_STORAGE = {"KEYS": [generate_key()]}
    reader = LayeredStorage(inner=writer.inner_alias, layers=["aes-gcm"])
    info = inspect(reader, name, size=True)
    assert info.size is None
    assert info.size_error is not None
    assert info.size_error.startswith("UnknownKeyError: 'k.bin' was encrypted")
    assert info.key_id is not None
    assert missing_key_ids(reader, [info.key_id]) == [info.key_id]


def namespaced(
    settings: Any, tmp_path: Path, kind: str, written: str, reading: str
) -> tuple[LayeredStorage, LayeredStorage]:
    """Return a storage of namespace ``written`` and one of namespace ``reading``
    over the same inner storage; the settings name both namespaces."""
    writer = make_storage(
        settings, tmp_path, kind, ["zstd", "aes-gcm"], namespace=written
    )
    settings.STORAGES = {
        **settings.STORAGES,
        "before": {
            "BACKEND": "layered_storage.LayeredStorage",
            "OPTIONS": {"inner": writer.inner_alias, "namespace": written},
        },
    }
    reader = LayeredStorage(
        inner=writer.inner_alias, layers=["zstd", "aes-gcm"], namespace=reading
    )
    return writer, reader


def test_inspect_names_the_namespace_a_file_was_written_under(
    settings: Any, tmp_path: Path, inner_kind: str
) -> None:
    writer, reader = namespaced(settings, tmp_path, inner_kind, "A", "B")
    name = writer.save("docs/a.txt", ContentFile(b"written under A"))
    secret = reader.pipeline.keyring().primary.secret
    binding = inspect(reader, name, binding=True).binding
    assert binding is not None
    assert (binding.status, binding.namespace, binding.name) == (
        "other-namespace",
        "A",
        name,
    )
    assert binding.fingerprint == lse1.binding_fingerprint(secret, "A", name)
    assert binding.name_fingerprint == lse1.binding_fingerprint(secret, "B", name)
    # open() finds the same namespace, by the same check.
    with pytest.raises(HeaderAuthenticationError, match="under namespace 'A'"):
        reader.open(name)
    # Asked about A first, it is bound to its name there.
    asked = inspect(reader, name, binding=True, namespace="A").binding
    assert asked is not None
    assert (asked.status, asked.fingerprint) == ("verified", binding.fingerprint)
    assert inspect(writer, name, binding=True).binding == asked


def test_inspect_of_a_renamed_file_finds_the_name_it_is_bound_to(
    fs_storage: LayeredStorage,
) -> None:
    old = fs_storage.save("scans/old.pdf", ContentFile(b"renamed"))
    with fs_storage.inner.open(old) as stored:  # moved outside Django
        new = fs_storage.inner.save("scans/new.pdf", stored)
    renamed = inspect(fs_storage, new, size=True, binding=True)
    assert renamed.binding is not None
    assert renamed.binding.status == "mismatch"
    assert renamed.size_error is not None
    assert renamed.size_error.startswith("HeaderAuthenticationError")
    assert "NOT bound to its name" in renamed.describe()
    asked = inspect(fs_storage, new, binding=True, as_name=old).binding
    original = inspect(fs_storage, old, binding=True).binding
    assert asked is not None
    assert original is not None
    assert (asked.status, asked.name) == ("verified", old)
    assert asked.fingerprint == original.fingerprint == original.name_fingerprint
    assert asked.name_fingerprint != asked.fingerprint  # the row is the new name's


def test_inspect_says_an_unbound_file_is_unbound(settings: Any, tmp_path: Path) -> None:
    storage = make_storage(
        settings,
        tmp_path,
        "filesystem",
        [("aes-gcm", {"bind_name": False})],
        require_name_binding=False,
    )
    name = storage.save("free.txt", ContentFile(b"any name"))
    info = inspect(storage, name, binding=True)
    assert info.binding is not None
    assert info.binding.status == "unbound"
    assert "not name-bound" in info.describe()
    assert info.as_dict()["binding"]["fingerprint"] is None


def test_inspect_without_the_key_reports_only_the_flag(
    settings: Any, tmp_path: Path
) -> None:
    settings.LAYERED_STORAGE = {"KEYS": [generate_key()]}
    writer = make_storage(settings, tmp_path, "filesystem", ["aes-gcm"])
    name = writer.save("k.bin", ContentFile(b"secret"))
    kid = writer.pipeline.keyring().primary.label
    settings.LAYERED_STORAGE = {"KEYS": [generate_key()]}
    reader = LayeredStorage(inner=writer.inner_alias, layers=["aes-gcm"])
    info = inspect(reader, name, binding=True)
    assert info.name_bound
    assert info.binding is not None
    assert info.binding.status == "unchecked"
    assert info.describe().endswith(
        f"bound to a name (cannot verify: key {kid} is not in the keyring)"
    )
    # With nothing to derive a fingerprint from, a private report has no name.
    assert info.describe(private=True).startswith("(name withheld): ")
    assert info.as_dict(private=True)["name"] is None


def test_a_private_description_holds_fingerprints_and_no_name(
    fs_storage: LayeredStorage,
) -> None:
    name = fs_storage.save("patients/jane-doe.pdf", ContentFile(b"private"))
    with fs_storage.inner.open(name) as stored:
        copy = fs_storage.inner.save("patients/john-roe.pdf", stored)
    for inspected, as_name in ((name, None), (copy, None), (copy, name)):
        info = inspect(fs_storage, inspected, size=True, binding=True, as_name=as_name)
        assert info.binding is not None
        private = info.describe(private=True) + repr(info.as_dict(private=True))
        assert "jane" not in private
        assert "john" not in private
        assert f"name {info.binding.name_fingerprint}: " in private
        if as_name is not None:  # the copy, asked about the original's name
            assert f"(binding {info.binding.fingerprint})" in private
            assert info.binding.fingerprint is not None


def test_inventory_counts_keys_plaintext_and_unreadable(
    fs_storage: LayeredStorage,
) -> None:
    for i in range(3):
        fs_storage.save(f"l{i}", ContentFile(b"x"))
    fs_storage.inner.save("plain", ContentFile(b"plain"))
    fs_storage.inner.save("bad", ContentFile(b"\x89LSE\r\n\x1a\n" + b"\x09" * 100))
    inventory = take_inventory(fs_storage, walk(fs_storage), jobs=2)
    assert inventory.files == 5
    assert inventory.plaintext == 1
    assert inventory.unreadable == 1
    primary = fs_storage.pipeline.keyring().primary.label
    assert dict(inventory.key_ids) == {primary: 3}


# -- without a storage --------------------------------------------------------------


def test_offline_pipeline_reads_and_writes_what_the_storage_does(
    fs_storage: LayeredStorage, settings: Any
) -> None:
    keyring = parse_keys(settings.LAYERED_STORAGE["KEYS"], source="test")
    pipeline = offline_pipeline(keyring)
    context = FileContext(name="o.bin", namespace="")
    data = sample(500_000)
    stored = pipeline.encode(io.BytesIO(data), context).read()
    fs_storage.inner.save("o.bin", ContentFile(stored))
    assert fs_storage.open("o.bin").read() == data
    name = fs_storage.save("s.bin", ContentFile(data))
    reader = offline_pipeline(keyring, ["aes-gcm"]).decode(
        io.BytesIO(stored_bytes(fs_storage.inner, name)), FileContext(name=name)
    )
    assert reader.read() == data


def test_offline_pipeline_needs_keys_to_encrypt() -> None:
    with pytest.raises(ConfigurationError, match="needs a key"):
        offline_pipeline(None, ["zstd", "aes-gcm"])
    pipeline = offline_pipeline(None, ["zstd"], allow_unencrypted=True)
    with pytest.raises(NotLayeredError):
        pipeline.decode(io.BytesIO(b"plain"), FileContext(name="p"))


def test_run_each_threads_share_s3_connections_within_their_pools(
    settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_storage(settings, tmp_path, "s3", ["aes-gcm"])
    for i in range(40):
        storage.save(f"c/{i}", ContentFile(b"x"))
    inner: Any = storage.inner
    pool_size = inner.connection.meta.client.meta.config.max_pool_connections
    used: dict[int, set[str]] = {}

    every_thread = threading.Barrier(16)

    def check(name: str) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            every_thread.wait(timeout=5)  # the first 16 files: one in each thread
        used.setdefault(id(inner.connection), set()).add(
            threading.current_thread().name
        )
        assert storage.open(name).read() == b"x"

    with caplog.at_level("WARNING"):
        outcomes = list(run_each(walk(storage), check, jobs=16, storage=storage))
    assert all(outcome.error is None for outcome in outcomes)
    # One connection per pool's worth of threads, not one per thread...
    assert len(used) == -(-(16 + 1) // pool_size)
    assert all(len(threads) <= pool_size for threads in used.values())
    # ... and never more users than a pool holds ("Connection pool is full").
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
