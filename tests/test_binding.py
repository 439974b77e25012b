"""What a file is bound to: the check with the key, and binding fingerprints."""

from __future__ import annotations

import hashlib
import hmac
import io
import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from layered_storage.binding import check_binding
from layered_storage.format import lse1
from layered_storage.keys import Key, Keyring
from layered_storage.layers.base import FileContext
from layered_storage.maintenance import offline_pipeline

KEY = Key(bytes(range(32)))
OTHER_KEY = Key(bytes(range(1, 33)))
KEYRING = Keyring((KEY,))

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
secrets_ = st.binary(min_size=32, max_size=32)


def header_of(
    key: Key, namespace: str, name: str, *, bound: bool = True
) -> lse1.Header:
    """Return the header of a file written with ``key`` as ``name`` in
    ``namespace`` (or not bound to them)."""
    pipeline = offline_pipeline(Keyring((key,)), [("aes-gcm", {"bind_name": bound})])
    context = FileContext(name=name, namespace=namespace)
    stored = pipeline.encode(io.BytesIO(b"payload"), context).read()
    return lse1.parse_header(stored, file_name=name)


def test_the_fingerprint_is_the_documented_hmac() -> None:
    # docs/reference/commands.rst gives this formula.
    context = b"\x00\x05media" + b"\x00\x0bscans/a.pdf"
    expected = hmac.new(
        bytes(range(32)),
        b"layered-storage/v1/binding-fingerprint" + context,
        hashlib.sha256,
    ).digest()[:8]
    fingerprint = lse1.binding_fingerprint(KEY.secret, "media", "scans/a.pdf")
    assert fingerprint == expected.hex()
    assert len(fingerprint) == 16
    assert fingerprint != KEY.label  # another label than the key id's


@given(secrets_, texts, texts)
def test_the_same_binding_and_key_give_the_same_fingerprint(
    secret: bytes, namespace: str, name: str
) -> None:
    first = lse1.binding_fingerprint(secret, namespace, name)
    assert lse1.binding_fingerprint(secret, namespace, name) == first
    # The name is bound in NFC: the same name in another normal form is the same.
    nfd = unicodedata.normalize("NFD", name)
    assert lse1.binding_fingerprint(secret, namespace, nfd) == first


@given(secrets_, secrets_, texts, texts, texts, texts)
def test_another_binding_or_key_gives_another_fingerprint(
    secret: bytes,
    other_secret: bytes,
    namespace: str,
    name: str,
    other_namespace: str,
    other_name: str,
) -> None:
    def nfc(text: str) -> str:
        return unicodedata.normalize("NFC", text)

    fingerprint = lse1.binding_fingerprint(secret, namespace, name)
    if (nfc(namespace), nfc(name)) != (nfc(other_namespace), nfc(other_name)):
        moved = lse1.binding_fingerprint(secret, other_namespace, other_name)
        assert moved != fingerprint
    assume(secret != other_secret)
    assert lse1.binding_fingerprint(other_secret, namespace, name) != fingerprint


def test_the_fingerprint_rejects_what_cannot_be_bound() -> None:
    with pytest.raises(ValueError, match="NUL"):
        lse1.binding_fingerprint(KEY.secret, "", "a\x00b")


def test_a_file_bound_to_its_name_verifies_in_the_first_namespace() -> None:
    header = header_of(KEY, "media", "a.txt")
    binding = check_binding(header, KEYRING, "a.txt", ["media", "other"])
    assert binding.status == "verified"
    assert (binding.namespace, binding.name) == ("media", "a.txt")
    fingerprint = lse1.binding_fingerprint(KEY.secret, "media", "a.txt")
    assert binding.fingerprint == binding.name_fingerprint == fingerprint
    assert binding.describe("a.txt") == (
        f"bound to its name in namespace 'media' (binding {fingerprint})"
    )


def test_a_file_of_another_namespace_names_it() -> None:
    header = header_of(KEY, "old", "a.txt")
    binding = check_binding(header, KEYRING, "a.txt", ["new", "x", "old"])
    assert binding.status == "other-namespace"
    assert binding.namespace == "old"
    assert binding.fingerprint == lse1.binding_fingerprint(KEY.secret, "old", "a.txt")
    assert binding.name_fingerprint == lse1.binding_fingerprint(
        KEY.secret, "new", "a.txt"
    )
    assert "under namespace 'old', not 'new'" in binding.describe("a.txt")


def test_a_renamed_file_is_not_bound_to_its_name_but_to_the_old_one() -> None:
    header = header_of(KEY, "", "old.txt")
    binding = check_binding(header, KEYRING, "new.txt", [""])
    assert binding.status == "mismatch"
    assert binding.fingerprint is None
    assert binding.describe("new.txt").startswith(
        "NOT bound to its name in namespace '': likely copied or renamed"
    )
    asked = check_binding(header, KEYRING, "new.txt", [""], as_name="old.txt")
    assert asked.status == "verified"
    assert asked.fingerprint == lse1.binding_fingerprint(KEY.secret, "", "old.txt")
    # The row still stands for the file's own name.
    assert asked.name_fingerprint == lse1.binding_fingerprint(KEY.secret, "", "new.txt")
    assert "bound to 'old.txt', not its own name, in namespace ''" in asked.describe(
        "new.txt"
    )
    private = asked.describe("new.txt", private=True)
    assert "old.txt" not in private
    assert asked.fingerprint in private


def test_an_unbound_file_is_said_so() -> None:
    header = header_of(KEY, "", "", bound=False)
    binding = check_binding(header, KEYRING, "any.txt", ["media"])
    assert binding.status == "unbound"
    assert binding.describe("any.txt") == "not name-bound"
    assert binding.name_fingerprint == lse1.binding_fingerprint(
        KEY.secret, "media", "any.txt"
    )


@pytest.mark.parametrize(
    ("keyring", "name", "reason"),
    [
        (None, "a.txt", "no key given"),
        (Keyring((OTHER_KEY,)), "a.txt", f"key {KEY.label} is not in the keyring"),
        (KEYRING, None, "no name given"),
    ],
)
def test_without_the_key_or_the_name_only_the_flag_is_known(
    keyring: Keyring | None, name: str | None, reason: str
) -> None:
    binding = check_binding(header_of(KEY, "", "a.txt"), keyring, name, [""])
    assert binding.status == "unchecked"
    assert binding.reason == reason
    assert binding.describe("a.txt") == f"bound to a name (cannot verify: {reason})"
    assert binding.fingerprint is None
    unbound = check_binding(header_of(KEY, "", "", bound=False), keyring, name, [""])
    assert unbound.status == "unbound"


@given(
    st.lists(
        texts,
        min_size=1,
        max_size=4,
        unique_by=lambda t: unicodedata.normalize("NFC", t),
    ),
    st.integers(0, 3),
    texts,
)
def test_the_check_finds_the_namespace_that_wrote_the_file(
    namespaces: list[str], index: int, name: str
) -> None:
    written_in = namespaces[index % len(namespaces)]
    header = header_of(KEY, written_in, name)
    binding = check_binding(header, KEYRING, name, namespaces)
    found = lse1.verifying_namespace(KEY.secret, header, name, namespaces)
    assert binding.namespace == found
    assert found is not None
    assert binding.fingerprint == lse1.binding_fingerprint(KEY.secret, found, name)
    first = found == namespaces[0]
    assert binding.status == ("verified" if first else "other-namespace")
