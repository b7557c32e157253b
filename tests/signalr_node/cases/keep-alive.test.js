// Idle connections stay connected: the case waits longer than every keep-alive interval and
// timeout of this transport added together, then checks that nothing ended or replaced it.
//
// The driver shortens the hub's intervals on its command line and says so in HUB_* (seconds);
// the client's keep-alive and server timeout follow them (see lib/connections.js). On
// WebSockets and Server-Sent Events both sides ping; on Long Polling nobody pings, and each
// poll the hub holds past its poll timeout is answered empty and issued again.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { MessageType } from "@microsoft/signalr";

import { RecordingHttpClient, countingProtocol, hubTest, hubTimings, isLongPolling } from "../lib/connections.js";
import { pause } from "../lib/waiting.js";

// ASP.NET's defaults stand in for intervals the driver did not shorten.
const keepAlive = hubTimings.keepAliveInterval ?? 15_000;
const clientTimeout = hubTimings.clientTimeout ?? 30_000;
const pollTimeout = hubTimings.longPollingTimeout ?? 90_000;
const disconnectTimeout = hubTimings.disconnectTimeout ?? 15_000;

// The server's keep-alive and client timeout, then the client's, which equal them.
const intervals = isLongPolling ? [pollTimeout, disconnectTimeout] : [keepAlive, clientTimeout, keepAlive, clientTimeout];
const idle = intervals.reduce((sum, interval) => sum + interval, 0) + 500;

describe("keep-alive", () => {
    hubTest(
        `an idle connection stays connected for ${idle} ms, longer than all its intervals together`,
        async (s) => {
            const { protocol, received } = countingProtocol();
            const http = new RecordingHttpClient();
            const connection = await s.connect({ protocol, httpClient: http });
            const ended = [];
            connection.onclose((error) => ended.push(`closed: ${error}`));
            connection.onreconnecting((error) => ended.push(`reconnecting: ${error}`));
            const before = await connection.invoke("GetCallerConnectionId");
            const pollsBefore = http.requests.length;

            await pause(idle);

            assert.deepEqual(ended, [], "the idle connection ended");
            assert.equal(connection.state, "Connected");
            assert.equal(await connection.invoke("GetCallerConnectionId"), before, "the hub replaced the idle connection");
            assert.equal(await connection.invoke("Echo", "after the idle time"), "after the idle time");
            const pings = received.get(MessageType.Ping) ?? 0;
            if (isLongPolling) {
                assert.equal(pings, 0, "the hub sent pings over Long Polling");
                const emptyPolls = http.requests
                    .slice(pollsBefore)
                    .filter((request) => request.method === "GET" && request.status === 200 && request.size === 0);
                const expected = Math.floor(idle / pollTimeout) - 1;
                assert.ok(emptyPolls.length >= expected, `${emptyPolls.length} polls timed out empty while idle, expected ${expected} or more`);
            } else {
                // The hub must have pinged at least once per client timeout, or the client would have given up.
                const expected = Math.floor(idle / clientTimeout);
                assert.ok(pings >= expected, `the hub sent ${pings} pings while idle, expected ${expected} or more`);
            }
        },
        { timeout: idle + 20_000 },
    );
});
