// Invocations both ways: results, sends, errors, callbacks, restarts and complex objects
// (the official functional tests' per-transport-and-protocol cases, on TestHub).

import assert from "node:assert/strict";
import { describe } from "node:test";

import { closed, hubTest, isJson, nextCall } from "../lib/connections.js";

const MESSAGE = "你好，世界！";
const SERVER_CALL = "你好 SignalR！";

describe("invocations", () => {
    hubTest("Echo returns UTF-8 text unchanged, and stop() closes without an error", async (s) => {
        const connection = s.build();
        const closing = closed(connection);
        await connection.start();
        assert.equal(await connection.invoke("Echo", MESSAGE), MESSAGE);
        await connection.stop();
        assert.equal(await closing, undefined);
    });

    hubTest("send() completes without waiting for a result, and the connection stays usable", async (s) => {
        const connection = s.build();
        const closing = closed(connection);
        await connection.start();
        await connection.send("Echo", MESSAGE);
        assert.equal(await connection.invoke("Echo", "after the send"), "after the send");
        await connection.stop();
        assert.equal(await closing, undefined);
    });

    hubTest("SendCustomObject calls the client's CustomObject with the object's fields", async (s) => {
        const connection = await s.connect();
        const call = nextCall(connection, "CustomObject");
        await connection.send("SendCustomObject", { Name: "test", Value: 42 });
        const [customObject] = await call;
        assert.equal(customObject.Name, "test");
        assert.equal(customObject.Value, 42);
    });

    hubTest("ThrowException rejects the invocation with the server's detailed error", async (s) => {
        const connection = await s.connect();
        await assert.rejects(connection.invoke("ThrowException", "An error occurred."), {
            message: "An unexpected error occurred invoking 'ThrowException' on the server. InvalidOperationException: An error occurred.",
        });
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });

    hubTest("client callbacks are found by case-insensitive name (Message reaches 'mEsSaGe')", async (s) => {
        const connection = await s.connect();
        const call = nextCall(connection, "mEsSaGe");
        await connection.invoke("InvokeWithString", SERVER_CALL);
        assert.deepEqual(await call, [SERVER_CALL]);
    });

    hubTest("hub method names match case-insensitively ('echo', 'ECHO')", async (s) => {
        const connection = await s.connect();
        assert.equal(await connection.invoke("echo", "lower"), "lower");
        assert.equal(await connection.invoke("ECHO", "upper"), "upper");
    });

    hubTest("client callbacks survive stop() and start() without being registered again", async (s) => {
        const connection = s.build();
        const received = [];
        connection.on("Message", (message) => received.push(message));
        for (const round of ["first", "second"]) {
            await connection.start();
            const call = nextCall(connection, "Message");
            await connection.invoke("InvokeWithString", `${SERVER_CALL} ${round}`);
            await call;
            await connection.stop();
        }
        assert.deepEqual(received, [`${SERVER_CALL} first`, `${SERVER_CALL} second`]);
    });

    hubTest("a stopped connection starts again as a new connection and invokes", async (s) => {
        const connection = s.build();
        const ids = [];
        for (let round = 0; round < 2; round += 1) {
            await connection.start();
            assert.equal(await connection.invoke("Echo", MESSAGE), MESSAGE);
            ids.push(await connection.invoke("GetCallerConnectionId"));
            await connection.stop();
        }
        assert.notEqual(ids[0], ids[1], "the restarted connection kept its old connection id");
    });

    hubTest("an unknown hub method gets an error completion and the connection stays open", async (s) => {
        const connection = await s.connect();
        await assert.rejects(connection.invoke("NoSuchMethod", 1), (error) => {
            assert.match(error.message, /NoSuchMethod/);
            return true;
        });
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });

    hubTest("a call with the wrong number of arguments gets an error completion and the connection stays open", async (s) => {
        const connection = await s.connect();
        await assert.rejects(connection.invoke("Echo", "one", "two"), (error) => {
            assert.match(error.message, /Echo/);
            return true;
        });
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });

    // JSON carries bytes as base64 and dates as ISO 8601 text; MessagePack as bin and timestamps.
    const sentObject = {
        ByteArray: isJson ? "aGVsbG8=" : new Uint8Array([0x68, 0x65, 0x6c, 0x6c, 0x6f]),
        DateTime: isJson ? "2002-04-01T10:20:15Z" : new Date(Date.UTC(2002, 3, 1, 10, 20, 15)),
        Guid: "00010203-0405-0607-0706-050403020100",
        IntArray: [0x01, 0x02, 0x03, 0xff],
        String: "Hello, World!",
    };
    const serverObject = {
        ByteArray: isJson ? "AQID" : new Uint8Array([0x1, 0x2, 0x3]),
        DateTime: isJson ? "2000-01-01T00:00:00Z" : new Date(Date.UTC(2000, 0, 1)),
        Guid: "00010203-0405-0607-0706-050403020100",
        IntArray: [0x01, 0x02, 0x03],
        String: "hello world",
    };

    hubTest("EchoComplexObject returns bytes, a date, a GUID, ints and text unchanged", async (s) => {
        const connection = await s.connect();
        assert.deepStrictEqual(normalise(await connection.invoke("EchoComplexObject", sentObject)), sentObject);
    });

    hubTest("SendComplexObject returns the server's object with bytes, a date, a GUID, ints and text", async (s) => {
        const connection = await s.connect();
        assert.deepStrictEqual(normalise(await connection.invoke("SendComplexObject")), serverObject);
    });
});

/** MessagePack's decoder may hand bytes back as a Buffer or a view: compare them as a Uint8Array. */
function normalise(value) {
    if (value && value.ByteArray instanceof Uint8Array) {
        return { ...value, ByteArray: new Uint8Array(value.ByteArray) };
    }
    return value;
}
