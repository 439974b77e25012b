"""Keys and keyrings: parsing, derived ids, references, and no secret in a repr."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from layered_storage import ConfigurationError
from layered_storage.keys import Key, Keyring, generate_key, load_keyring, parse_keys

RAW = bytes(range(32))


def test_generated_keys_are_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(base64.urlsafe_b64decode(first)) == 32
    assert first != second


def test_key_id_is_derived_and_stable() -> None:
    assert Key(RAW).id == Key(bytes(RAW)).id
    assert Key(RAW).id != Key(bytes(32)).id
    assert len(Key(RAW).label) == 16


@pytest.mark.parametrize(
    "value",
    [
        base64.urlsafe_b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        RAW,
    ],
)
def test_keys_are_base64_text_or_raw_bytes(value: object) -> None:
    assert parse_keys([value], source="test").primary.secret == RAW


@pytest.mark.parametrize(
    ("values", "check_id"),
    [
        ([], "layered_storage.E005"),
        (["not base64 at all!"], "layered_storage.E006"),
        ([base64.urlsafe_b64encode(b"short").decode()], "layered_storage.E006"),
        ([42], "layered_storage.E006"),
        ("a string, not a list", "layered_storage.E006"),
        ([RAW, base64.urlsafe_b64encode(RAW).decode()], "layered_storage.E007"),
    ],
)
def test_bad_keys_are_configuration_errors(values: Any, check_id: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_keys(values, source="KEYS")
    assert caught.value.check_id == check_id
    assert base64.urlsafe_b64encode(RAW).decode() not in str(caught.value)


def test_secret_never_appears_in_repr() -> None:
    ring = Keyring((Key(RAW),))
    assert RAW.hex() not in repr(ring)
    assert str(RAW) not in repr(ring)
    assert Key(RAW).label in repr(Key(RAW)) or "Key(" in repr(Key(RAW))


def test_first_key_writes(settings: Any) -> None:
    one, two = generate_key(), generate_key()
    settings.LAYERED_STORAGE = {"KEYS": [one, two]}
    ring = load_keyring()
    assert ring.primary.secret == base64.urlsafe_b64decode(one)
    assert len(ring.keys) == 2


def keys_from_vault() -> list[str]:
    return [base64.urlsafe_b64encode(RAW).decode()]


def test_keys_may_come_from_a_callable_or_its_dotted_path(settings: Any) -> None:
    settings.LAYERED_STORAGE = {"KEYS": keys_from_vault}
    assert load_keyring().primary.secret == RAW
    settings.LAYERED_STORAGE = {"KEYS": "tests.test_keys.keys_from_vault"}
    assert load_keyring().primary.secret == RAW


def test_a_keyring_reference_names_a_setting_or_a_path(settings: Any) -> None:
    settings.OTHER_KEYS = [RAW]
    assert load_keyring("OTHER_KEYS").primary.secret == RAW
    assert load_keyring("tests.test_keys.keys_from_vault").primary.secret == RAW
    with pytest.raises(ConfigurationError, match="MISSING_KEYS"):
        load_keyring("MISSING_KEYS")


def test_missing_keys_say_how_to_make_one(settings: Any) -> None:
    settings.LAYERED_STORAGE = {}
    with pytest.raises(ConfigurationError, match="layered_keygen"):
        load_keyring()


def test_lookup_by_unknown_id_names_it() -> None:
    from layered_storage import UnknownKeyError

    ring = Keyring((Key(RAW),))
    with pytest.raises(UnknownKeyError, match="00" * 8):
        ring.find(bytes(8), file_name="a.txt")


def test_a_bare_key_where_a_list_belongs_is_never_echoed(settings: Any) -> None:
    key = generate_key()
    for value in (key, key.rstrip("=")):
        settings.LAYERED_STORAGE = {"KEYS": value}
        with pytest.raises(ConfigurationError) as caught:
            load_keyring()
        assert key.rstrip("=")[:16] not in str(caught.value)
        assert caught.value.check_id == "layered_storage.E006"


def test_key_repr_shows_the_id_in_hex_only() -> None:
    assert repr(Key(RAW)) == f"Key(id='{Key(RAW).label}')"
