// Client-to-server streams: a Subject passed as an argument streams its items to the hub.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { Subject } from "@microsoft/signalr";

import { hubTest } from "../lib/connections.js";

describe("client-to-server streams", () => {
    hubTest("StreamingConcat joins the items the client streams, in order", async (s) => {
        const connection = await s.connect();
        const subject = new Subject();
        const result = connection.invoke("StreamingConcat", subject);
        subject.next("Hello ");
        subject.next("world");
        subject.next("!");
        subject.complete();
        assert.equal(await result, "Hello world!");
    });

    hubTest("StreamingConcat of a stream completed at once is the empty string", async (s) => {
        const connection = await s.connect();
        const subject = new Subject();
        const result = connection.invoke("StreamingConcat", subject);
        subject.complete();
        assert.equal(await result, "");
    });

    hubTest("an error the client streams reaches the hub as a HubException, and its text comes back", async (s) => {
        const connection = await s.connect();
        const subject = new Subject();
        const result = connection.invoke("StreamingConcat", subject);
        subject.next("Hello ");
        subject.next("world");
        subject.next("!");
        subject.error(new Error("Something bad"));
        await assert.rejects(result, {
            message: "An unexpected error occurred invoking 'StreamingConcat' on the server. HubException: Something bad",
        });
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });
});
