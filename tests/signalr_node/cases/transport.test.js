// What depends on the transport: the server timeout, cookies, headers, paths, negotiate
// redirects, skipNegotiation (WebSockets), the DELETE that ends a long poll, the hub that
// refuses WebSockets (/testhub-nowebsockets) and falling back when WebSockets cannot start.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { HttpTransportType } from "@microsoft/signalr";
import { getUserAgentHeader } from "@microsoft/signalr/dist/cjs/Utils.js";

import {
    SERVER_URL,
    TRANSPORT_NAME,
    RecordingHttpClient,
    closed,
    hubTest,
    isJson,
    isLongPolling,
    isMessagePack,
    isServerSentEvents,
    isWebSockets,
} from "../lib/connections.js";

/** A WebSocket or EventSource constructor that always fails, as a proxy that blocks them would. */
function blocked(what) {
    return class {
        constructor() {
            throw new Error(`${what} blocked by the test`);
        }
    };
}

describe("transport", () => {
    hubTest(`GetActiveTransportName is '${TRANSPORT_NAME}', the transport this group pins`, async (s) => {
        const connection = await s.connect();
        assert.equal(await connection.invoke("GetActiveTransportName"), TRANSPORT_NAME);
    });

    hubTest("hub paths match case-insensitively (/TestHub is /testhub)", async (s) => {
        const connection = await s.connect({ path: "/TestHub" });
        assert.equal(await connection.invoke("Echo", "mixed case"), "mixed case");
    });

    if (!isLongPolling) {
        // Long Polling has no server timeout: each poll is its own keep-alive.
        hubTest("the client's server timeout ends the connection with its own error", async (s) => {
            const connection = s.build();
            const closing = closed(connection);
            await connection.start();
            // Set after start(), so the handshake's own round trip cannot trip it.
            connection.serverTimeoutInMilliseconds = 1;
            await connection.invoke("Echo", "");
            const error = await closing;
            assert.equal(error?.message, "Server timeout elapsed without receiving a message from the server.");
        });
    }

    hubTest("cookies set by negotiate come back on the transport's requests", async (s) => {
        const connection = await s.connect();
        assert.equal(await connection.invoke("GetCookie", "testCookie"), "testValue");
        assert.equal(await connection.invoke("GetCookie", "testCookie2"), "testValue2");
    });

    hubTest("an expired cookie set by negotiate is not sent back", async (s) => {
        const connection = await s.connect();
        assert.equal(await connection.invoke("GetCookie", "expiredCookie"), null);
    });

    hubTest("the client's User-Agent header reaches the hub", async (s) => {
        const [name, value] = getUserAgentHeader();
        const connection = await s.connect();
        assert.equal(await connection.invoke("GetHeader", name), value);
    });

    hubTest("headers from the options replace the library's own and reach the hub", async (s) => {
        const [name] = getUserAgentHeader();
        const connection = await s.connect({ headers: { [name]: "Custom Agent", "X-HEADER": "VALUE" } });
        assert.equal(await connection.invoke("GetHeader", name), "Custom Agent");
        assert.equal(await connection.invoke("GetHeader", "X-HEADER"), "VALUE");
    });

    hubTest("a negotiate redirect leads to the hub it names, and the connection id is the server's", async (s) => {
        const url = `${SERVER_URL}/redirect?numRedirects=0&baseUrl=${encodeURIComponent(SERVER_URL)}`;
        const connection = await s.connect({ url });
        assert.ok((await connection.invoke("GetNumRedirects")) >= 1, "the hub was not reached through the redirect");
        assert.equal(await connection.invoke("GetCallerConnectionId"), connection.connectionId);
    });

    if (isWebSockets) {
        hubTest("skipNegotiation opens the WebSocket directly; the connection id stays null throughout", async (s) => {
            const connection = s.build({ skipNegotiation: true });
            assert.equal(connection.connectionId, null);
            await connection.start();
            assert.equal(connection.connectionId, null);
            assert.equal(await connection.invoke("Echo", "no negotiate"), "no negotiate");
            assert.equal(await connection.invoke("GetActiveTransportName"), "WebSockets");
            await connection.stop();
            assert.equal(connection.connectionId, null);
        });
    }

    if (isLongPolling) {
        hubTest("stop() ends the poll and sends DELETE, answered 202, after which the id is unknown (404)", async (s) => {
            const http = new RecordingHttpClient();
            const connection = await s.connect({ httpClient: http });
            assert.equal(await connection.invoke("Echo", "before the stop"), "before the stop");
            await connection.stop();

            const polls = http.requests.filter((request) => request.method === "GET");
            assert.equal(polls[0]?.status, 200, "the first poll was not answered 200");
            const open = polls.filter((poll) => poll.status === undefined && poll.error === undefined);
            assert.deepEqual(open, [], "a poll was still open after stop()");
            const deletes = http.requests.filter((request) => request.method === "DELETE");
            assert.equal(deletes.length, 1, "stop() did not send exactly one DELETE");
            assert.equal(deletes[0].status, 202);

            const after = await fetch(`${deletes[0].url}&_=${Date.now()}`);
            assert.equal(after.status, 404, "a poll with the deleted connection's id was not answered 404");
        });

        hubTest("Long Polling works on /testhub-nowebsockets", async (s) => {
            const connection = await s.connect({ path: "/testhub-nowebsockets" });
            assert.equal(await connection.invoke("GetActiveTransportName"), "LongPolling");
        });
    }

    if (isServerSentEvents && isJson) {
        hubTest("on /testhub-nowebsockets a client free to choose picks Server-Sent Events for JSON", async (s) => {
            const connection = await s.connect({ path: "/testhub-nowebsockets", transport: null });
            assert.equal(await connection.invoke("GetActiveTransportName"), "ServerSentEvents");
        });
    }

    if (isLongPolling && isMessagePack) {
        hubTest("on /testhub-nowebsockets a client free to choose skips Server-Sent Events for MessagePack", async (s) => {
            const connection = await s.connect({ path: "/testhub-nowebsockets", transport: null });
            assert.equal(await connection.invoke("GetActiveTransportName"), "LongPolling");
        });
    }

    if (!isWebSockets) {
        hubTest("/testhub-nowebsockets does not offer WebSockets to a client that asks only for them", async (s) => {
            const connection = s.build({ path: "/testhub-nowebsockets", transport: HttpTransportType.WebSockets });
            await assert.rejects(connection.start(), (error) => {
                assert.match(error.message, /^Unable to connect to the server with any of the available transports\./);
                assert.doesNotMatch(error.message, /WebSockets failed/);
                return true;
            });
        });

        // The client tries what negotiate offers in order and negotiates again after a failure.
        const fallback = isServerSentEvents
            ? { WebSocket: blocked("WebSocket") }
            : isJson
              ? { WebSocket: blocked("WebSocket"), EventSource: blocked("EventSource") }
              : { WebSocket: blocked("WebSocket") };
        const skipped = Object.keys(fallback).join(" and ");
        hubTest(`when ${skipped} cannot start, a client free to choose falls back to ${TRANSPORT_NAME}`, async (s) => {
            const connection = await s.connect({ transport: null, ...fallback });
            assert.equal(await connection.invoke("GetActiveTransportName"), TRANSPORT_NAME);
            assert.equal(await connection.invoke("Echo", "fell back"), "fell back");
        });
    }
});
