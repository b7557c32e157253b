// Client results: GET /clientresult?id=... makes the hub invoke the client's Result handler and
// answers what the client returned, or the error text the client sent instead.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { hubTest } from "../lib/connections.js";
import { clientResult } from "../lib/server.js";

describe("client results", () => {
    hubTest("a handler's return value reaches the server (10)", async (s) => {
        const connection = s.build();
        connection.on("Result", () => 10);
        await connection.start();
        assert.equal(await clientResult(connection.connectionId), "10");
    });

    hubTest("an async handler's value reaches the server once its promise resolves", async (s) => {
        const connection = s.build();
        connection.on("Result", async () => {
            await Promise.resolve();
            return 42;
        });
        await connection.start();
        assert.equal(await clientResult(connection.connectionId), "42");
    });

    hubTest("a handler's thrown error reaches the server as its text ('Error: from callback')", async (s) => {
        const connection = s.build();
        connection.on("Result", () => {
            throw new Error("from callback");
        });
        await connection.start();
        assert.equal(await clientResult(connection.connectionId), "Error: from callback");
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });

    hubTest("without a Result handler the server gets \"Client didn't provide a result.\"", async (s) => {
        const connection = await s.connect();
        assert.equal(await clientResult(connection.connectionId), "Client didn't provide a result.");
    });

    hubTest("two handlers that both return make the server get \"Client provided multiple results.\"", async (s) => {
        const connection = s.build();
        connection.on("Result", () => 1);
        connection.on("Result", () => 2);
        await connection.start();
        assert.equal(await clientResult(connection.connectionId), "Client provided multiple results.");
    });
});
