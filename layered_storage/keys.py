"""Keys and keyrings: 32-byte secrets, derived ids, the active key, lookup by id.

``LAYERED_STORAGE["KEYS"]`` is a list of url-safe base64 strings (or raw ``bytes``) of
32 random bytes: the first encrypts new files, every one decrypts. It may also be a
callable, or the dotted path of one, that returns such a list (for secret managers).
A key's id is a fingerprint derived from the key itself, so a label can never point at
the wrong key, and a file names the key it needs without revealing it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.module_loading import import_string

from layered_storage import conf
from layered_storage.exceptions import ConfigurationError, UnknownKeyError

KEY_SIZE = 32
KEY_ID_SIZE = 8
_KEY_ID_LABEL = b"layered-storage/v1/key-id"


def derive_key_id(secret: bytes) -> bytes:
    """Return the 8-byte fingerprint that names ``secret`` in file headers."""
    return hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_SIZE]


def generate_key() -> str:
    """Return a fresh random key as url-safe base64 text, ready for ``KEYS``."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_SIZE)).decode("ascii")


@dataclass(frozen=True, repr=False)
class Key:
    """One 256-bit key; ``secret`` never appears in a ``repr``."""

    secret: bytes = field(repr=False)
    id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_SIZE:
            raise ValueError(f"A key is {KEY_SIZE} bytes, got {len(self.secret)}.")
        object.__setattr__(self, "id", derive_key_id(self.secret))

    @property
    def label(self) -> str:
        """Return the id as the hex text used in messages and commands."""
        return self.id.hex()

    def __repr__(self) -> str:
        return f"Key(id={self.label!r})"


@dataclass(frozen=True)
class Keyring:
    """An ordered set of keys: ``primary`` writes, every key reads."""

    keys: tuple[Key, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigurationError(
                "The keyring is empty: add a key to LAYERED_STORAGE['KEYS'] "
                "(manage.py layered_keygen prints one).",
                check_id="layered_storage.E005",
            )
        seen: set[bytes] = set()
        for key in self.keys:
            if key.id in seen:
                raise ConfigurationError(
                    f"Key {key.label} appears twice in the keyring: "
                    "remove the duplicate.",
                    check_id="layered_storage.E007",
                )
            seen.add(key.id)

    @property
    def primary(self) -> Key:
        """Return the key that encrypts new files."""
        return self.keys[0]

    def find(self, key_id: bytes, *, file_name: str = "") -> Key:
        """Return the key whose id is ``key_id``.

        Raises:
            UnknownKeyError: no key in the keyring has that id.
        """
        for key in self.keys:
            if hmac.compare_digest(key.id, key_id):
                return key
        where = f"{file_name!r} was" if file_name else "This file was"
        raise UnknownKeyError(
            f"{where} encrypted with key {key_id.hex()}, which is not in the "
            f"keyring (ids present: {', '.join(k.label for k in self.keys)}). "
            "Add that key back to LAYERED_STORAGE['KEYS'] to read it.",
            key_id=key_id.hex(),
        )

    def __contains__(self, key_id: object) -> bool:
        return any(key.id == key_id for key in self.keys)


def parse_key(value: object, *, where: str) -> Key:
    """Return the ``Key`` that ``value`` (base64 text or 32 raw bytes) describes.

    Raises:
        ConfigurationError: not base64, or not 32 bytes; the message never shows
            the value.
    """
    if isinstance(value, bytes | bytearray):
        secret = bytes(value)
    elif isinstance(value, str):
        decoded = _decode_key_text(value)
        if decoded is None:
            raise ConfigurationError(
                f"{where} is not url-safe base64 text. Generate a key with "
                "manage.py layered_keygen.",
                check_id="layered_storage.E006",
            )
        secret = decoded
    else:
        raise ConfigurationError(
            f"{where} must be base64 text or bytes, got {type(value).__name__}.",
            check_id="layered_storage.E006",
        )
    if len(secret) != KEY_SIZE:
        raise ConfigurationError(
            f"{where} decodes to {len(secret)} bytes; a key is {KEY_SIZE} random "
            "bytes. Generate one with manage.py layered_keygen.",
            check_id="layered_storage.E006",
        )
    return Key(secret)


def parse_keys(values: Iterable[object], *, source: str) -> Keyring:
    """Return a ``Keyring`` from a sequence of key values.

    Raises:
        ConfigurationError: a value is malformed, the list is empty or has a
            duplicate.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ConfigurationError(
            f"{source} must be a list of keys, got {type(values).__name__}.",
            check_id="layered_storage.E006",
        )
    keys = tuple(
        parse_key(value, where=f"Key #{index} of {source}")
        for index, value in enumerate(values)
    )
    if not keys:
        raise ConfigurationError(
            f"{source} holds no key. Add one: manage.py layered_keygen prints a "
            "fresh key.",
            check_id="layered_storage.E005",
        )
    return Keyring(keys)


def _decode_key_text(text: str) -> bytes | None:
    """Return the bytes of url-safe base64 ``text`` (padding optional), or None."""
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _looks_like_key(text: str) -> bool:
    decoded = _decode_key_text(text)
    return decoded is not None and len(decoded) == KEY_SIZE


def _resolve_reference(reference: str) -> tuple[Any, str]:
    """Return what a keyring reference names: a setting, or a dotted path."""
    if _looks_like_key(reference):
        # Never echo it: it is most likely a key put where a list was expected.
        raise ConfigurationError(
            "A keyring reference looks like a key itself: KEYS must be a list of "
            "keys (or a setting name or dotted path that gives one), and the 'keys' "
            "layer option only names a keyring.",
            check_id="layered_storage.E006",
        )
    if reference.isidentifier():
        return conf.named_setting(reference), f"settings.{reference}"
    try:
        return import_string(reference), reference
    except ImportError as exc:
        raise ConfigurationError(
            f"The keyring reference {reference!r} is neither a setting name nor an "
            f"importable dotted path ({exc}).",
            check_id="layered_storage.E005",
        ) from None


def load_keyring(reference: str | None = None) -> Keyring:
    """Return the keyring named by ``reference`` (default ``LAYERED_STORAGE['KEYS']``).

    A reference is a setting name (``"ARCHIVE_KEYS"``) or a dotted path to a list or
    to a callable that returns one, never key material itself.

    Raises:
        ConfigurationError: nothing configured, or the keys are malformed.
    """
    if reference is None:
        value: Any = conf.get_setting("KEYS")
        source = "LAYERED_STORAGE['KEYS']"
        if value is None:
            raise ConfigurationError(
                "No encryption keys: set LAYERED_STORAGE['KEYS'] to a list of keys "
                "(manage.py layered_keygen prints one).",
                check_id="layered_storage.E005",
            )
        if isinstance(value, str):
            value, source = _resolve_reference(value)
    else:
        value, source = _resolve_reference(reference)
    if callable(value):
        factory: Callable[[], Sequence[object]] = value
        value = factory()
    return parse_keys(value, source=source)
