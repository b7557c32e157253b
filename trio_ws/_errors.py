"""The root of every error trio_ws raises for you to catch, and the list of them.

::

    Exception
    └─ TrioWsError                     catch this to catch anything trio_ws raises on purpose
       ├─ RequestBodyError             a request body broke a limit (413, 408) or was malformed (400)
       ├─ AppNotFound (+ ValueError)    load_app: the name leads to no App
       ├─ AppImportError               load_app: the app's module raised while importing
       ├─ DeploymentError              a part of the app cannot run as deployed
       ├─ WorkersError                 serve_workers: a worker could not start
       ├─ HubError                     trio_ws.signalr: raise it in a hub method
       │  ├─ ClientResultError         a client result did not come
       │  ├─ BackplaneError            the backplane cannot do it now
       │  └─ CallRefused               a hub filter refuses a call (authorization, rate limits)
       ├─ ContractError (+ TypeError)  a hub's type hints cannot be written as a client contract
       ├─ HubClientError               trio_ws.signalr's client could not connect, or lost its connection
       └─ InvocationError              trio_ws.signalr's client: the hub answered a call with an error

Rules of this module:

* Every public exception of ``trio_ws`` and ``trio_ws.signalr`` derives from
  :class:`TrioWsError`; ``tests/test_errors.py`` checks it against both
  ``__all__`` lists. An error that already had another base keeps it beside
  the root (``AppNotFound`` is still a ``ValueError``), so existing
  ``except`` clauses keep working.
* Not here: the errors of the packages trio_ws builds on, which handlers
  meet as those packages document them. A closed WebSocket raises
  trio-websocket's ``ConnectionClosed`` (re-exported as
  ``trio_ws.ConnectionClosed``); a port that cannot be bound raises
  ``OSError``; a bad ``Options`` value raises ``ValueError``.
"""

from __future__ import annotations

__all__ = ["TrioWsError"]


class TrioWsError(Exception):
    """The root of the errors trio_ws raises for you to catch: ``except trio_ws.TrioWsError``.

    It is never raised itself; each subclass says when it is raised. The
    whole list, with the module each lives in, is in this module's docstring
    and on the documentation's API reference page.
    """
