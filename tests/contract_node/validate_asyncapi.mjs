// Validates an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser).
// Usage: node validate_asyncapi.mjs FILE. Prints {"errors": [...], "warnings": [...], "operations": [...]}.
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const text = await readFile(process.argv[2], "utf8");
const { document, diagnostics } = await new Parser().parse(text);
const describe = (d) => ({ code: d.code, message: d.message, path: d.path.join("/") });
console.log(JSON.stringify({
    parsed: document !== undefined,
    errors: diagnostics.filter((d) => d.severity === 0).map(describe),
    warnings: diagnostics.filter((d) => d.severity === 1).map(describe),
    version: document ? document.version() : null,
    operations: document ? document.operations().all().map((o) => [o.id(), o.action(), o.messages().all().map((m) => m.name())]) : [],
    channels: document ? document.channels().all().map((c) => [c.id(), c.address()]) : [],
}));
