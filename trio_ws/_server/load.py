"""Finding the app to serve from its name: ``module:attribute``, as uvicorn and hypercorn take it.

``python -m trio_ws myapp:app`` imports ``myapp`` (the current directory
first, then ``sys.path``) and serves its ``app``. Worker processes import it
the same way, which is why an app to run on several workers is named rather
than passed as an object: a process can import a name, not inherit an object.

Rules of this module:

* A mistake in the name (no colon, no such module, no such attribute, not an
  ``App``) raises ``AppNotFound`` with one line that says what to change.
* An exception raised by the app's own module while it is imported is the
  app's bug, not a mistake in the name: it comes out as ``AppImportError``,
  carrying the original exception, so its traceback can be shown.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from .._app.app import App
from .._errors import TrioWsError

__all__ = ["AppImportError", "AppNotFound", "load_app"]


class AppNotFound(TrioWsError, ValueError):
    """The APP name does not lead to a ``trio_ws.App``; the message says why.

    Raised by :func:`load_app` (and so by ``python -m trio_ws APP`` and
    ``serve_workers``) when the name is malformed or names no module, no
    attribute, or something that is not an ``App``. Still a ``ValueError``.
    """


class AppImportError(TrioWsError):
    """Importing the app's module raised; ``__cause__`` is what it raised.

    Raised by :func:`load_app` when the module itself fails while it is
    imported: the error is the app's own, so its traceback is worth showing.
    """


def load_app(spec: str) -> App:
    """Import the ``trio_ws.App`` named ``module:attribute`` (the attribute may be dotted).

    The current directory is put first on ``sys.path``, so ``myapp.py`` next
    to you is found, as it is by ``python -m``.

    Raises:
        AppNotFound: the name is malformed, or names no module, no attribute, or not an ``App``.
        AppImportError: the module raised while being imported (its error is the ``__cause__``).
    """
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise AppNotFound(
            f"APP {spec!r} must be module:attribute, such as myapp:app (the App named app in myapp.py)"
        )
    module = _import(module_name)
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise AppNotFound(_missing(module, module_name, attribute))
        value = getattr(value, part)
    if not isinstance(value, App):
        raise AppNotFound(
            f"{spec} is {_a(value)}, not a trio_ws.App; name the App object (app = trio_ws.App())"
        )
    return value


def _import(module_name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only when the name itself (or a package on its way) is missing; a module the app
        # imports being missing is the app's own error.
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppNotFound(
                f"no module named {exc.name!r} (looked in the current directory, {cwd}, and on sys.path)"
            ) from None
        raise AppImportError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise AppImportError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc


def _missing(module: ModuleType, module_name: str, attribute: str) -> str:
    apps = sorted(name for name, value in vars(module).items() if isinstance(value, App))
    hint = f"; its trio_ws Apps: {', '.join(apps)}" if apps else "; it has no trio_ws.App"
    return f"module {module_name!r} has no attribute {attribute!r}{hint}"


def _a(value: object) -> str:
    if isinstance(value, ModuleType):
        return "a module"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    if callable(value):
        return f"a {type(value).__name__} ({getattr(value, '__name__', '?')})"
    return f"a {type(value).__name__}"
