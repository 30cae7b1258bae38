"""Sphinx configuration: the user guide, the architecture, the theory and the API reference of glep.

Build with ``sphinx-build -W -b html docs docs/_build`` (warnings are errors; ``tests/test_docs.py``
does this).  The API reference is generated from the docstrings of the public names (``glep.__all__``)
by autodoc, with napoleon reading their NumPy-style sections; the Markdown pages are read by MyST.
"""

import glep

project = "glep"
author = "the glep authors"
copyright = "the glep authors"  # noqa: A001  (Sphinx's name)
release = version = glep.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

# The reference documents the public API only, in the order the source gives it.
autodoc_member_order = "bysource"
autodoc_default_options = {"undoc-members": False}
autodoc_typehints = "none"  # the signatures carry them; the docstrings say what they mean
napoleon_numpy_docstring = True
napoleon_google_docstring = True
# Cross-references to names outside the public API (NumPy, dolfinx, internal modules) are not resolved
# here: a missing target is not an error of the documentation.
nitpicky = False

html_theme = "alabaster"
html_static_path: list[str] = []
