"""Generating a hub's client contracts: the functions behind ``python -m trio_ws.signalr.contract``.

``typescript_contract(Hub)`` gives a TypeScript module for ``@microsoft/signalr``
(see ``_contract_typescript``), ``asyncapi_contract(Hub)`` an AsyncAPI 3.0
document (see ``_contract_asyncapi``); both read the hub through
``_contract_model.describe_hub``, so they agree on names and types.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .asyncapi import render_asyncapi
from .model import ContractError, describe_hub
from .typescript import render_typescript

__all__ = ["ContractError", "asyncapi_contract", "load_hub", "typescript_contract"]


def typescript_contract(hub_type: type, *, source: str | None = None) -> str:
    """The TypeScript module for ``hub_type``; ``source`` (``module:Hub``) goes in its header.

    Raises:
        ContractError: a type the contract cannot express, naming the method and parameter.
    """
    name = source or f"{hub_type.__module__}:{hub_type.__qualname__}"
    return render_typescript(describe_hub(hub_type), source=name)


def asyncapi_contract(
    hub_type: type, *, address: str | None = None, version: str = "1.0.0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for ``hub_type`` (its channel at ``address``, if given).

    Raises:
        ContractError: a type the contract cannot express, naming the method and parameter.
    """
    return render_asyncapi(describe_hub(hub_type), address=address, version=version)


def load_hub(spec: str) -> type:
    """The class ``MODULE:HUB`` names.

    Raises:
        ValueError: ``spec`` is not ``MODULE:HUB``, or names nothing importable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected MODULE:HUB (such as examples.signalr.chat:ChatHub), got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # as python -m does, so a module beside the caller imports
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f"{module_name} has no {attribute!r}")
    if not isinstance(found, type):
        raise ValueError(f"{spec} is not a class (a Hub subclass)")
    return found
