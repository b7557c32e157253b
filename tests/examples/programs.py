"""Run the programs in examples/ the way a reader would, or import them to test their parts."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from ..processes import read_output_until

EXAMPLES = Path(__file__).parents[2] / "examples"
# Every server example prints its page URL (if it has a page), then its WebSocket URL.
_BANNER = re.compile(r"^(?:.* at (http://\S+/)\n)?WebSocket at (ws://\S+/ws)\b.*\n")


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (examples/ is not a package)."""
    module_name = f"examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@contextmanager
def running_example(name: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``python examples/<name>.py --port 0``: yield the process, its page URL (or ""), its WebSocket URL.

    Leaving the block without :func:`stop_with_ctrl_c` kills the process.
    """
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = _read_until(proc, _BANNER)
        match = _BANNER.match(banner)
        assert match is not None
        yield proc, match.group(1) or "", match.group(2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop_with_ctrl_c(proc: subprocess.Popen[str]) -> str:
    """Send SIGINT, check the program exits 0 without a traceback, and return what it printed after."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def _read_until(proc: subprocess.Popen[str], pattern: re.Pattern[str]) -> str:
    text = read_output_until(proc, lambda text: pattern.match(text) is not None)
    if not pattern.match(text):
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        raise AssertionError(f"unexpected start-up output {text!r}; stderr: {err}")
    return text
