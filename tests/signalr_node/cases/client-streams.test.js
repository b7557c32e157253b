// Client-to-server streams: a Subject passed as an argument streams its items to the hub.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { Subject } from "@microsoft/signalr";

import { hubTest } from "../lib/connections.js";

/** Invokes StreamingConcat with a Subject, streams `items` through it, then ends it with `end`. */
function streamingConcat(connection, items, end = (subject) => subject.complete()) {
    const subject = new Subject();
    const result = connection.invoke("StreamingConcat", subject);
    for (const item of items) {
        subject.next(item);
    }
    end(subject);
    return result;
}

describe("client-to-server streams", () => {
    hubTest("StreamingConcat joins the items the client streams, in order", async (s) => {
        const connection = await s.connect();
        assert.equal(await streamingConcat(connection, ["Hello ", "world", "!"]), "Hello world!");
    });

    hubTest("StreamingConcat of a stream completed at once is the empty string", async (s) => {
        const connection = await s.connect();
        assert.equal(await streamingConcat(connection, []), "");
    });

    hubTest("an error the client streams reaches the hub as a HubException, and its text comes back", async (s) => {
        const connection = await s.connect();
        const result = streamingConcat(connection, ["Hello ", "world", "!"], (subject) => subject.error(new Error("Something bad")));
        await assert.rejects(result, {
            message: "An unexpected error occurred invoking 'StreamingConcat' on the server. HubException: Something bad",
        });
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });
});
