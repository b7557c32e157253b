"""Containing what app code raises: it fails its own request or connection, never the server.

trio_ws calls app code in many places: HTTP handlers and the bodies they
stream, auth and ``before_upgrade`` hooks, WebSocket handlers, health
checks, hub methods and hub streams, ``on_connected`` and
``on_disconnected``. Whatever any of them raises ends that request, call or
connection alone, with one logged traceback, except what tells the
process or the server to stop:

* ``KeyboardInterrupt`` and ``SystemExit``: the process is told to stop.
* ``trio.Cancelled``: one of the server's cancel scopes was cancelled
  (shutdown, a client that left); it must reach that scope.

Everything else is the app's failure, ``BaseException`` included. This is
why ``except Exception`` is not enough: an async generator that yields
inside a nursery (trio forbids it; apps write it anyway) makes ``aclose()``
raise ``BaseExceptionGroup[GeneratorExit]``, which passes ``except
Exception`` and would reach the connections nursery and stop the server.

A group may hold both kinds: the app's part is logged, the rest raised
again.
"""

from __future__ import annotations

import logging

import trio

__all__ = ["contain"]

_STOP: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, trio.Cancelled)


def contain(
    exc: BaseException,
    logger: logging.Logger,
    message: str,
    *args: object,
    expected: tuple[type[BaseException], ...] = (),
) -> BaseException | None:
    """Log the app's failure in ``exc`` (with its traceback) and return it; raise what must go on up.

    Call it in an ``except BaseException as exc:`` around app code.
    ``message`` and ``args`` are the log line's, as for ``logger.error``.
    Exceptions of the ``expected`` types (a peer that left, say) are
    neither logged nor returned; ``None`` means there was nothing else.

    Raises:
        BaseException: the part of ``exc`` that is ``KeyboardInterrupt``,
            ``SystemExit`` or ``trio.Cancelled``, after the rest is logged.
    """
    stop, failure = _split(exc, _STOP)
    if failure is not None and expected:
        _, failure = _split(failure, expected)
    if failure is not None:
        logger.error(message, *args, exc_info=failure)
    if stop is not None:
        raise stop
    return failure


def _split(
    exc: BaseException, types: tuple[type[BaseException], ...]
) -> tuple[BaseException | None, BaseException | None]:
    """``exc`` split into the part of ``types`` and the rest (either may be ``None``), groups included."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(types)
    if isinstance(exc, types):
        return exc, None
    return None, exc
