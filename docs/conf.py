"""Sphinx configuration of the documentation site: the guides (Markdown, via MyST) and the API
and config reference generated from the docstrings.

Build it with warnings as errors (the README's command, and CI):
``python -m sphinx -W --keep-going -b html docs docs/_build/html``
"""

from __future__ import annotations

from importlib.metadata import version as _version

project = "dcsm-lightning"
author = "The dcsm-lightning developers"
copyright = "2026, The dcsm-lightning developers"  # noqa: A001 (Sphinx's name)
release = _version("dcsm-lightning")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
html_title = f"dcsm-lightning {release}"
autosummary_generate = True
autosummary_imported_members = False
# A method we override without a docstring must not show Lightning's (its examples are not ours).
autodoc_inherit_docstrings = False


def _skip_aliases(app, what, name, obj, skip, options):  # noqa: ANN001, ANN202 (Sphinx's hook)
    """Skip attribute aliases that are not Python names (``DCSMTrainer.pseudo-labels``)."""
    return True if not name.isidentifier() else skip


def setup(app):  # noqa: ANN001, ANN201 (Sphinx's hook)
    app.connect("autodoc-skip-member", _skip_aliases)
