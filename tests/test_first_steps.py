"""The README's first steps, run as a newcomer would: a fresh ``startproject``.

The settings and model snippets are taken from README.md itself, so the test fails
when the README stops working: a key made before anything is configured, settings
that import, ``manage.py check`` clean, a migration with no key in it, a file saved
and read back, and the commands found.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def python_blocks(after: str) -> list[str]:
    """Return the ```python blocks of the README section titled ``after``."""
    section = README.split(f"## {after}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "LAYERED_STORAGE_KEY")
    }
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``startproject`` configured as the README says, with one model app."""
    folder = tmp_path_factory.mktemp("newcomer")
    run("-m", "django", "startproject", "mysite", str(folder), cwd=folder)
    run("manage.py", "startapp", "contracts", cwd=folder)
    settings, model = python_blocks("Install and configure")[:2]
    append(
        folder / "mysite" / "settings.py",
        "\n# From the README\n" + settings + '\nINSTALLED_APPS += ["contracts"]\n',
    )
    (folder / "contracts" / "models.py").write_text(
        "from django.db import models\n\n" + model
    )
    found = re.search(r'path\("[^"]*", include\("layered_storage\.urls"\)\)', README)
    assert found, "the README shows how to include the serving view"
    include = found.group(0)
    append(
        folder / "mysite" / "urls.py",
        f"\nfrom django.urls import include\n\nurlpatterns += [{include}]\n",
    )
    return folder


def test_a_key_is_made_with_no_settings_at_all(project: Path) -> None:
    # The settings read LAYERED_STORAGE_KEY, which is not set yet: keygen still works.
    out = run("-m", "layered_storage", "keygen", cwd=project).stdout
    key, comment = out.strip().split("  # key id ")
    assert len(key) == 44
    assert len(comment) == 16


def key_environment(project: Path) -> dict[str, str]:
    out = run("-m", "layered_storage", "keygen", cwd=project).stdout
    return {"LAYERED_STORAGE_KEY": out.split()[0]}


def test_the_readme_settings_pass_the_checks(project: Path) -> None:
    done = run("manage.py", "check", cwd=project, env=key_environment(project))
    assert "System check identified no issues" in done.stdout
    out = run("manage.py", "layered_keygen", cwd=project, env=key_environment(project))
    assert "# key id" in out.stdout


def test_the_readme_model_migrates_with_no_secret(project: Path) -> None:
    env = key_environment(project)
    run("manage.py", "makemigrations", "contracts", cwd=project, env=env)
    migration = next((project / "contracts" / "migrations").glob("0001_*.py"))
    text = migration.read_text()
    assert "contracts.models.private_storage" in text
    assert env["LAYERED_STORAGE_KEY"] not in text
    run("manage.py", "migrate", cwd=project, env=env)


def test_a_file_goes_in_encrypted_and_comes_back(project: Path) -> None:
    env = key_environment(project)
    script = (
        "from django.core.files.base import ContentFile\n"
        "from django.core.files.storage import storages\n"
        "s = storages['private']\n"
        "name = s.save('hello.txt', ContentFile(b'hello, world ' * 100))\n"
        "assert s.open(name).read() == b'hello, world ' * 100\n"
        "assert s.size(name) == 1300\n"
        "print(s.url(name))\n"
        "print(s.inner.path(name))\n"
    )
    out = run("manage.py", "shell", "-c", script, cwd=project, env=env).stdout
    url, stored = out.split()[-2:]  # after what the shell may say first
    assert url.startswith("/files/")
    assert url.endswith("/hello.txt")
    data = Path(stored).read_bytes()
    assert b"hello" not in data
    assert Path(stored).is_relative_to(project)
