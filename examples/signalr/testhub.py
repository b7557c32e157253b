"""The conformance hub: what the official SignalR clients' functional tests run against.

The functional tests of ``@microsoft/signalr`` (aspnetcore's
``src/SignalR/clients/ts/FunctionalTests``) run against a server with a
``TestHub``; this is trio_ws's, method for method, with the error texts
those tests compare, plus ``JoinGroup``, ``LeaveGroup``, ``SendToGroup``,
``Broadcast``, ``GroupCount`` and ``WorkerId`` for the group, broadcast and
scale-out tests. ``tests/signalr_node/README.md`` lists everything the
Node suite relies on; this module provides exactly that:

* ``/testhub``: ``TestHub`` on every transport, detailed errors on
  (``OPTIONS``), stateful reconnect allowed (``withStatefulReconnect()``).
* ``/testhub-nowebsockets``: the same hub on Server-Sent Events and Long
  Polling only.
* ``/authorizedhub``: ``AuthorizedHub``, behind a bearer token: an HS256
  JSON Web Token from ``GET /generateJwtToken``, signed and checked with
  the standard library (``hmac``), its subject ``testuser``; the key is
  ``TRIO_WS_TESTHUB_JWT_KEY`` (hex), or a random one shared by the workers.
  ``GET /generateJwtToken?role=admin`` adds the role ``admin`` to the
  token's identity (without ``role``, the identity has none), which
  ``AdminOnly()`` requires (``@authorize(roles=["admin"])``): it answers
  ``"admin"``, or ASP.NET's ``Failed to invoke 'AdminOnly' because user is
  unauthorized``.
* ``Limited()`` on ``/testhub`` answers ``"ok"``, at most 5 calls a second
  per connection (``@rate_limit(5, per=1.0)``); past that, an error saying so.
* ``/echo``: a connection handler (``map_connection``), no hub: it writes
  back every byte it reads, over WebSockets, Server-Sent Events and Long
  Polling, after negotiate or as a plain WebSocket without one.
* ``/echoredirect/...``: a redirect (307, the method kept) to the same
  path under ``/echo``, query and all: a negotiate that follows it.
* ``/bad-negotiate/...``: 400 with the body ``Some response from server``,
  which the client's error must carry.
* ``GET /clientresult/CONNECTION_ID`` (or ``/clientresult?id=``): asks that
  ``/testhub`` client's ``Result`` handler, answers its value or the
  client's error text.
* ``POST /redirect/...``: a negotiate redirect to ``/testHub``, counted.
* Every negotiate sets the cookies ``testCookie``, ``testCookie2`` and an
  expired ``expiredCookie``.

Run it with ``python examples/signalr/testhub.py --host H --port P`` (the
hub's intervals are options; ``--help`` lists them), or serve
``examples.signalr.testhub:app``, a ``trio_ws.App`` with ASP.NET's
intervals, with ``trio_ws.serve``. Ctrl-C shuts down gracefully: every
client is told to reconnect (Close with ``allowReconnect``) before the
server's WebSocket Close 1001.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import trio

import trio_ws
from trio_ws.signalr import (
    ClientResultError,
    Connection,
    HttpTransportType,
    Hub,
    HubError,
    HubOptions,
    HubServer,
    HubStream,
    authorize,
    map_connection,
    map_hub,
    rate_limit,
)

__all__ = [
    "OPTIONS",
    "AuthorizedHub",
    "InvalidOperationException",
    "TestHub",
    "app",
    "build_app",
    "client_result_text",
    "echo",
    "generate_token",
    "main",
    "verify_token",
]

OPTIONS = HubOptions(detailed_errors=True)


class InvalidOperationException(HubError):
    """Named as .NET names it, because the functional tests compare the error text.

    A ``HubError``, because failing is what the methods that raise it are for:
    the caller reads the text, and the server logs no traceback for it.
    """


class TestHub(Hub):
    """The official functional tests' TestHub, plus groups, broadcast and the worker's id."""

    __test__ = False  # not a pytest test class, whatever its name

    async def echo(self, message: str) -> str:
        return message

    async def get_caller_connection_id(self) -> str:
        return self.context.connection_id

    async def throw_exception(self, message: str) -> None:
        raise InvalidOperationException(message)

    async def invoke_with_string(self, message: str) -> None:
        await self.clients.client(self.context.connection_id).send("Message", message)

    async def send_custom_object(self, custom_object: dict[str, Any]) -> None:
        # Sent back as it came, so its PascalCase keys ("Name", "Value") stay as the test expects.
        await self.clients.client(self.context.connection_id).send("CustomObject", custom_object)

    async def stream(self) -> AsyncIterator[str]:
        for item in ("a", "b", "c"):
            yield item

    async def infinite_stream(self) -> AsyncIterator[str]:
        """Sends nothing until the client cancels it; then tells the client "StreamCanceled"."""
        try:
            await trio.sleep_forever()
            yield ""  # never reached; makes this an async generator, so the client must stream it
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.clients.caller.send("StreamCanceled")

    async def streaming_concat(self, stream: HubStream[str]) -> str:
        return "".join([item async for item in stream])

    async def empty_stream(self) -> AsyncIterator[int]:
        return
        yield 0  # never reached; makes this an async generator

    async def stream_throw_exception(self, message: str) -> AsyncIterator[str]:
        # Raising before returning an iterator is "An unexpected error occurred invoking ...",
        # as the official TestHub's method throws before it returns its channel.
        raise InvalidOperationException(message)

    async def get_active_transport_name(self) -> str | None:
        return self.context.transport

    # What the official TestHub reads from the request that opened the transport.

    async def get_header(self, name: str) -> str | None:
        request = self.context.request
        return None if request is None else request.header(name)

    async def get_cookie(self, name: str) -> str | None:
        request = self.context.request
        return None if request is None else request.cookies.get(name)

    async def get_content_type_header(self) -> str | None:
        request = self.context.request
        return None if request is None else request.header("content-type")

    async def get_num_redirects(self) -> int:
        request = self.context.request
        value = None if request is None else request.query_param("numRedirects")
        return int(value) if value is not None and value.isdigit() else 0

    async def echo_complex_object(self, complex_object: Any) -> Any:
        return complex_object

    async def send_complex_object(self) -> dict[str, Any]:
        return {
            "ByteArray": b"\x01\x02\x03",
            "DateTime": datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
            "Guid": "00010203-0405-0607-0706-050403020100",
            "IntArray": [1, 2, 3],
            "String": "hello world",
        }

    # For the group, broadcast and scale-out tests.

    async def join_group(self, name: str) -> None:
        await self.groups.add(self.context.connection_id, name)

    async def leave_group(self, name: str) -> None:
        await self.groups.remove(self.context.connection_id, name)

    async def send_to_group(self, name: str, message: str) -> None:
        await self.clients.group(name).send("GroupMessage", name, message)

    async def broadcast(self, message: str) -> None:
        await self.clients.all.send("Broadcast", message)

    async def group_count(self, name: str) -> int:
        return await self.groups.count(name)

    async def worker_id(self) -> int:
        return os.getpid()

    # For the rate limit tests.

    @rate_limit(5, per=1.0)
    async def limited(self) -> str:
        return "ok"


class AuthorizedHub(Hub):
    """The hub behind a token: the transport's authentication names the user."""

    async def echo(self, message: str) -> str:
        return message

    async def get_user_name_identifier(self) -> str | None:
        return self.context.user_id

    @authorize(roles=["admin"])
    async def admin_only(self) -> str:
        return "admin"


async def echo(connection: Connection) -> None:
    """The ``/echo`` connection handler: every byte it reads goes back, as it came."""
    async for data in connection:
        await connection.send(data)


async def client_result_text(hub_server: HubServer, connection_id: str) -> str:
    """What ``GET /clientresult?id=...`` answers: the client's ``Result`` as text, or the error text."""
    try:
        result = await hub_server.clients.client(connection_id).invoke("Result")
    except ClientResultError as exc:
        return exc.reason
    return str(result)


# -- JSON Web Tokens (HS256), as much of RFC 7519 as /authorizedhub needs ---------------------

# One key per server: a token outlives no restart. With --workers, the supervisor imports this
# module before it starts the workers, and they inherit its environment, so a token that one
# worker signed is good on every other (a load balancer may send its next request anywhere).
_JWT_KEY = bytes.fromhex(os.environ.setdefault("TRIO_WS_TESTHUB_JWT_KEY", secrets.token_hex(32)))
_JWT_LIFETIME = 3600.0
TEST_USER = "testuser"
_ROLE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(signing_input: str) -> str:
    return _b64url(hmac.new(_JWT_KEY, signing_input.encode("ascii"), hashlib.sha256).digest())


def generate_token(user: str = TEST_USER, *, role: str | None = None, lifetime: float = _JWT_LIFETIME) -> str:
    """A JWT for ``user`` (with ``role``, if given), signed with this process's key, valid for
    ``lifetime`` seconds."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    values: dict[str, object] = {"sub": user, "exp": int(time.time() + lifetime)}
    if role is not None:
        values["role"] = role
    claims = _b64url(json.dumps(values).encode())
    return f"{header}.{claims}.{_signature(f'{header}.{claims}')}"


def verify_token(token: str) -> trio_ws.Identity | None:
    """The token's identity (its user, and its role if any) if this process signed it and it
    has not expired, else ``None``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, claims, signature = parts
    if not hmac.compare_digest(signature, _signature(f"{header}.{claims}")):
        return None
    try:
        values = json.loads(_unb64url(claims))
    except ValueError:
        return None
    if not isinstance(values, dict):
        return None
    user, expires, role = values.get("sub"), values.get("exp"), values.get("role")
    if not isinstance(user, str) or not isinstance(expires, int) or expires < time.time():
        return None
    return trio_ws.Identity(user, roles=[role] if isinstance(role, str) else [])


async def _verify(token: str) -> trio_ws.Identity | None:
    await trio.lowlevel.checkpoint()
    return verify_token(token)


# -- the app ------------------------------------------------------------------------------------

_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"
_ANY_METHOD = ["GET", "POST", "DELETE"]


async def _set_test_cookies(request: trio_ws.Request, response: trio_ws.Response) -> trio_ws.Response:
    """Every negotiate sets two cookies and an expired one, which clients must not send back."""
    cookies = (
        ("set-cookie", "testCookie=testValue; Path=/"),
        ("set-cookie", "testCookie2=testValue2; Path=/"),
        ("set-cookie", f"expiredCookie=doesntmatter; Expires={_EXPIRED}; Path=/"),
    )
    return dataclasses.replace(response, headers=response.headers + cookies)


def build_app(options: HubOptions = OPTIONS) -> trio_ws.App:
    """The conformance server: both hubs and the plain routes the official tests call."""
    app = trio_ws.App()
    testhub = map_hub(
        app,
        "/testhub",
        TestHub(),
        options=options,
        auth=None,
        stateful_reconnect=True,
        on_negotiate=_set_test_cookies,
    )
    map_hub(
        app,
        "/testhub-nowebsockets",
        TestHub(),
        options=options,
        auth=None,
        transports=[HttpTransportType.SERVER_SENT_EVENTS, HttpTransportType.LONG_POLLING],
        on_negotiate=_set_test_cookies,
    )
    map_hub(
        app,
        "/authorizedhub",
        AuthorizedHub(),
        options=options,
        auth=trio_ws.bearer_auth(_verify),
        on_negotiate=_set_test_cookies,
    )
    map_connection(app, "/echo", echo, options=options, auth=None, on_negotiate=_set_test_cookies)
    redirects = itertools.count(1)

    @app.route("/generateJwtToken")
    async def generate_jwt_token(request: trio_ws.Request) -> trio_ws.Response:
        role = request.query_param("role")
        if role is not None and not _ROLE.fullmatch(role):
            return trio_ws.Response.text(400, "Bad Request: a role is 1 to 64 letters, digits, '-' or '_'")
        return trio_ws.Response(200, generate_token(role=role).encode())

    @app.route("/clientresult/{id}")
    @app.route("/clientresult")
    async def client_result(request: trio_ws.Request) -> trio_ws.Response:
        connection_id = request.path_params.get("id") or request.query_param("id")
        if connection_id is None:
            return trio_ws.Response.text(
                400, "Bad Request: give the connection as /clientresult/CONNECTION_ID"
            )
        return trio_ws.Response(200, (await client_result_text(testhub, connection_id)).encode())

    @app.route("/echoredirect/{rest}", methods=_ANY_METHOD)
    @app.route("/echoredirect", methods=_ANY_METHOD)
    async def echo_redirect(request: trio_ws.Request) -> trio_ws.Response:
        # 307 keeps the method: the client's POST to .../negotiate stays a POST. An absolute URL,
        # because Node's EventSource cannot follow a relative one.
        host = request.header("host")
        origin = "" if host is None else f"{request.scheme}://{host}"
        target = f"{origin}/echo{request.raw_path[len('/echoredirect') :]}"
        if request.query:
            target += f"?{request.query}"
        return trio_ws.Response.empty(307, headers=[("location", target)])

    @app.route("/bad-negotiate/{rest}", methods=_ANY_METHOD)
    @app.route("/bad-negotiate", methods=_ANY_METHOD)
    async def bad_negotiate(request: trio_ws.Request) -> trio_ws.Response:
        return trio_ws.Response(400, b"Some response from server", "text/plain")

    @app.route("/redirect/{rest}", methods=["GET", "POST"])
    async def redirect(request: trio_ws.Request) -> trio_ws.Response:
        base = (request.query_param("baseUrl") or "").rstrip("/")
        return trio_ws.Response.json(200, {"url": f"{base}/testHub?numRedirects={next(redirects)}"})

    return app


app = build_app()
"""The conformance server with ASP.NET's intervals, for ``trio_ws.serve`` (or ``python -m trio_ws``)."""


async def main(host: str, port: int, options: HubOptions) -> None:
    """Serve the conformance hub until Ctrl-C, then shut down gracefully."""
    served = build_app(options)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(trio_ws.serve, served, host, port))
            hubs = "/testhub, /testhub-nowebsockets, /authorizedhub, /echo"
            print(f"conformance hub at {server.url.rstrip('/')} ({hubs})", flush=True)
            async for _ in signals:
                await server.aclose()
                break


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--keep-alive-interval",
        type=_seconds,
        default=15.0,
        help="send Ping after this long with nothing sent",
    )
    parser.add_argument(
        "--client-timeout",
        type=_seconds,
        default=30.0,
        help="close a client silent this long (after its Ping)",
    )
    parser.add_argument(
        "--disconnect-timeout",
        type=_seconds,
        default=15.0,
        help="a connection without a transport this long is gone",
    )
    parser.add_argument(
        "--long-polling-timeout",
        type=_seconds,
        default=90.0,
        help="a long poll with nothing to send is answered (200, empty) after this long",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = _parse(sys.argv[1:])
    trio.run(
        main,
        arguments.host,
        arguments.port,
        dataclasses.replace(
            OPTIONS,
            keep_alive_interval=arguments.keep_alive_interval,
            client_timeout=arguments.client_timeout,
            disconnect_timeout=arguments.disconnect_timeout,
            long_polling_timeout=arguments.long_polling_timeout,
        ),
    )
