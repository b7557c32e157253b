// Server-to-client streams: items, completion, cancellation, errors, and the errors for
// calling a streaming method as a plain one and the reverse.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { hubTest, nextCall } from "../lib/connections.js";
import { Deferred } from "../lib/waiting.js";

/** Subscribes to `connection.stream(...)`: resolves `{ items, error }` when the stream ends. */
function collect(streamResult) {
    const ended = new Deferred();
    const items = [];
    const subscription = streamResult.subscribe({
        next: (item) => items.push(item),
        complete: () => ended.resolve({ items, error: undefined }),
        error: (error) => ended.resolve({ items, error }),
    });
    return { subscription, ended: ended.promise };
}

describe("streams", () => {
    hubTest("Stream sends a, b, c, then completes", async (s) => {
        const connection = await s.connect();
        const { ended } = collect(connection.stream("Stream"));
        assert.deepEqual(await ended, { items: ["a", "b", "c"], error: undefined });
    });

    hubTest("EmptyStream completes with no items", async (s) => {
        const connection = await s.connect();
        const { ended } = collect(connection.stream("EmptyStream"));
        assert.deepEqual(await ended, { items: [], error: undefined });
    });

    hubTest("disposing an InfiniteStream subscription cancels it: the server calls StreamCanceled", async (s) => {
        const connection = await s.connect();
        const canceled = nextCall(connection, "StreamCanceled");
        const { subscription } = collect(connection.stream("InfiniteStream"));
        subscription.dispose();
        await canceled;
        assert.equal(await connection.invoke("Echo", "after the cancel"), "after the cancel");
    });

    hubTest("an exception in StreamThrowException reaches the subscriber as the server's detailed error", async (s) => {
        const connection = await s.connect();
        const { ended } = collect(connection.stream("StreamThrowException", "An error occurred."));
        const { items, error } = await ended;
        assert.deepEqual(items, []);
        assert.equal(
            error?.message,
            "An unexpected error occurred invoking 'StreamThrowException' on the server. InvalidOperationException: An error occurred.",
        );
    });

    hubTest("invoke() on the streaming EmptyStream is refused with ASP.NET's text", async (s) => {
        const connection = await s.connect();
        await assert.rejects(connection.invoke("EmptyStream"), {
            message: "The client attempted to invoke the streaming 'EmptyStream' method with a non-streaming invocation.",
        });
    });

    hubTest("invoke() on the streaming Stream is refused with ASP.NET's text", async (s) => {
        const connection = await s.connect();
        await assert.rejects(connection.invoke("Stream"), {
            message: "The client attempted to invoke the streaming 'Stream' method with a non-streaming invocation.",
        });
    });

    hubTest("stream() on the non-streaming Echo is refused with ASP.NET's text", async (s) => {
        const connection = await s.connect();
        const { items, error } = await collect(connection.stream("Echo", "42")).ended;
        assert.deepEqual(items, []);
        assert.equal(error?.message, "The client attempted to invoke the non-streaming 'Echo' method with a streaming invocation.");
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });
});
