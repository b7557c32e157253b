// Automatic reconnect the client starts itself (its server timeout, forced): a new negotiate, a
// new connection id that matches the server's, a changed URL, a redirect followed again, and
// skipNegotiation kept. A server that restarts is in ../serial/server-restart.test.js.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { SERVER_URL, hubTest, hubUrl, isWebSockets, reconnected, reconnecting } from "../lib/connections.js";
import { within } from "../lib/waiting.js";

const RETRY_DELAYS = [0, 200, 500, 1000];
const TIMEOUT_ERROR = "Server timeout elapsed without receiving a message from the server.";

/** What the client does when the server stays silent too long: it starts its automatic reconnect. */
function forceServerTimeout(connection) {
    // The official tests call this private method too; it is what the timeout timer calls.
    connection.serverTimeout();
}

/** Forces a reconnect and returns `{ error, connectionId }` from onreconnecting and onreconnected. */
async function reconnectNow(connection) {
    const starting = reconnecting(connection);
    const done = reconnected(connection);
    forceServerTimeout(connection);
    const error = await within(5000, starting, "onreconnecting");
    const connectionId = await within(10_000, done, "onreconnected");
    return { error, connectionId };
}

describe("reconnect", () => {
    hubTest("after its server timeout the client reconnects by itself, as a new connection that works", async (s) => {
        const connection = await s.connect({ reconnect: RETRY_DELAYS });
        const before = connection.connectionId;
        const { error, connectionId } = await reconnectNow(connection);
        assert.equal(error?.message, TIMEOUT_ERROR);
        assert.notEqual(connectionId, before);
        assert.equal(connection.state, "Connected");
        assert.equal(await connection.invoke("Echo", "test"), "test");
    });

    hubTest("connectionId is null before start(), the server's after start and after a reconnect, null after stop()", async (s) => {
        const connection = s.build({ reconnect: RETRY_DELAYS });
        assert.equal(connection.connectionId, null);
        await connection.start();
        assert.notEqual(connection.connectionId, null);
        assert.equal(await connection.invoke("GetCallerConnectionId"), connection.connectionId);
        const before = connection.connectionId;
        const { connectionId } = await reconnectNow(connection);
        assert.notEqual(connectionId, before);
        assert.equal(connection.connectionId, connectionId);
        assert.equal(await connection.invoke("GetCallerConnectionId"), connectionId);
        await connection.stop();
        assert.equal(connection.connectionId, null);
    });

    hubTest("a URL changed while reconnecting is the one the client reconnects to", async (s) => {
        const connection = await s.connect({ reconnect: RETRY_DELAYS });
        const changedUrl = `${hubUrl("/TESTHUB")}?numRedirects=5`;
        connection.onreconnecting(() => {
            connection.baseUrl = changedUrl;
        });
        await reconnectNow(connection);
        assert.equal(connection.baseUrl, changedUrl);
        assert.equal(await connection.invoke("GetNumRedirects"), 5);
    });

    hubTest("a reconnect after a negotiate redirect follows the redirect again", async (s) => {
        const url = `${SERVER_URL}/redirect?numRedirects=0&baseUrl=${encodeURIComponent(SERVER_URL)}`;
        const connection = await s.connect({ url, reconnect: RETRY_DELAYS });
        const redirectsBefore = await connection.invoke("GetNumRedirects");
        const before = connection.connectionId;
        const { connectionId } = await reconnectNow(connection);
        assert.notEqual(connectionId, before);
        assert.equal(await connection.invoke("GetCallerConnectionId"), connectionId);
        const redirectsAfter = await connection.invoke("GetNumRedirects");
        assert.ok(redirectsAfter > redirectsBefore, `GetNumRedirects went from ${redirectsBefore} to ${redirectsAfter}`);
    });

    if (isWebSockets) {
        hubTest("a reconnect after skipNegotiation skips it again: onreconnected has no id, and Echo works", async (s) => {
            const connection = await s.connect({ skipNegotiation: true, reconnect: RETRY_DELAYS });
            const { connectionId } = await reconnectNow(connection);
            assert.equal(connectionId, undefined);
            assert.equal(await connection.invoke("Echo", "test"), "test");
        });
    }
});
