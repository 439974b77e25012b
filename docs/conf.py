"""Sphinx configuration for the django-layered-storage documentation.

The reference is written by hand, so building the docs needs neither Django nor the
package's own dependencies: ``pip install -e .[docs]`` (or just sphinx and furo).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.directives.patches import Figure

HERE = Path(__file__).resolve().parent

# Read the version without importing the package (importing needs Django).
_init = (HERE.parent / "layered_storage" / "__init__.py").read_text(encoding="utf-8")
_match = re.search(r'^__version__ = "([^"]+)"', _init, re.MULTILINE)
release = _match.group(1) if _match else "unknown"
version = ".".join(release.split(".")[:2])

project = "django-layered-storage"
author = "django-layered-storage contributors"
copyright = "django-layered-storage contributors"

extensions: list[str] = []
exclude_patterns = ["_build"]
nitpicky = False
default_role = "literal"

html_theme = "furo"
html_title = f"django-layered-storage {release}"
# The benchmark plots live in _static/ once ``python -m benchmarks`` has written them;
# the folder may not exist before that, and a missing entry would be a warning.
html_static_path = ["_static"] if (HERE / "_static").is_dir() else []


class BenchmarkPlot(Figure):  # type: ignore[misc]
    """A figure whose image may not exist yet: a note takes its place until it does.

    The plots are produced by ``python -m benchmarks``; a missing image would be a
    warning, and warnings fail the build.
    """

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        relative, absolute = env.relfn2path(self.arguments[0], env.docname)
        # A missing dependency marks the page outdated on every build, so the figure
        # appears as soon as the file does.
        env.note_dependency(absolute)
        if Path(absolute).is_file():
            return super().run()  # type: ignore[no-any-return]
        text = (
            f"Plot not generated yet: run python -m benchmarks to write {relative}, "
            "then rebuild the documentation."
        )
        return [nodes.note("", nodes.paragraph(text=text))]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("benchmark-plot", BenchmarkPlot)
    return {"parallel_read_safe": True}
