"""What an encrypted file is bound to: its namespace and name, found with the key.

An LSE1 header says only whether the file is bound (its NAME_BOUND flag); the
namespace and the name are in the key commitment, never stored. So a binding is
found by verifying the commitment with candidates: a name (the file's own, or one
asked about) in each namespace, the storage's first, then the other namespaces the
settings name. That is the check ``open()`` makes, through the same function
(``lse1.verifying_namespace``), so what ``layered_inspect`` reports is what
``open()`` would find.

A binding fingerprint stands for a (namespace, name) pair where a name must not
be shown: derived from the file's key (``lse1.binding_fingerprint``), it tells
nothing to whoever lacks the key, and is the same for the same pair and key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from layered_storage.format import lse1
from layered_storage.keys import Keyring

#: ``Binding.status`` values, in the order a summary lists them.
STATUSES = ("verified", "other-namespace", "mismatch", "unbound", "unchecked")


@dataclass(frozen=True)
class Binding:
    """What one encrypted file is bound to, as far as the key can tell.

    ``status`` is one of:

    - ``"verified"``: bound to ``name`` in ``namespace``, the first candidate;
    - ``"other-namespace"``: bound to ``name`` in ``namespace``, another
      namespace of the settings;
    - ``"mismatch"``: bound, but to ``tried`` in no candidate namespace: it was
      likely copied or renamed from another name (or its header was changed);
    - ``"unbound"``: the flag is clear, so any name opens it;
    - ``"unchecked"``: bound, and ``reason`` says why it could not be checked.

    ``expected`` is the first candidate namespace, ``fingerprint`` that of the
    binding found, and ``name_fingerprint`` that of ``expected`` and the file's own
    name: the two are equal when a file is bound to its name there.
    """

    status: str
    tried: str | None = None
    expected: str = ""
    #: Whether namespaces other than ``expected`` were tried too.
    searched_others: bool = False
    namespace: str | None = None
    name: str | None = None
    fingerprint: str | None = None
    name_fingerprint: str | None = None
    reason: str | None = None

    def describe(self, file_name: str, *, private: bool = False) -> str:
        """Return what ``layered_inspect`` says of it, for the file ``file_name``;
        with ``private``, naming no name but the file's own."""
        if self.status == "unbound":
            return "not name-bound"
        if self.status == "unchecked":
            return f"bound to a name (cannot verify: {self.reason})"
        own = self.tried == file_name
        if own:
            whom = "its name"
        else:
            whom = "the other name given" if private else repr(self.tried)
        if self.status == "mismatch":
            others = " or any other of the settings" if self.searched_others else ""
            return (
                f"NOT bound to {whom} in namespace {self.expected!r}{others}: likely "
                "copied or renamed from another name, or its header was changed"
            )
        if self.status == "verified":
            where = f"in namespace {self.namespace!r}"
        else:
            where = f"under namespace {self.namespace!r}, not {self.expected!r}"
        if not own:
            whom += ", not its own name,"
        return f"bound to {whom} {where} (binding {self.fingerprint})"

    def as_dict(self, *, private: bool = False) -> dict[str, Any]:
        """Return the JSON fields; with ``private``, ``name`` is withheld."""
        fields: dict[str, Any] = {
            "status": self.status,
            "namespace": self.namespace,
            "name": None if private else self.name,
            "fingerprint": self.fingerprint,
        }
        if self.reason is not None:
            fields["reason"] = self.reason
        return fields


def check_binding(
    header: lse1.Header,
    keyring: Keyring | None,
    name: str | None,
    namespaces: Sequence[str],
    *,
    as_name: str | None = None,
) -> Binding:
    """Return what the file of ``header`` and name ``name`` is bound to: whether it
    verifies with ``as_name`` (default: its own name) in the first of
    ``namespaces``, else in which of the others.

    Nothing is decrypted: only the key commitment is computed, once per namespace.

    Raises:
        ValueError: ``namespaces`` is empty, or a name or namespace holds a NUL.
    """
    if not namespaces:
        raise ValueError("Give at least one namespace to check a binding in.")
    expected = namespaces[0]
    tried = as_name if as_name is not None else name
    if keyring is None:
        key, reason = None, "no key given"
    elif header.key_id not in keyring:
        key, reason = None, f"key {header.key_id.hex()} is not in the keyring"
    else:
        key, reason = keyring.find(header.key_id), None
    own = (
        lse1.binding_fingerprint(key.secret, expected, name)
        if key is not None and name is not None
        else None
    )
    if not header.name_bound:
        return Binding("unbound", expected=expected, name_fingerprint=own)
    if key is None or tried is None:
        return Binding(
            "unchecked",
            tried=tried,
            expected=expected,
            name_fingerprint=own,
            reason=reason or "no name given",
        )
    found = lse1.verifying_namespace(key.secret, header, tried, namespaces)
    if found is None:
        return Binding(
            "mismatch",
            tried=tried,
            expected=expected,
            searched_others=len(namespaces) > 1,
            name_fingerprint=own,
        )
    return Binding(
        "verified" if found == expected else "other-namespace",
        tried=tried,
        expected=expected,
        namespace=found,
        name=tried,
        fingerprint=lse1.binding_fingerprint(key.secret, found, tried),
        name_fingerprint=own,
    )
