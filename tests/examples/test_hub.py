"""examples/hub.py, the README's hub in twenty lines: it runs as printed and does what it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .programs import EXAMPLES

ROOT = Path(__file__).parents[2]


def test_the_hub_example_serves_calls_back_and_exits() -> None:
    """`python examples/hub.py` serves the hub, its client's call comes back as "ada: hello", exit 0."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "hub.py")], capture_output=True, text=True, timeout=15
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ada: hello\n"
    assert "Traceback" not in done.stderr


def test_the_readme_shows_the_example_verbatim() -> None:
    """The README's hub is examples/hub.py's code, character for character, so it cannot drift."""
    readme = (ROOT / "README.md").read_text()
    blocks = [block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "Hub" in block]
    assert len(blocks) == 1
    code = (EXAMPLES / "hub.py").read_text().split('"""\n\n', 1)[1]
    assert blocks[0] == code
    lines = [line for line in code.splitlines() if line.strip() and not line.startswith(("import ", "from "))]
    assert len(lines) <= 20, "a hub in twenty lines (besides the imports)"
