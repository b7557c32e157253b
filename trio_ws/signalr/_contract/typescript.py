"""A hub's contract as a TypeScript module for ``@microsoft/signalr``.

For a hub class ``Shapes`` the module has:

* a type per dataclass, ``TypedDict`` (an interface) and enum (a union of its values);
* ``interface ShapesServer``: a camelCase method per hub method, ``Promise<R>``
  for a result, ``IStreamResult<T>`` for a stream, ``Subject<T>`` for an upload;
* ``interface ShapesClient``: what the page implements for the hub's calls;
* ``getShapesServer(connection)`` and ``registerShapesClient(connection, client)``.

How Python types are written (what the JSON and MessagePack protocols carry):

==========================  =====================================================
Python                      TypeScript
==========================  =====================================================
``str``, ``UUID``           ``string``
``int``, ``float``          ``number``
``bool``, ``None``          ``boolean``, ``null``
``bytes``                   ``Uint8Array | string`` (MessagePack: bytes; JSON: base64)
``datetime``                ``Date | string`` (MessagePack: a Date; JSON: ISO 8601 text)
``list[T]``, ``tuple``      ``T[]``, ``[A, B]``
``dict[str, T]``            ``Record<string, T>``
``Literal["a", 1]``         ``"a" | 1``
an ``Enum``                 a type: the union of its values
a dataclass, ``TypedDict``  an interface; a field with a default, or not required,
                            is optional (``label?: string | null``)
==========================  =====================================================

Rules of this module: the output only imports types from ``@microsoft/signalr``,
so compiled to JavaScript it needs nothing at run time but the connection it is
given; optional arguments left out are not sent (JSON would send ``null``).
"""

from __future__ import annotations

import json

from .model import (
    ArrayOf,
    EnumType,
    HubContract,
    LiteralOf,
    MapOf,
    Named,
    ObjectType,
    Operation,
    Parameter,
    Primitive,
    TupleOf,
    TypeRef,
)

__all__ = ["render_typescript"]

_PRIMITIVES = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
    "bytes": "Uint8Array | string",
    "datetime": "Date | string",
    "uuid": "string",
}
# Words a parameter may not be called in TypeScript, and the generated functions' own names.
_WORDS = """
    break case catch class const continue debugger default delete do else enum export extends false
    finally for function if import in instanceof new null return super switch this throw true try
    typeof var void while with implements interface let package private protected public static yield
    await arguments eval connection client trimmed
"""
_RESERVED = frozenset(_WORDS.split())
_INDENT = "    "


def _type(ref: TypeRef, *, nested: bool = False) -> str:
    if isinstance(ref, Primitive):
        text = _PRIMITIVES[ref.kind]
        return f"({text})" if nested and " | " in text else text
    if isinstance(ref, Named):
        return ref.name
    if isinstance(ref, ArrayOf):
        return f"{_type(ref.item, nested=True)}[]"
    if isinstance(ref, TupleOf):
        return f"[{', '.join(_type(item) for item in ref.items)}]"
    if isinstance(ref, MapOf):
        return f"Record<string, {_type(ref.value)}>"
    if isinstance(ref, LiteralOf):
        text = " | ".join(json.dumps(value) for value in ref.values)
        return f"({text})" if nested and len(ref.values) > 1 else text
    text = " | ".join(_type(option, nested=True) for option in ref.options)
    return f"({text})" if nested else text


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _name(parameter: Parameter) -> str:
    return parameter.name + "_" if parameter.name in _RESERVED else parameter.name


def _comment(doc: str, indent: str) -> list[str]:
    if not doc:
        return []
    lines = [line.replace("*/", "* /") for line in doc.splitlines()]
    if len(lines) == 1:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


def _parameters(operation: Operation) -> str:
    rendered = []
    for parameter in operation.parameters:
        kind = _type(parameter.type)
        if parameter.stream:
            kind = f"Subject<{kind}>"
        rendered.append(f"{_name(parameter)}{'?' if parameter.optional else ''}: {kind}")
    return ", ".join(rendered)


def _server_result(operation: Operation) -> str:
    if operation.streams:
        return f"IStreamResult<{_type(operation.result)}>"
    if operation.result == Primitive("null"):
        return "Promise<void>"
    return f"Promise<{_type(operation.result)}>"


def _client_result(operation: Operation) -> str:
    if operation.result == Primitive("null"):
        return "void | Promise<void>"
    kind = _type(operation.result, nested=True)
    return f"{kind} | Promise<{_type(operation.result)}>"


def _declaration(kind: ObjectType | EnumType) -> list[str]:
    lines = _comment(kind.doc, "")
    if isinstance(kind, EnumType):
        values = " | ".join(json.dumps(value) for value in kind.values)
        return [*lines, f"export type {kind.name} = {values};"]
    lines.append(f"export interface {kind.name} {{")
    for item in kind.fields:
        lines.append(f"{_INDENT}{item.name}{'' if item.required else '?'}: {_type(item.type)};")
    return [*lines, "}"]


def _server_function(contract: HubContract) -> list[str]:
    name = contract.name
    lines = [
        "/** The hub's methods, called by their wire names (`invoke` or `stream`). */",
        f"export function get{name}Server(connection: HubConnection): {name}Server {{",
        f"{_INDENT}return {{",
    ]
    for operation in contract.server:
        names = [_name(parameter) for parameter in operation.parameters]
        optional = any(parameter.optional for parameter in operation.parameters)
        if optional:
            arguments = f", ...trimmed([{', '.join(names)}])"
        else:
            arguments = "".join(f", {argument}" for argument in names)
        if operation.streams:
            call = f"connection.stream<{_type(operation.result)}>({json.dumps(operation.name)}{arguments})"
        else:
            result = "void" if operation.result == Primitive("null") else _type(operation.result)
            call = f"connection.invoke<{result}>({json.dumps(operation.name)}{arguments})"
        lines.append(f"{_INDENT * 2}{_camel(operation.name)}: ({', '.join(names)}) => {call},")
    return [*lines, f"{_INDENT}}};", "}"]


def _client_function(contract: HubContract) -> list[str]:
    name = contract.name
    lines = [
        "/** Answers the hub's calls with `client`'s methods; the returned function removes them. */",
        f"export function register{name}Client("
        f"connection: HubConnection, client: {name}Client): () => void {{",
    ]
    handlers = []
    for index, operation in enumerate(contract.client):
        handler = f"handler{index}"
        handlers.append((operation.name, handler))
        names = ", ".join(_name(parameter) for parameter in operation.parameters)
        lines.append(
            f"{_INDENT}const {handler} = ({_parameters(operation)}): {_client_result(operation)} =>"
            f" client.{_camel(operation.name)}({names});"
        )
        lines.append(f"{_INDENT}connection.on({json.dumps(operation.name)}, {handler});")
    lines.append(f"{_INDENT}return () => {{")
    for wire, handler in handlers:
        lines.append(f"{_INDENT * 2}connection.off({json.dumps(wire)}, {handler});")
    return [*lines, f"{_INDENT}}};", "}"]


def _interface(name: str, doc: str, operations: list[Operation], result: str) -> list[str]:
    lines = [*_comment(doc, ""), f"export interface {name} {{"]
    for operation in operations:
        lines += _comment(operation.doc, _INDENT)
        returns = _server_result(operation) if result == "server" else _client_result(operation)
        lines.append(f"{_INDENT}{_camel(operation.name)}({_parameters(operation)}): {returns};")
    return [*lines, "}"]


def render_typescript(contract: HubContract, *, source: str) -> str:
    """The TypeScript module for ``contract``; ``source`` names where it came from (``module:Hub``)."""
    used = {"HubConnection"}
    if any(operation.streams for operation in contract.server):
        used.add("IStreamResult")
    if any(parameter.stream for operation in contract.server for parameter in operation.parameters):
        used.add("Subject")
    lines = [
        f"// The contract of the hub {source}, generated from its type hints by",
        f"// `python -m trio_ws.signalr.contract typescript {source}`. Do not edit: generate it again.",
        "",
        f'import type {{ {", ".join(sorted(used))} }} from "@microsoft/signalr";',
    ]
    for kind in contract.types.values():
        lines += ["", *_declaration(kind)]
    server_doc = f"What the page can call on {contract.name}." + (
        f"\n\n{contract.doc}" if contract.doc else ""
    )
    lines += ["", *_interface(f"{contract.name}Server", server_doc, contract.server, "server")]
    client_doc = f"What {contract.name} calls on its clients."
    lines += ["", *_interface(f"{contract.name}Client", client_doc, contract.client, "client")]
    if any(parameter.optional for operation in contract.server for parameter in operation.parameters):
        lines += [
            "",
            "/** The arguments without the trailing ones left out, which JSON would send as null. */",
            "function trimmed(args: unknown[]): unknown[] {",
            f"{_INDENT}let end = args.length;",
            f"{_INDENT}while (end > 0 && args[end - 1] === undefined) {{",
            f"{_INDENT * 2}end -= 1;",
            f"{_INDENT}}}",
            f"{_INDENT}return args.slice(0, end);",
            "}",
        ]
    lines += ["", *_server_function(contract), "", *_client_function(contract)]
    return "\n".join(lines) + "\n"
