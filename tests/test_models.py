"""File fields on layered storages: saving through models, and migrations."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from tests.testapp.models import Document
from tests.utils import stored_bytes


@pytest.mark.django_db
def test_file_field_stores_encrypted_and_reads_plain() -> None:
    document = Document(title="contract")
    document.file.save("contract.txt", ContentFile(b"the signed contract"), save=True)
    document.refresh_from_db()
    name = str(document.file.name)
    assert name.startswith("documents/contract")
    with document.file.open("rb") as opened:
        assert opened.read() == b"the signed contract"
    assert document.file.size == len(b"the signed contract")
    storage: Any = document.file.storage
    assert b"signed contract" not in stored_bytes(storage.inner, name)


@pytest.mark.django_db
def test_migration_holds_references_and_no_secret(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "testapp_migrations"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.MIGRATION_MODULES = {"testapp": "testapp_migrations"}
    call_command("makemigrations", "testapp", stdout=StringIO(), verbosity=0)
    written = "\n".join(p.read_text() for p in package.glob("0*.py"))
    assert "tests.testapp.models.private_storage" in written
    assert "layered_storage.LayeredStorage(" in written
    assert "inner='default'" in written
    for key in settings.LAYERED_STORAGE["KEYS"]:
        assert key not in written
        assert key.rstrip("=")[:20] not in written
