"""Management commands."""

from __future__ import annotations

import base64
from io import StringIO

from django.core.management import call_command

from layered_storage.keys import Key


def test_keygen_prints_a_usable_key_with_its_id() -> None:
    out = StringIO()
    call_command("layered_keygen", stdout=out)
    text, comment = out.getvalue().strip().split("  # key id ")
    assert Key(base64.urlsafe_b64decode(text)).label == comment


def test_keygen_quiet_prints_only_keys() -> None:
    out = StringIO()
    call_command("layered_keygen", count=3, quiet=True, stdout=out)
    keys = out.getvalue().split()
    assert len(set(keys)) == 3
    assert all(len(base64.urlsafe_b64decode(k)) == 32 for k in keys)
