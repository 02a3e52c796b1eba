"""Sphinx configuration of the TTFT toolkit's documentation.

Build: ``pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the packages themselves (also when not installed)
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "ttft-toolkit"
author = "The TTFT toolkit team"
copyright = "2026, " + author  # noqa: A001
release = _version("ttft-toolkit")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "sphinx_copybutton",
    "ttft_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# _generated/*.md are included into pages, not pages of their own
exclude_patterns = ["_build", "_generated/sweep", "_generated/report", "_generated/measured",
                    "_generated/*.md",
                    "Thumbs.db", ".DS_Store"]

# Markdown: $...$ and $$...$$ math, ::: fences, definition lists, heading anchors.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3

# Formulas are drawn at build time by matplotlib's mathtext (see _ext/ttft_docs.py):
# the pages need no JavaScript and no network.
html_math_renderer = "mathtext"

# numpydoc-style docstrings, read by napoleon.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_default_options = {"members": True, "member-order": "bysource",
                           "show-inheritance": False}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Links to other projects would need the network at build time; names are shown plain.
intersphinx_mapping: dict = {}
nitpicky = False

html_theme = "furo"
html_title = f"ttft-toolkit {release}"
html_static_path = ["_static"]
html_css_files = ["ttft.css"]
copybutton_prompt_text = r"\$ "
copybutton_prompt_is_regexp = True
