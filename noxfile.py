"""nox sessions: the test matrix, lint, typing, docs and benchmarks.

``./dev test`` is the quick path on one interpreter; ``nox`` runs the matrix:
Django 4.2 on Python 3.10-3.12, 5.2 on 3.10-3.13, 6.x on 3.12-3.13 (valid pairs
only). The tests need an S3 server: sessions start SeaweedFS themselves through
tests/s3server.py when AWS_ENDPOINT_URL_S3 is not set.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing", "docs"]

MATRIX = [
    ("3.10", "4.2"),
    ("3.11", "4.2"),
    ("3.12", "4.2"),
    ("3.10", "5.2"),
    ("3.11", "5.2"),
    ("3.12", "5.2"),
    ("3.13", "5.2"),
    ("3.12", "6.1"),
    ("3.13", "6.1"),
]


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    session.install("-e", ".[test]", f"django~={django}.0")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typing(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python="3.11")
def benchmarks(session: nox.Session) -> None:
    session.install("-e", ".[benchmarks]")
    session.run("python", "-m", "benchmarks", *session.posargs)
