"""Maintenance over a whole storage: walk it, inspect, verify, rotate and encode files.

These are what the ``layered_inspect``, ``layered_verify``, ``layered_rotate`` and
``layered_encode`` commands and ``python -m layered_storage`` run. They read headers
through the same decoders as ``open()``, so an inspection or a verification trusts
nothing that ``open()`` would not. Walking, sharding and running over many files
are in ``layered_storage.bulk`` (and re-exported here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.files.base import File

from layered_storage.binding import Binding, check_binding
from layered_storage.bulk import Outcome, Shard, in_shard, run_each, walk
from layered_storage.exceptions import ConfigurationError, LayeredStorageError
from layered_storage.format import lse1, lsz1
from layered_storage.keys import Keyring, generate_key, parse_key
from layered_storage.layers.base import LayerSpec, ReadPolicy, build_layers
from layered_storage.layers.encryption import AeadLayer
from layered_storage.pipeline import Pipeline
from layered_storage.storage import LayeredStorage
from layered_storage.streams import ByteStream, read_exactly, read_tail

_COPY_CHUNK = 1024 * 1024

__all__ = [
    "Binding",
    "FileInfo",
    "Inventory",
    "Outcome",
    "Shard",
    "check_binding",
    "encode",
    "in_shard",
    "inspect",
    "inspect_stored",
    "keyring_of",
    "missing_key_ids",
    "needs_rotation",
    "new_keys",
    "offline_pipeline",
    "rotate",
    "run_each",
    "take_inventory",
    "verify",
    "walk",
]


# -- one file -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """What the headers of one stored file say (nothing is decrypted for it).

    ``size`` is the plaintext length when it was asked for and could be read
    (``size_error`` says why not); ``binding`` what an encrypted file is bound
    to, when that was asked for.
    """

    name: str
    stored_size: int
    layers: tuple[str, ...]
    key_id: str | None = None
    aead: str | None = None
    name_bound: bool | None = None
    size: int | None = None
    size_error: str | None = None
    binding: Binding | None = None
    #: The parsed LSE1 header, if the file has one.
    header: lse1.Header | None = field(default=None, repr=False, compare=False)

    @property
    def layered(self) -> bool:
        """Return whether the file has a layered header (else it is plaintext)."""
        return bool(self.layers)

    def with_size(self, size: int | None, error: str | None = None) -> FileInfo:
        """Return this info with the plaintext ``size``, or the ``error`` that
        prevented reading it."""
        return replace(self, size=size, size_error=error)

    def with_binding(self, binding: Binding) -> FileInfo:
        """Return this info with what the file is ``binding`` to."""
        return replace(self, binding=binding)

    def label(self, *, private: bool = False) -> str | None:
        """Return the file's name; with ``private``, the fingerprint of its name in
        its storage's namespace instead (None: no key to derive it)."""
        if not private:
            return self.name
        fingerprint = self.binding.name_fingerprint if self.binding else None
        return None if fingerprint is None else f"name {fingerprint}"

    def describe(self, *, private: bool = False) -> str:
        """Return the one-line description ``layered_inspect`` prints; with
        ``private``, no file name appears in it (see ``label``)."""
        if self.size is not None:
            size = f"{self.size} bytes"
        else:
            reason = (self.size_error or "not asked").partition(":")[0]
            size = f"size unknown ({reason})"
        details = [size, f"{self.stored_size} bytes stored"]
        details.append(" + ".join(self.layers) or "no layers (plaintext)")
        if self.key_id is not None:
            details.append(f"key {self.key_id}")
            if self.binding is not None:
                details.append(self.binding.describe(self.name, private=private))
            else:
                details.append("name-bound" if self.name_bound else "not name-bound")
        label = self.label(private=private) or "(name withheld)"
        return f"{label}: {', '.join(details)}"

    def as_dict(self, *, private: bool = False) -> dict[str, Any]:
        """Return the fields as JSON-ready values: all but ``name`` (with
        ``private``, ``name`` is None, to be put over it)."""
        fields: dict[str, Any] = {
            "size": self.size,
            "stored_size": self.stored_size,
            "layers": list(self.layers),
            "key_id": self.key_id,
            "aead": self.aead,
            "name_bound": self.name_bound,
        }
        if self.binding is not None:
            fields["binding"] = self.binding.as_dict(private=private)
            fields["name_fingerprint"] = self.binding.name_fingerprint
        if self.size_error is not None:
            # The message names the file: a private report keeps the class only.
            error = self.size_error
            fields["size_error"] = error.partition(":")[0] if private else error
        if private:
            fields["name"] = None  # put over the name by whoever prints it
        return fields


def inspect_stored(stored: ByteStream, name: str) -> FileInfo:
    """Return what the headers of the stored bytes ``stored`` declare, reading only
    their last bytes (the trailer of an encrypted file) or else their first ones.
    ``stored`` must be seekable; it is left open.

    Raises:
        FormatError: a header this version cannot parse.
    """
    tail, stored_size = read_tail(stored, lse1.TRAILER_SIZE)
    if lse1.ends_with_trailer(tail):
        head = lse1.trailer_header(tail, file_name=name)
    else:
        stored.seek(0)
        head = read_exactly(stored, lse1.DIRECT_HEADER_SIZE)
    if head.startswith(lse1.MAGIC):
        header = lse1.parse_header(head, file_name=name)
        inner = ("zstd",) if header.payload_type == lse1.PAYLOAD_LSZ1 else ()
        return FileInfo(
            name=name,
            stored_size=stored_size,
            layers=(*inner, lse1.AEAD_NAMES[header.aead_id]),
            key_id=header.key_id.hex(),
            aead=lse1.AEAD_NAMES[header.aead_id],
            name_bound=header.name_bound,
            header=header,
        )
    if lsz1.is_lsz1(head):
        return FileInfo(name=name, stored_size=stored_size, layers=("zstd",))
    return FileInfo(name=name, stored_size=stored_size, layers=())


def inspect(
    storage: LayeredStorage,
    name: str,
    *,
    size: bool = False,
    binding: bool = False,
    as_name: str | None = None,
    namespace: str | None = None,
) -> FileInfo:
    """Return what the headers of ``name`` declare; with ``size``, also its
    plaintext length, read as ``storage.size`` reads it (the final segment and the
    seek table are authenticated, the rest is not read).

    A file whose headers parse but whose size cannot be read (a key not in the
    keyring, a changed header) is returned with ``size_error`` saying why.

    With ``binding``, an encrypted file's binding is checked with the key (see
    ``check_binding``): is it bound to ``as_name`` (default: ``name``) in
    ``namespace`` (default: the storage's), else in which other namespace of the
    settings.

    Raises:
        FileNotFoundError: no such file.
        FormatError: a header this version cannot parse.
    """
    with storage.backend.open(name) as stored:
        info = inspect_stored(stored, name)
        if binding and info.header is not None:
            context = storage.context(name)
            first = context.namespace if namespace is None else namespace
            others = (context.namespace, *context.other_namespaces)
            namespaces = [first, *(other for other in others if other != first)]
            checked = check_binding(
                info.header, keyring_of(storage), name, namespaces, as_name=as_name
            )
            info = info.with_binding(checked)
        if not size:
            return info
        if not info.layered:
            return info.with_size(info.stored_size)
        try:
            with storage.pipeline.decode(stored, storage.context(name)) as decoded:
                return info.with_size(decoded.size)
        except LayeredStorageError as exc:
            return info.with_size(None, f"{type(exc).__name__}: {exc}")


def verify(storage: LayeredStorage, name: str) -> int:
    """Read ``name`` to the end, authenticating every byte; return its size.

    Raises:
        LayeredStorageError: the file fails to decode (tampered, truncated, ...).
    """
    total = 0
    with storage.open(name) as opened:
        while chunk := opened.read(_COPY_CHUNK):
            total += len(chunk)
    return total


def needs_rotation(storage: LayeredStorage, info: FileInfo) -> bool:
    """Return whether ``info``'s file is encrypted with a key other than the
    storage's primary key (plaintext and unencrypted files are not rotated)."""
    encryption = storage.pipeline.encryption
    if encryption is None or info.key_id is None:
        return False
    return info.key_id != encryption.keyring.primary.label


def rotate(storage: LayeredStorage, name: str) -> None:
    """Re-encrypt ``name`` in place with the primary key (and current layers).

    The new version is encoded from the old one as it is read, written whole beside
    it, and only then put in its place (``LayeredStorage.replace``): if reading the
    old version fails, or the process dies at any point, ``name`` keeps the old
    version; nothing is ever deleted first.

    Raises:
        LayeredStorageError: the file cannot be read (it stays as it was).
        ConfigurationError: the inner storage cannot replace a file atomically.
    """
    with storage.open(name) as plaintext:
        storage.replace(name, plaintext)


def encode(storage: LayeredStorage, name: str, *, dry_run: bool = False) -> bool:
    """Store the plaintext file ``name`` in the layered format, in place; return
    False, changing nothing, if it already has a layered header.

    The header is read from the very stored version that is then encoded (one open
    file, or one object version on S3), so a file another process has just
    layered is never encoded twice. The new version is complete before it replaces
    the old one (``LayeredStorage.replace``): a run killed at any point leaves each
    file plaintext or layered, and running again finishes the rest. With
    ``dry_run``, only say whether it would be encoded.

    Raises:
        FormatError: a layered header this version cannot parse (left as it is).
        ConfigurationError: the inner storage cannot replace a file atomically.
    """
    with storage.backend.open(name) as stored:
        if inspect_stored(stored, name).layered:
            return False
        if not dry_run:
            stored.seek(0)
            storage.replace(name, File(stored, name))  # type: ignore[arg-type]
    return True


# -- many files -----------------------------------------------------------------------


@dataclass
class Inventory:
    """What the headers of many files say, counted: files per key id, plaintext
    files, and files whose header cannot be read."""

    files: int = 0
    plaintext: int = 0
    unreadable: int = 0
    key_ids: Counter[str] = field(default_factory=Counter)

    def add(self, info: FileInfo | None) -> None:
        """Count one file (None: its header cannot be read)."""
        self.files += 1
        if info is None:
            self.unreadable += 1
        elif not info.layered:
            self.plaintext += 1
        elif info.key_id is not None:
            self.key_ids[info.key_id] += 1


def take_inventory(
    storage: LayeredStorage,
    names: Iterable[str],
    *,
    jobs: int = 1,
    observe: Callable[[Outcome[FileInfo]], object] | None = None,
) -> Inventory:
    """Return the inventory of ``names``, from their headers only; ``observe`` is
    called with each file's outcome as it comes (for progress)."""
    inventory = Inventory()

    def read(name: str) -> FileInfo:
        return inspect(storage, name)

    for outcome in run_each(names, read, jobs=jobs, storage=storage):
        inventory.add(outcome.value)
        if observe is not None:
            observe(outcome)
    return inventory


def keyring_of(storage: LayeredStorage) -> Keyring | None:
    """Return the keyring that reads ``storage``'s files, or None if none is set."""
    try:
        return storage.pipeline.keyring()
    except ConfigurationError:
        if storage.pipeline.encryption is not None:
            raise  # the storage encrypts: its keys must load
        return None


def missing_key_ids(storage: LayeredStorage, key_ids: Iterable[str]) -> list[str]:
    """Return those of ``key_ids`` that ``storage``'s keyring lacks."""
    keyring = keyring_of(storage)
    present = set() if keyring is None else {key.label for key in keyring.keys}
    return sorted(kid for kid in key_ids if kid not in present)


# -- without a storage ---------------------------------------------------------------


def offline_pipeline(
    keyring: Keyring | None,
    layers: Sequence[LayerSpec] = ("zstd", "aes-gcm"),
    *,
    allow_unencrypted: bool = False,
) -> Pipeline:
    """Return a pipeline that needs no storage and no key in settings: ``layers``
    encode, with ``keyring``'s first key if one is an encryption layer; decoding
    reads any file that ``keyring`` can (give an encryption layer), as a storage
    would, whatever the file's name binding.

    Raises:
        ConfigurationError: unknown layers, or an encryption layer and no keyring.
    """
    built = build_layers(list(layers))
    for layer in built:
        if isinstance(layer, AeadLayer):
            if keyring is None:
                raise ConfigurationError(
                    f"The {layer.name} layer needs a key, and none was given."
                )
            layer.keyring = keyring  # instead of LAYERED_STORAGE["KEYS"]
    policy = ReadPolicy(
        require_encryption=not allow_unencrypted, require_name_binding=False
    )
    return Pipeline(built, policy)


def new_keys(count: int = 1, *, quiet: bool = False) -> Iterator[str]:
    """Yield ``count`` fresh keys as ``layered_keygen`` prints them: the key and a
    ``# key id`` comment, or with ``quiet`` the key alone."""
    for _ in range(count):
        text = generate_key()
        yield text if quiet else f"{text}  # key id {parse_key(text, where='').label}"
