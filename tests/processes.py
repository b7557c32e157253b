"""Run ``python -m trio_ws`` as a child process, the way a user would, and read its banner."""

from __future__ import annotations

import os
import re
import resource
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STARTUP_DEADLINE = 20.0


@contextmanager
def running_cli(
    *args: str, open_files: tuple[int, int] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the CLI on a free port; yield the process and the URL it printed.

    The start-up banner is checked here: the page URL, then the WebSocket URL on the same port.

    Args:
        open_files: The (soft, hard) open-file limit to start the process with,
            as ``ulimit -Sn``/``-Hn`` would; by default it inherits this one's.
    """

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_ws", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit_files,
    )
    try:
        url = _read_url(proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def read_output_until(proc: subprocess.Popen[str], done: Callable[[str], bool]) -> str:
    """What ``proc`` prints, read until ``done(text)`` says enough, it exits, or the start-up deadline."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + STARTUP_DEADLINE
    text = ""
    # Read the raw pipe: a buffered readline() would hide lines from the selector.
    while time.monotonic() < deadline and not done(text):
        if selector.select(timeout=deadline - time.monotonic()):
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            text += chunk.decode()
    return text


def _read_url(proc: subprocess.Popen[str]) -> str:
    banner = read_output_until(proc, lambda text: "Press Ctrl-C" in text)
    match = re.search(r"listening on (https?)://(\S+)/\nWebSocket endpoint: (wss?)://(\S+)/ws\n", banner)
    if match is None:
        stderr = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        raise AssertionError(f"unexpected start-up banner {banner!r}; stderr: {stderr}")
    scheme, address, ws_scheme, ws_address = match.groups()
    assert (ws_scheme, ws_address) == ({"http": "ws", "https": "wss"}[scheme], address)
    return f"{scheme}://{address}/"
