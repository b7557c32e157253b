"""Every file in examples/ runs and does what its docstring says."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from websockets.sync.client import connect

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_echo_example_echoes_and_stops_on_ctrl_c() -> None:
    """examples/echo.py prints its endpoint, echoes text and binary, and exits 0 on SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"echo endpoint at (ws://127\.0\.0\.1:\d+/ws)\n", line)
        assert match, line
        with connect(match.group(1), open_timeout=10) as ws:
            ws.send("from the example")
            assert ws.recv(timeout=10) == "from the example"
            ws.send(b"\xff")
            assert ws.recv(timeout=10) == b"\xff"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_every_example_is_tested() -> None:
    """A new example needs a test: here as "<name>.py", or in its own tests/examples/test_<name>.py."""
    source = Path(__file__).read_text()
    for example in EXAMPLES.glob("*.py"):
        own_tests = Path(__file__).parent / f"test_{example.stem}.py"
        assert f'"{example.name}"' in source or own_tests.is_file(), f"examples/{example.name} has no test"


def test_the_docs_name_every_example() -> None:
    """Each example has its row in docs/getting-started.md and the tutorial, which name only real ones."""
    root = Path(__file__).parents[2]
    examples = {example.name for example in EXAMPLES.glob("*.py")}
    for doc in (root / "docs" / "getting-started.md", root / "docs" / "tutorial.md"):
        text = doc.read_text()
        named = set(re.findall(r"^\| `(?:examples/)?([a-z]\w*\.py)` \|", text, re.MULTILINE))
        assert named == examples, f"{doc.name} names {sorted(named)}"
    assert "(docs/tutorial.md)" in (root / "README.md").read_text()


def test_readme_python_snippets_compile() -> None:
    """The Python code in README.md is at least valid Python that imports only real names."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert blocks
    for block in blocks:
        namespace: dict[str, object] = {}
        code = block.replace("trio.run(main)", "pass")  # define, don't run forever
        exec(compile(code, "README.md", "exec"), namespace)
        assert callable(namespace["main"])
