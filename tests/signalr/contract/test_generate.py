"""The contract generator in Python: what it writes for a hub, and what it refuses, saying where.

Compiling the TypeScript, running it against a live hub and validating the AsyncAPI document
with the AsyncAPI project's parser are in ``tests/signalr/contract/test_node.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from examples.signalr.build_contract import ASYNCAPI, CONTRACT, asyncapi_source, contract_source
from trio_ws.signalr import ContractError, Hub, asyncapi_contract, hub_method, typescript_contract

from .shapes_hub import Shapes

ROOT = Path(__file__).resolve().parents[3]


def test_typescript_has_the_shape_the_page_needs() -> None:
    """Interfaces per dataclass and TypedDict, enums as unions, Server and Client interfaces with
    camelCase methods, and the two functions calling the wire names."""
    ts = typescript_contract(Shapes)
    for expected in [
        'import type { HubConnection, IStreamResult, Subject } from "@microsoft/signalr";',
        "export interface Point {\n    x: number;\n    y: number;\n    label?: string | null;\n}",
        'export interface ShapeInfo {\n    name: string;\n    points: Point[];\n    kind: "polygon" | "line";'
        "\n    color?: Color;\n}",
        'export type Color = "red" | "blue";',
        "export interface Stamp {\n    data: Uint8Array | string;\n    when: Date | string;\n"
        "    sizes: [number, string];\n}",
        '    addShape(name: string, points: Point[], kind?: "polygon" | "line"): Promise<number>;',
        "    allShapes(): Promise<Record<string, ShapeInfo>>;",
        "    countTo(n: number): IStreamResult<number>;",
        "    total(numbers: Subject<number>): Promise<number>;",
        "    getHTML(title?: string | null): Promise<string>;",
        "    shapeAdded(shape: ShapeInfo): void | Promise<void>;",
        "    pickColor(choices: Color[]): Color | Promise<Color>;",
        "    renamedOnClient(count: number): void | Promise<void>;",
        "export function getShapesServer(connection: HubConnection): ShapesServer {",
        '        countTo: (n) => connection.stream<number>("CountTo", n),',
        '        getHTML: (title) => connection.invoke<string>("getHTML", ...trimmed([title])),',
        "export function registerShapesClient(connection: HubConnection, client: ShapesClient): () => void {",
        '    connection.on("renamedOnClient", handler2);',
        '        connection.off("PickColor", handler1);',
        "    /** Add a shape; returns how many there are. */",
    ]:
        assert expected in ts, expected


def test_asyncapi_describes_both_sides() -> None:
    """An operation per hub method (receive, with its Completion as the reply, and StreamItems
    for a stream) and per client method (send; a client result has a reply); wire names kept;
    the named types as schemas."""
    document = asyncapi_contract(Shapes, address="/shapes")
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"]["Shapes"]["address"] == "/shapes"
    operations = document["operations"]
    assert {name: operation["action"] for name, operation in operations.items()} == {
        "AddShape": "receive",
        "AllShapes": "receive",
        "CountTo": "receive",
        "Total": "receive",
        "Stamp": "receive",
        "getHTML": "receive",
        "Choose": "receive",
        "ClientShapeAdded": "send",
        "ClientPickColor": "send",
        "ClientRenamedOnClient": "send",
    }
    messages = document["channels"]["Shapes"]["messages"]
    assert messages["getHTML"]["payload"]["properties"]["target"] == {"const": "getHTML"}
    assert messages["ClientRenamedOnClient"]["payload"]["properties"]["target"] == {
        "const": "renamedOnClient"
    }
    assert messages["CountTo"]["payload"]["properties"]["type"] == {"const": 4}
    assert [reply["$ref"].rsplit("/", 1)[1] for reply in operations["CountTo"]["reply"]["messages"]] == [
        "CountToItem",
        "CountToCompletion",
    ]
    assert "reply" not in operations["ClientShapeAdded"] and "reply" in operations["ClientPickColor"]
    assert messages["AddShape"]["payload"]["properties"]["arguments"]["minItems"] == 2
    assert messages["AddShape"]["payload"]["properties"]["arguments"]["maxItems"] == 3
    schemas = document["components"]["schemas"]
    assert schemas["Color"]["enum"] == ["red", "blue"]
    assert schemas["Point"]["required"] == ["x", "y"]
    assert schemas["Stamp"]["properties"]["when"] == {"type": "string", "format": "date-time"}


class Loose(Hub):
    async def anything(self, value: Any) -> None: ...


class Unannotated(Hub):
    async def untyped(self, value) -> None: ...  # type: ignore[no-untyped-def]


class Opaque:
    pass


class WithClass(Hub):
    async def give(self) -> Opaque:  # the hub refuses such a parameter itself, but not a result
        return Opaque()


class NoResult(Hub):
    async def what(self, text: str):  # type: ignore[no-untyped-def]
        return text


class Vague(Protocol):
    async def told(self, data: dict) -> None: ...  # type: ignore[type-arg]


class VagueClients(Hub[Vague]):
    pass


class Items(Hub):
    async def items(self) -> AsyncIterator[object]:
        yield 1


@pytest.mark.parametrize(
    ("hub", "message"),
    [
        (Loose, "Loose.anything, parameter 'value': typing.Any cannot be written as a contract type"),
        (Unannotated, "Unannotated.untyped, parameter 'value': no annotation cannot be written"),
        (
            WithClass,
            "WithClass.give, its result: <class 'tests.signalr.contract.test_generate.Opaque'> cannot be",
        ),
        (NoResult, "NoResult.what, its result: no annotation; annotate the return type (-> None if none)"),
        (VagueClients, "Vague.told, parameter 'data': <class 'dict'> says nothing of its values"),
        (Items, "Items.items, its stream items: <class 'object'> cannot be written as a contract type"),
    ],
)
def test_types_a_contract_cannot_express_are_refused_by_name(hub: type[Hub[Any]], message: str) -> None:
    """Never a silent any: the error names the method (or protocol method) and the parameter."""
    with pytest.raises(ContractError) as refused:
        typescript_contract(hub)
    assert str(refused.value).startswith(message)
    with pytest.raises(ContractError):
        asyncapi_contract(hub)


def test_renamed_methods_keep_their_wire_names() -> None:
    """@hub_method's name is what the TypeScript calls and the AsyncAPI targets."""

    class Renamed(Hub):
        @hub_method("legacy_name")
        async def modern(self) -> None: ...

    ts = typescript_contract(Renamed)
    assert "    legacy_name(): Promise<void>;" in ts
    assert 'legacy_name: () => connection.invoke<void>("legacy_name"),' in ts
    assert asyncapi_contract(Renamed)["operations"]["legacy_name"]["action"] == "receive"


def test_the_command_line_prints_both_contracts_and_explains_failures() -> None:
    """python -m trio_ws.signalr.contract: TypeScript and AsyncAPI JSON on stdout; exit 1 with the
    reason on stderr for a bad MODULE:HUB or an inexpressible type."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trio_ws.signalr.contract", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    ts = run("typescript", "tests.signalr.contract.shapes_hub:Shapes")
    assert ts.returncode == 0, ts.stderr
    assert ts.stdout == typescript_contract(Shapes, source="tests.signalr.contract.shapes_hub:Shapes")
    api = run("asyncapi", "tests.signalr.contract.shapes_hub:Shapes", "--address", "/shapes")
    assert api.returncode == 0, api.stderr
    assert json.loads(api.stdout) == asyncapi_contract(Shapes, address="/shapes")
    missing = run("typescript", "tests.signalr.contract.shapes_hub")
    assert missing.returncode == 1
    assert "expected MODULE:HUB" in missing.stderr
    loose = run("asyncapi", "tests.signalr.contract.test_generate:Loose")
    assert loose.returncode == 1
    assert loose.stderr.startswith("error: Loose.anything, parameter 'value':")


def test_the_chat_pages_contract_is_up_to_date() -> None:
    """examples/signalr/chat/contract.ts and asyncapi.json are what the generator writes for
    ChatHub now (the compiled contract.js is checked in tests/signalr/contract/test_node.py): run
    ``python -m examples.signalr.build_contract`` after changing the hub."""
    assert CONTRACT.read_text() == contract_source(), "stale: run python -m examples.signalr.build_contract"
    assert ASYNCAPI.read_text() == asyncapi_source(), "stale: run python -m examples.signalr.build_contract"
