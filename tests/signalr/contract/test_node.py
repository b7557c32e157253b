"""Generated contracts against the real tools: tsc, the official client in Node, the AsyncAPI parser.

``tests/contract_node`` holds the pinned packages (``typescript``, ``@microsoft/signalr`` and its
MessagePack protocol, ``@asyncapi/parser``; ``npm ci`` there, which the first test here does if
they are missing) and the TypeScript that uses the generated contract:

* ``shapes_live.ts`` drives ``tests/signalr/contract/shapes_hub.py``'s hub through the contract and prints
  what came back; it must compile under ``tsc --strict`` against the official package's own types,
  then run against a live hub with JSON and with MessagePack.
* ``shapes_miscalls.ts`` makes a mistake on each line marked ``// error``: tsc must report exactly
  those lines, which shows the contract's types are not ``any``.
* ``validate_asyncapi.mjs`` runs the AsyncAPI project's parser on a generated document.

The generated contract is written to a temporary directory beside copies of those files, with
``node_modules`` linked in. ``--skipLibCheck`` only skips checking the packages' declaration files
themselves (their own business, and most of tsc's time); our code is checked against them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from examples.signalr.build_contract import CONTRACT, TSC_OPTIONS, chat_hub
from trio_ws.signalr import asyncapi_contract, typescript_contract

from ..helpers import served_in_thread
from .shapes_hub import Shapes, build_app

ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "tests" / "contract_node"
NPM_CI_DEADLINE = 300.0
TOOL_DEADLINE = 90.0  # tsc takes a few seconds; this only bounds a hang on a busy machine


@pytest.fixture(scope="module")
def suite() -> Path:
    """``tests/contract_node`` with its packages installed (``npm ci`` from the lock file if missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("the contract tests need Node 20 and npm on PATH")
    if not (SUITE / "node_modules" / "typescript").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=SUITE,
            capture_output=True,
            text=True,
            timeout=NPM_CI_DEADLINE,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {SUITE}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return SUITE


@pytest.fixture
def workdir(suite: Path, tmp_path: Path) -> Path:
    """A directory with the Shapes contract, the suite's TypeScript files and its node_modules."""
    (tmp_path / "shapes_contract.ts").write_text(typescript_contract(Shapes))
    for name in ("shapes_live.ts", "shapes_miscalls.ts", "validate_asyncapi.mjs"):
        shutil.copy(suite / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(suite / "node_modules", target_is_directory=True)
    return tmp_path


def tsc(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SUITE / "node_modules" / ".bin" / "tsc"), "--strict", "--skipLibCheck", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TOOL_DEADLINE,
        check=False,
    )


def node(workdir: Path, *args: str) -> Any:
    done = subprocess.run(
        ["node", *args], cwd=workdir, capture_output=True, text=True, timeout=TOOL_DEADLINE, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.timeout(TOOL_DEADLINE * 3)
def test_the_typescript_compiles_strictly_and_runs_against_a_live_hub(workdir: Path) -> None:
    """tsc --strict accepts the contract and a program using it; in Node, with the official client,
    every call reaches the hub by its wire name and every handler is called, over JSON and
    MessagePack (which carries bytes and datetimes as Uint8Array and Date)."""
    compiled = tsc(workdir, "--target", "es2022", "--module", "commonjs", "--outDir", "out", "shapes_live.ts")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    shapes = [
        {"name": "tri", "points": [{"x": 0, "y": 0, "label": None}, {"x": 1, "y": 0.5, "label": "top"}]}
        | {"kind": "polygon"},
        {"name": "line", "points": [{"x": 2, "y": 3, "label": None}], "kind": "line"},
    ]
    carried = {
        "json": {"data": "AwIB", "when": "2026-02-01T12:00:00Z", "sizes": [3, "bytes"]},
        "messagepack": {"data": [3, 2, 1], "when": "2026-02-01T12:00:00.000Z", "sizes": [3, "bytes"]},
    }
    for protocol, stamp in carried.items():
        with served_in_thread(build_app()) as url:  # a fresh hub: it keeps its shapes
            results = node(workdir, "out/shapes_live.js", f"{url}/shapes", protocol)
        assert results.pop("afterRemove").endswith("Client didn't provide a result.")
        assert results == {
            "added": 1,
            "addedLine": 2,
            "all": {"tri": shapes[0], "line": shapes[1]},
            "items": [1, 2, 3],
            "total": 3.5,
            "stamp": stamp,
            "html": "<h1>shapes</h1>",
            "htmlTitled": "<h1>hi</h1>",
            "choice": "blue",
            "seen": shapes,
            "counts": [1, 2],
            "offered": [["red", "blue"]],
        }, protocol


@pytest.mark.timeout(TOOL_DEADLINE * 2)
def test_wrongly_typed_calls_do_not_compile(workdir: Path) -> None:
    """Each mistake in shapes_miscalls.ts (a wrong argument, a misspelt method, a wrong result,
    handlers that do not fit) is a tsc error on its own line, and there are no others."""
    source = (workdir / "shapes_miscalls.ts").read_text().splitlines()
    expected = {number for number, line in enumerate(source, start=1) if line.endswith("// error")}
    checked = tsc(workdir, "--noEmit", "--target", "es2022", "--module", "commonjs", "shapes_miscalls.ts")
    assert checked.returncode != 0
    reported = {
        int(line.split("(", 1)[1].split(",", 1)[0])
        for line in checked.stdout.splitlines()
        if line.startswith("shapes_miscalls.ts(")
    }
    assert reported == expected, checked.stdout
    assert len(expected) == 8


@pytest.mark.timeout(TOOL_DEADLINE * 2)
@pytest.mark.parametrize(("hub", "address"), [(Shapes, "/shapes"), (chat_hub(), "/chat")])
def test_the_asyncapi_document_validates_with_the_asyncapi_parser(
    workdir: Path, hub: type, address: str
) -> None:
    """@asyncapi/parser reads the document without errors or warnings, and finds its operations."""
    document = asyncapi_contract(hub, address=address)
    (workdir / "hub.json").write_text(json.dumps(document))
    report = node(workdir, "validate_asyncapi.mjs", "hub.json")
    assert report["errors"] == [] and report["warnings"] == [], report
    assert report["parsed"] and report["version"] == "3.0.0"
    assert report["channels"] == [[hub.__name__, address]]
    assert [operation[0] for operation in report["operations"]] == list(document["operations"])


@pytest.mark.timeout(TOOL_DEADLINE * 2)
def test_the_chat_pages_compiled_contract_is_up_to_date(suite: Path, tmp_path: Path) -> None:
    """examples/signalr/chat/contract.js is what tsc makes of contract.ts (run
    ``python -m examples.signalr.build_contract`` after changing the hub)."""
    shutil.copy(CONTRACT, tmp_path / CONTRACT.name)
    (tmp_path / "node_modules").symlink_to(suite / "node_modules", target_is_directory=True)
    compiled = subprocess.run(
        [str(suite / "node_modules" / ".bin" / "tsc"), *TSC_OPTIONS, "--outDir", "out", CONTRACT.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TOOL_DEADLINE,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    committed = CONTRACT.with_suffix(".js").read_text()
    assert (tmp_path / "out" / "contract.js").read_text() == committed, (
        "stale: run python -m examples.signalr.build_contract"
    )
