"""The official SignalR client, ``@microsoft/signalr`` in Node, against the conformance hub.

This is the oracle for issues 11 and 12: for each transport-and-protocol group, the driver
starts ``examples/signalr/testhub.py`` on a free port with its intervals shortened, runs the
Node suite in ``tests/signalr_node`` against it, and reports every Node case as a subtest, so a
failure names the case and shows what it printed and the client's own log.

Rules of this driver:

* It skips only while ``examples/signalr/testhub.py`` does not exist. Once it does, a hub that
  does not start, a Node run past its deadline, and a Node case that fails or skips all fail.
* The Node suite runs twice per group: every case file at once, then the server-restart file
  alone. For that file the driver restarts the hub on the same port when a case asks, through
  a control endpoint on 127.0.0.1 (``SERVER_CONTROL_URL``): ``POST /stop?how=graceful`` (Ctrl-C;
  the hub must exit 0), ``POST /stop?how=kill`` and ``POST /start``.
* ``TRIO_WS_SIGNALR_GROUPS`` (comma-separated ids such as ``websockets-json``, or ``all``) chooses
  the groups; unset, all five run (``DEFAULT_GROUPS``): every transport with JSON, and MessagePack
  on WebSockets and Long Polling.
* Without ``tests/signalr_node/node_modules`` it runs ``npm ci`` there first.
* Waiting is for events (a printed URL, a process exit) under deadlines; the only real time that
  passes on purpose is the Node suite's idle case, which is about time passing.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "examples" / "signalr" / "testhub.py"
NODE_SUITE = Path(__file__).resolve().parents[1] / "signalr_node"

# The hub's intervals in seconds, shortened from ASP.NET's 15, 30, 90 and 15 so that the idle
# case outlasts all of them in a few seconds. Passed to the hub as --NAME VALUE and to the Node
# suite as HUB_NAME (upper case, dashes as underscores).
HUB_TIMINGS = {
    "keep-alive-interval": 0.5,
    "client-timeout": 2.0,
    "long-polling-timeout": 1.0,
    "disconnect-timeout": 2.0,
}

HUB_START_DEADLINE = 20.0
HUB_STOP_DEADLINE = 10.0
NPM_CI_DEADLINE = 300.0
# One group takes seconds; these only bound a hang.
NODE_DEADLINE = 120.0
NODE_RESTART_DEADLINE = 90.0
PARALLEL_CASE_FILES = 4


@dataclass(frozen=True)
class Group:
    """One transport and protocol the official tests run together (MessagePack never goes over SSE)."""

    transport: str
    protocol: str

    @property
    def id(self) -> str:
        return f"{self.transport.lower()}-{self.protocol}"


GROUPS = (
    Group("WebSockets", "json"),
    Group("ServerSentEvents", "json"),
    Group("LongPolling", "json"),
    Group("WebSockets", "messagepack"),
    Group("LongPolling", "messagepack"),
)


# What the README's test command (.venv/bin/python -m pytest) runs: every group.
DEFAULT_GROUPS = "all"


def _selected_groups() -> list[Group]:
    wanted = os.environ.get("TRIO_WS_SIGNALR_GROUPS", "").strip() or DEFAULT_GROUPS
    if wanted.lower() == "all":
        return list(GROUPS)
    ids = {group.id: group for group in GROUPS}
    names = [name.strip().lower() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in ids]
    if unknown:
        known = ", ".join(sorted(ids))
        raise pytest.UsageError(f"TRIO_WS_SIGNALR_GROUPS names unknown groups {unknown}; known: {known}")
    return [ids[name] for name in names]


class HubProcess:
    """``testhub.py`` on one fixed port, which can be stopped and started again.

    Everything any of its processes printed is kept in ``output``, prefixed by its pid.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> int:
        """Starts the hub and returns its pid once it has printed its URL."""
        with self._lock:
            assert self.proc is None, "the hub is already running"
            args = [sys.executable, str(HUB), "--host", "127.0.0.1", "--port", str(self.port)]
            for name, value in HUB_TIMINGS.items():
                args += [f"--{name}", str(value)]
            command = " ".join(args)
            proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            ready = threading.Event()
            threading.Thread(target=self._read, args=(proc, ready), daemon=True).start()
            if not ready.wait(HUB_START_DEADLINE):
                proc.kill()
                proc.wait()
                raise HubError(f"the hub printed no URL within {HUB_START_DEADLINE:.0f} s: {command}")
            if proc.poll() is not None:
                proc.wait()
                raise HubError(f"the hub exited with {proc.returncode} before printing its URL: {command}")
            self.proc = proc
            return proc.pid

    def stop(self, how: str) -> None:
        """``graceful``: Ctrl-C, and the hub must exit 0 in time; ``kill``: SIGKILL."""
        with self._lock:
            proc, self.proc = self.proc, None
            if proc is None:
                raise HubError("the hub is not running")
            if how == "kill":
                proc.kill()
                proc.wait()
                return
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(HUB_STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise HubError(f"the hub did not exit within {HUB_STOP_DEADLINE:.0f} s of Ctrl-C") from None
            if proc.returncode != 0:
                raise HubError(f"the hub exited with {proc.returncode} after Ctrl-C, not 0")

    def close(self) -> HubError | None:
        """Stops the hub if it still runs, with Ctrl-C; returns what went wrong, if anything."""
        if self.proc is None:
            return None
        try:
            self.stop("graceful")
        except HubError as error:
            return error
        return None

    def _read(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(f"[hub {proc.pid}] {line.rstrip()}")
            if not ready.is_set() and re.search(rf"http://\S+:{self.port}\b", line):
                ready.set()
        proc.stdout.close()
        proc.wait()
        ready.set()  # exited: start() sees its exit code


class HubError(Exception):
    """The hub process did not start or stop as the driver asked."""


@contextmanager
def hub_control(hub: HubProcess) -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 through which Node cases stop and start the hub."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            target = urlsplit(self.path)
            how = parse_qs(target.query).get("how", ["graceful"])[0]
            try:
                if target.path == "/stop" and how in ("graceful", "kill"):
                    hub.stop(how)
                    self._answer(200, "")
                elif target.path == "/start":
                    self._answer(200, json.dumps({"pid": hub.start()}))
                else:
                    self._answer(404, f"no control {self.path}")
            except HubError as error:
                self._answer(500, f"{error}\n" + "\n".join(hub.output[-40:]))

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            hub.output.append(f"[control] {format % args}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class NodeCase:
    """One Node case's outcome, as its JUnit report gives it."""

    name: str
    failure: str | None
    skipped: str | None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_node(files: list[str], env: dict[str, str], report: Path, deadline: float) -> tuple[int, str]:
    """Runs ``node --test`` on ``files``: its exit code and output; the JUnit report goes to ``report``."""
    args = [
        "node",
        "--test",
        f"--test-concurrency={PARALLEL_CASE_FILES}",
        "--test-reporter=junit",
        f"--test-reporter-destination={report}",
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        *files,
    ]
    # A session of its own, so a run past its deadline is ended with the file processes it started.
    proc = subprocess.Popen(
        args,
        cwd=NODE_SUITE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the Node suite ran past its {deadline:.0f} s deadline:\n{output}", pytrace=False)
    return proc.returncode, output


def _cases(report: Path) -> list[NodeCase]:
    """Every test case in a JUnit report, named "describe > test"."""
    if not report.exists() or report.stat().st_size == 0:
        return []
    cases: list[NodeCase] = []

    def walk(element: ET.Element, suites: list[str]) -> None:
        for child in element:
            if child.tag == "testsuite":
                walk(child, [*suites, child.get("name", "?")])
            elif child.tag == "testcase":
                failure = child.find("failure")
                skipped = child.find("skipped")
                cases.append(
                    NodeCase(
                        # Node escapes names twice ("&amp;quot;"); the parser undid one.
                        name=html.unescape(" > ".join([*suites, child.get("name", "?")])),
                        failure=None if failure is None else _failure_text(failure),
                        skipped=None if skipped is None else (skipped.get("message") or "skipped"),
                    )
                )

    # Node writes control characters as they are (a SignalR record separator, 0x1E, in a logged
    # message), which XML 1.0 forbids: show them as \xNN instead.
    text = report.read_text(encoding="utf-8")
    text = _XML_FORBIDDEN.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    walk(ET.fromstring(text), [])
    return cases


_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _failure_text(failure: ET.Element) -> str:
    """What a case threw, with its stack, once.

    Node's report wraps the error in an ERR_TEST_FAILURE whose message repeats it; the wrapped
    error follows as ``cause:``, indented, and is the part worth showing.
    """
    text = failure.text or failure.get("message") or "failed"
    _, found, cause = text.partition("\n  cause: ")
    if not found:
        return text.strip()
    lines = cause.rstrip().removesuffix("}").rstrip().splitlines()
    return "\n".join(line.removeprefix("  ") for line in lines)


@pytest.fixture(scope="module")
def node_suite() -> Path:
    """The Node suite, its packages installed (``npm ci`` from the committed lock file if missing)."""
    if not HUB.exists():
        pytest.skip(f"{HUB.relative_to(ROOT)} does not exist yet (the hubs branch brings it)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the Node suite needs Node 20 and npm on PATH")
    if not (NODE_SUITE / "node_modules" / "@microsoft" / "signalr").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_SUITE,
            capture_output=True,
            text=True,
            timeout=NPM_CI_DEADLINE,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_SUITE}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return NODE_SUITE


@pytest.mark.timeout(NODE_DEADLINE + NODE_RESTART_DEADLINE + 4 * HUB_START_DEADLINE)
@pytest.mark.parametrize("group", _selected_groups(), ids=lambda group: group.id)
def test_official_client(group: Group, node_suite: Path, subtests: pytest.Subtests, tmp_path: Path) -> None:
    """Every case of the official client's suite passes over this transport and protocol."""
    hub = HubProcess(_free_port())
    env = {
        **os.environ,
        "SERVER_URL": hub.url,
        "SIGNALR_TRANSPORT": group.transport,
        "SIGNALR_PROTOCOL": group.protocol,
        **{f"HUB_{name.upper().replace('-', '_')}": str(value) for name, value in HUB_TIMINGS.items()},
    }
    # Every case file at once, then the ones that restart the hub, alone.
    runs = [
        (folder, sorted(f"{folder}/{path.name}" for path in (node_suite / folder).glob("*.test.js")))
        for folder in ("cases", "serial")
    ]
    outcomes: list[tuple[int, str, list[NodeCase]]] = []
    shutdown_error: HubError | None = None
    try:
        env["SERVER_PID"] = str(hub.start())
        with hub_control(hub) as control_url:
            env["SERVER_CONTROL_URL"] = control_url
            for name, files in runs:
                report = tmp_path / f"{name}.xml"
                deadline = NODE_DEADLINE if name == "cases" else NODE_RESTART_DEADLINE
                code, output = _run_node(files, env, report, deadline)
                outcomes.append((code, output, _cases(report)))
    except HubError as error:
        pytest.fail(f"{error}\n" + "\n".join(hub.output), pytrace=False)
    finally:
        shutdown_error = hub.close()
        print("\n".join(hub.output))

    for code, output, cases in outcomes:
        print(output)
        for case in cases:
            with subtests.test(msg=case.name):
                if case.failure is not None:
                    pytest.fail(case.failure, pytrace=False)
                if case.skipped is not None:
                    pytest.fail(f"skipped under the driver: {case.skipped}", pytrace=False)
        if not cases:
            pytest.fail(f"the Node run reported no cases (exit {code}):\n{output}", pytrace=False)
        if code != 0 and all(case.failure is None for case in cases):
            pytest.fail(f"node exited {code} though every case passed:\n{output}", pytrace=False)
    if shutdown_error is not None:
        pytest.fail(f"at the end of the run: {shutdown_error}\n" + "\n".join(hub.output[-40:]), pytrace=False)
