"""Writes the chat page's hub contract: ``chat/contract.ts`` from ``ChatHub``'s type hints, and
``chat/contract.js`` compiled from it by ``tsc``, which the page imports; and the hub's AsyncAPI
document, ``chat/asyncapi.json`` (served beside the page, for AsyncAPI tools).

Run it after changing ``ChatHub`` or ``ChatClient`` (``npm ci`` in ``examples/signalr`` first, for
``tsc``): ``python -m examples.signalr.build_contract``. Both files are committed, and a test
fails while they are out of date.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

from trio_ws.signalr import asyncapi_contract, typescript_contract

HERE = Path(__file__).resolve().parent
SOURCE = "examples.signalr.chat:ChatHub"
CONTRACT = HERE / "chat" / "contract.ts"
ASYNCAPI = HERE / "chat" / "asyncapi.json"
# An ES module for the browser: the contract imports only types from @microsoft/signalr, so the
# JavaScript needs nothing but the connection the page gives it (from the official bundle).
TSC_OPTIONS = [
    "--strict",
    "--skipLibCheck",
    "--target",
    "es2020",
    "--module",
    "es2020",
    "--moduleResolution",
    "bundler",
]


def chat_hub() -> type:
    """``ChatHub``, imported by name as the command line would (``chat`` is also the page's folder)."""
    module_name, _, name = SOURCE.partition(":")
    hub_type: type = getattr(importlib.import_module(module_name), name)
    return hub_type


def contract_source() -> str:
    """The TypeScript contract as the generator writes it now."""
    return typescript_contract(chat_hub(), source=SOURCE)


def asyncapi_source() -> str:
    """The AsyncAPI document as the generator writes it now (the hub is at ``/chat``)."""
    return json.dumps(asyncapi_contract(chat_hub(), address="/chat"), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    tsc = HERE / "node_modules" / ".bin" / "tsc"
    if not tsc.is_file():
        print(f"tsc is missing: run `npm ci` in {HERE} first", file=sys.stderr)
        return 1
    CONTRACT.write_text(contract_source())
    ASYNCAPI.write_text(asyncapi_source())
    done = subprocess.run(
        [str(tsc), *TSC_OPTIONS, "--outDir", str(CONTRACT.parent), str(CONTRACT)],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        return done.returncode
    written = (CONTRACT, CONTRACT.with_suffix(".js"), ASYNCAPI)
    print("wrote " + ", ".join(str(path.relative_to(HERE)) for path in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
