"""Client contracts generated from a hub's type hints: TypeScript for ``@microsoft/signalr``, AsyncAPI.

::

    python -m trio_ws.signalr.contract typescript examples.signalr.chat:ChatHub > chat_contract.ts
    python -m trio_ws.signalr.contract asyncapi examples.signalr.chat:ChatHub --address /chat

``MODULE:HUB`` names a ``Hub`` subclass the way ``python -m`` would import it
(the current directory is on the path). The same from Python:
``typescript_contract(ChatHub)`` and ``asyncapi_contract(ChatHub)``. A type
the contract cannot express stops it with a ``ContractError`` naming the
method and the parameter. See ``docs/typed-hubs.md`` for the type mapping.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ._contract.generate import asyncapi_contract, load_hub, typescript_contract

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: print a contract, or say on stderr why it cannot be written."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_ws.signalr.contract",
        description="Print a hub's client contract, generated from its type hints.",
    )
    parser.add_argument("format", choices=("typescript", "asyncapi"))
    parser.add_argument(
        "hub", metavar="MODULE:HUB", help="the Hub subclass, such as examples.signalr.chat:ChatHub"
    )
    parser.add_argument("--address", help="asyncapi: the hub's path, such as /chat")
    parser.add_argument("--version", default="1.0.0", help="asyncapi: the document's info.version")
    arguments = parser.parse_args(argv)
    try:
        hub_type = load_hub(arguments.hub)
        if arguments.format == "typescript":
            text = typescript_contract(hub_type, source=arguments.hub)
        else:
            document = asyncapi_contract(hub_type, address=arguments.address, version=arguments.version)
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
