"""The user docs stay a front page and a site: short, self-contained, about the software and not its history.

README.md and the pages under docs/ speak to users: no issue numbers, no
commit hashes, nothing outside the repository. CHANGELOG.md (which the
docs' changelog page includes) is where history lives.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
# The changelog page only includes CHANGELOG.md, which may name issues and commits.
HISTORY = {DOCS / "changelog.md"}


def user_docs() -> list[Path]:
    return [ROOT / "README.md", *sorted(path for path in DOCS.rglob("*.md") if path not in HISTORY)]


def test_the_readme_is_a_front_page() -> None:
    """README.md stays under 250 lines and links the documentation's pages."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in ("docs/getting-started.md", "docs/tutorial.md", "docs/hubs.md", "docs/reference/trio_ws.md"):
        assert f"({page})" in readme, page


def test_the_readmes_links_lead_somewhere() -> None:
    """Every relative link in README.md names a file in the repository (mkdocs checks the pages' own)."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?:|#)([^)#]+)", readme)
    assert targets
    for target in targets:
        assert (ROOT / target).is_file(), target


def test_the_docs_python_compiles() -> None:
    """Every Python block in the pages is valid Python (tests/signalr/test_docs.py runs the hubs guide's)."""
    for path in user_docs():
        for number, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)):
            compile(block, f"{path.relative_to(ROOT)} block {number + 1}", "exec")


def test_nothing_points_outside_the_repository() -> None:
    """No user doc (nor mkdocs.yml, pyproject.toml, .ci/run) refers to ../shared or another outside path."""
    for path in [*user_docs(), ROOT / "mkdocs.yml", ROOT / "pyproject.toml", ROOT / ".ci" / "run"]:
        text = path.read_text()
        assert "../shared" not in text and "/work/" not in text, path.relative_to(ROOT)


def test_no_development_history_in_user_docs() -> None:
    """No "issue 14", "#123" or commit hash in the README or docs/ (the changelog aside)."""
    issue = re.compile(r"\bissues? \d+|\bPR #?\d+|(?<![\w&/])#\d{1,4}\b", re.IGNORECASE)
    commit = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b")
    for path in user_docs():
        text = path.read_text()
        found = issue.findall(text) + commit.findall(text)
        assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    """mkdocs.yml's nav lists each page under docs/ once, and only pages that exist."""
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    listed = re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)$", nav, re.MULTILINE)
    on_disk = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk


def test_the_changelog_page_includes_the_changelog() -> None:
    """docs/changelog.md is CHANGELOG.md itself, included when the site is built, not a copy."""
    assert (DOCS / "changelog.md").read_text().strip() == '--8<-- "CHANGELOG.md"'


def test_the_api_reference_shows_every_public_name() -> None:
    """Each name in ``__all__`` has its entry on its module's reference page (mkdocstrings' ``:::``)."""
    import trio_ws
    import trio_ws.signalr
    import trio_ws.testing

    # Not documented by us: trio-websocket's own class, re-exported, and the version string.
    theirs = {"ConnectionClosed", "__version__"}
    pages = {
        trio_ws: "reference/trio_ws.md",
        trio_ws.signalr: "reference/signalr.md",
        trio_ws.testing: "reference/testing.md",
    }
    for module, page in pages.items():
        shown = set(re.findall(r"^::: ([\w.]+)$", (ROOT / "docs" / page).read_text(), re.MULTILINE))
        missing = [n for n in module.__all__ if n not in theirs and f"{module.__name__}.{n}" not in shown]
        assert not missing, f"docs/{page} lacks '::: {module.__name__}.NAME' for {missing}"
