"""Run ``python -m trio_ws`` as a child process, the way a user would, and read its banner and log."""

from __future__ import annotations

import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

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


class LogLines:
    """What a process writes to a pipe, line by line, read by a thread so the pipe never fills.

    ``wait_for(predicate)`` waits for a line (one already read counts) under a deadline: an
    event, not a sleep.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = STARTUP_DEADLINE) -> str:
        """The first line ``predicate`` accepts; AssertionError if none comes in time or the pipe closes."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._done or left <= 0:
                    raise AssertionError("no such line; got:\n" + "\n".join(self.lines))
                self._changed.wait(left)

    def text(self) -> str:
        """Everything read so far (after ``join()``: everything)."""
        with self._changed:
            return "\n".join(self.lines)

    def join(self, timeout: float = STARTUP_DEADLINE) -> None:
        self._thread.join(timeout)


@dataclass
class RunningWorkers:
    """``python -m trio_ws ... --workers N`` as a user runs it: the supervisor, its banner, its log."""

    proc: subprocess.Popen[str]
    banner: str
    url: str
    pids: list[int]
    log: LogLines

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        """Send ``signum``; wait for the supervisor to exit: its status and what it printed."""
        self.proc.send_signal(signum)
        out, _ = self.proc.communicate(timeout=STARTUP_DEADLINE)
        self.log.join()
        return self.proc.returncode, self.banner + out


@contextmanager
def running_workers(*args: str, cwd: str | None = None) -> Iterator[RunningWorkers]:
    """Start the CLI with ``args`` (``--workers N`` among them) on a free port; yield it once it serves.

    The banner is read and checked: the URL, and a line naming the workers and their pids.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_ws", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert proc.stderr is not None
    log = LogLines(proc.stderr)
    try:
        banner = read_output_until(proc, lambda text: "Press Ctrl-C" in text)
        url = re.search(r"listening on (http://\S+/)\n", banner)
        workers = re.search(r"^(\d+) workers \(pids ([\d ]+)\), sharing the port with ", banner, re.M)
        if url is None or workers is None:
            proc.kill()
            proc.wait(10)
            log.join()
            raise AssertionError(f"unexpected banner {banner!r}; stderr:\n{log.text()}")
        pids = [int(pid) for pid in workers.group(2).split()]
        assert len(pids) == int(workers.group(1))
        yield RunningWorkers(proc, banner, url.group(1), pids, log)
    finally:
        if proc.poll() is None:
            proc.kill()  # the workers stop by themselves once their lifeline (our stdin pipe) ends
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        log.join()
        proc.stderr.close()
