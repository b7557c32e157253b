"""MkDocs hooks for the documentation site (mkdocs.yml names this file).

The docstrings name other objects Sphinx-style (``:class:`Server```); the
Python handler of mkdocstrings renders the name as code but leaves the role
in front of it. This drops the role, so the page reads "a ``Server``". They
also end the line before an indented example with reST's ``::``, which
Markdown keeps as two colons: one is enough.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|exc|mod|data|obj):(?=<code>)")
_LITERAL_MARKER = re.compile(r"(?<=\S)::(?=</p>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Remove the reST left in the rendered page: roles before inline code, ``::`` before examples."""
    return _LITERAL_MARKER.sub(":", _ROLE.sub("", html))
