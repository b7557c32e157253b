"""MkDocs hooks for the documentation site (mkdocs.yml names this file).

The docstrings name other objects Sphinx-style (``:class:`Server```); the
Python handler of mkdocstrings renders the name as code but leaves the role
in front of it. This drops the role, so the page reads "a ``Server``".
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|exc|mod|data|obj):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Remove the Sphinx roles left in front of inline code in the rendered page."""
    return _ROLE.sub("", html)
