"""``python -m trio_ws`` as a user runs it: a real process, real signals, real sockets."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import trustme
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from trio_ws._server.cli import _options, _parser

from ..processes import running_cli
from ..raw import upgrade_request


def _finish(proc: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_cli_echoes_and_exits_0_on_ctrl_c() -> None:
    """The CLI prints its real URL, serves the page and the echo, and exits 0 on SIGINT."""
    with running_cli("--keep-alive-interval", "5") as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        assert url == f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url + "healthz", timeout=10) as response:
            assert response.read() == b"ok\n"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"Communication Log" in response.read()
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            ws.send("through the CLI")
            assert ws.recv(timeout=10) == "through the CLI"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=10) == b"\x00\x01"
        code, out, err = _finish(proc, signal.SIGINT)
    assert code == 0
    assert "shutting down" in out and "stopped" in out
    assert "Traceback" not in err
    assert "with permessage-deflate" in err  # compression is on by default, and logged


@pytest.mark.parametrize("flag, negotiated", [("--compression", True), ("--no-compression", False)])
def test_compression_flag(flag: str, negotiated: bool) -> None:
    """--no-compression declines permessage-deflate; --compression (the default) accepts it."""
    with running_cli(flag, "--compression-window-bits", "10", "--compression-min-size", "1KiB") as (
        proc,
        url,
    ):
        with connect(url.replace("http://", "ws://") + "ws", open_timeout=10) as ws:
            assert [e.name for e in ws.protocol.extensions] == (["permessage-deflate"] if negotiated else [])
            ws.send("x" * 5000)
            assert ws.recv(timeout=10) == "x" * 5000
        code, _, err = _finish(proc, signal.SIGINT)
    assert code == 0 and "Traceback" not in err


def test_sigterm_sends_1001_to_open_clients() -> None:
    """SIGTERM closes every open WebSocket with 1001 (Going Away), then the process exits 0."""
    with running_cli() as (proc, url):
        ws_url = url.replace("http://", "ws://") + "ws"
        with connect(ws_url, open_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_ws", *args], capture_output=True, text=True, timeout=60
    )


def test_port_in_use_is_one_clear_line() -> None:
    """A busy port: one line on stderr naming it, exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"trio_ws: error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another server is running there; pick another --port)"
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "70000"], "--port: 70000 is not a port number"),
        (["--max-message-size", "lots"], "--max-message-size: 'lots' is not a size"),
        (["--keep-alive-timeout", "soon"], "--keep-alive-timeout: 'soon' is not a number"),
        (["--allowed-origin", "example.com"], "needs a scheme"),
        (["--max-connections", "-1"], "--max-connections: '-1' must be 0 (no limit) or more"),
        (["--max-idle-connections", "x"], "--max-idle-connections: 'x' is not a whole number"),
        (["--allowed-host", "https://app.example"], "must be a bare host name such as 'app.example'"),
        (["--max-request-body", "0"], "--max-request-body: '0' must be more than 0 bytes"),
        (["--http-idle-timeout", "later"], "--http-idle-timeout: 'later' is not a number of seconds"),
        (["--keyfile", "key.pem"], "--keyfile needs --certfile"),
        (["--compression-window-bits", "16"], "--compression-window-bits: '16' is not a window size"),
    ],
)
def test_bad_option_values_are_refused_clearly(args: list[str], fragment: str) -> None:
    """A bad option value: argparse's usage line plus one error line naming it, exit 2."""
    result = _run(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_certificate_is_one_clear_line(tmp_path: Path) -> None:
    """A missing or invalid certificate: one line naming the file, exit 1."""
    missing = tmp_path / "missing.pem"
    result = _run("--certfile", str(missing))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"trio_ws: error: cannot load certificate {missing}: no such file or directory"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    result = _run("--certfile", str(garbage))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"cannot load certificate {garbage}" in result.stderr


def test_cli_serves_wss_with_a_certificate(tmp_path: Path) -> None:
    """--certfile/--keyfile make the same port speak https and wss."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with running_cli("--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem")) as (
        proc,
        url,
    ):
        assert url.startswith("https://127.0.0.1:")
        with connect(url.replace("https://", "wss://") + "ws", ssl=client_context) as ws:
            ws.send("over tls")
            assert ws.recv(timeout=10) == "over tls"
        code, _, err = _finish(proc, signal.SIGINT)
    assert code == 0 and "Traceback" not in err


def test_help_explains_every_option() -> None:
    """--help lists every option the issue names."""
    result = _run("--help")
    assert result.returncode == 0
    for option in (
        "--host",
        "--port",
        "--keep-alive-interval",
        "--keep-alive-timeout",
        "--receive-buffer-size",
        "--max-message-size",
        "--max-connections",
        "--max-idle-connections",
        "--allowed-origin",
        "--allowed-host",
        "--subprotocol",
        "--compression",
        "--no-compression",
        "--compression-window-bits",
        "--compression-min-size",
        "--handshake-timeout",
        "--http-idle-timeout",
        "--max-request-body",
        "--request-body-timeout",
        "--max-requests-per-connection",
        "--shutdown-timeout",
        "--certfile",
        "--keyfile",
        "--log-level",
        "--log-format",
    ):
        assert option in result.stdout


def test_max_connections_answers_503_when_full() -> None:
    """--max-connections 1: a second WebSocket gets 503 and a log line; the first one carries on."""
    with running_cli("--max-connections", "1") as (proc, url):
        ws_url = url.replace("http://", "ws://") + "ws"
        with connect(ws_url, open_timeout=10) as ws:
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url, open_timeout=10)
            assert refused.value.response.status_code == 503
            ws.send("still served")
            assert ws.recv(timeout=10) == "still served"
        code, _, err = _finish(proc, signal.SIGINT)
    assert code == 0
    assert "WARNING trio_ws.admission: connection limit reached: 1 WebSockets open" in err
    assert "Traceback" not in err


def test_second_ctrl_c_stops_at_once() -> None:
    """A client that ignores the 1001 holds graceful shutdown open; a second SIGINT ends it, exit 0."""
    with running_cli("--shutdown-timeout", "600") as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            silent.sendall(upgrade_request(host=f"127.0.0.1:{port}"))
            assert silent.recv(4096).startswith(b"HTTP/1.1 101 ")
            proc.send_signal(signal.SIGINT)
            assert silent.recv(4096)[:1] == b"\x88"  # the server's Close frame; we never answer it
            code, out, err = _finish(proc, signal.SIGINT)
    assert code == 0
    assert "SIGINT again: stopping now" in out
    assert "Traceback" not in err


def test_http_options_reach_options() -> None:
    """Each HTTP flag sets its Options field; 0 turns a timeout or a count off."""
    args = _parser().parse_args(
        [
            "--http-idle-timeout",
            "0",
            "--request-body-timeout",
            "2.5",
            "--max-request-body",
            "64KiB",
            "--max-requests-per-connection",
            "7",
            "--max-idle-connections",
            "0",
            "--allowed-host",
            "App.Example",
        ]
    )
    options = _options(args)
    assert (options.http_idle_timeout, options.request_body_timeout) == (None, 2.5)
    assert (options.max_request_body, options.max_requests_per_connection) == (65536, 7)
    assert (options.max_idle_connections, options.allowed_hosts) == (None, ("app.example",))


def test_max_requests_per_connection_reaches_the_server() -> None:
    """--max-requests-per-connection 1: the first answer says Connection: close, and the socket closes."""
    with running_cli("--max-requests-per-connection", "1") as (proc, url):
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" in answer
        code, _, err = _finish(proc, signal.SIGINT)
    assert code == 0 and "Traceback" not in err
