// withAutomaticReconnect across a restart of the hub's process, which the driver performs
// (SERVER_CONTROL_URL). It stops the hub every other case talks to, so this file runs alone,
// after the others. Without the driver's control the cases cannot run and say so.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MessageType } from "@microsoft/signalr";

import { countingProtocol, hubTest, reconnected, reconnecting } from "../lib/connections.js";
import { control } from "../lib/server.js";
import { within } from "../lib/waiting.js";

// Retry every 200 ms while the hub is down; give up after 20 s.
const RETRY_WHILE_DOWN = {
    nextRetryDelayInMilliseconds: ({ elapsedMilliseconds }) => (elapsedMilliseconds < 20_000 ? 200 : null),
};

/**
 * Connects, has the driver stop the hub `how`, checks the reconnecting state, restarts the hub
 * and checks the reconnected connection. Returns onreconnecting's error and the number of Close
 * messages the hub sent before it went.
 */
async function restartUnder(s, how) {
    const { protocol, received } = countingProtocol();
    const connection = await s.connect({ protocol, reconnect: RETRY_WHILE_DOWN });
    const before = connection.connectionId;
    const starting = reconnecting(connection);
    const done = reconnected(connection);
    let closedError = null;
    connection.onclose((error) => {
        closedError = error ?? new Error("closed without an error");
    });

    await control.stop(how);
    const error = await within(5000, starting, "onreconnecting after the hub stopped");
    const closeMessages = received.get(MessageType.Close) ?? 0;
    assert.equal(connection.state, "Reconnecting");
    const { pid } = await control.start();
    const connectionId = await within(20_000, done, "onreconnected after the hub started again");

    assert.equal(closedError, null, `the connection closed instead of reconnecting: ${closedError}`);
    assert.notEqual(connectionId, before);
    assert.equal(await connection.invoke("GetCallerConnectionId"), connectionId);
    assert.equal(await connection.invoke("Echo", "after the restart"), "after the restart");
    assert.equal(await connection.invoke("WorkerId"), pid, "WorkerId is not the new process's pid");
    return { error, closeMessages };
}

describe("server restart", () => {
    if (control === undefined) {
        test("needs the driver's control of the hub (SERVER_CONTROL_URL)", { skip: "run through tests/signalr/test_signalr_node.py" });
        return;
    }

    hubTest(
        "after a graceful restart (Ctrl-C) the client reconnects by itself: the hub said Close, allowing it",
        async (s) => {
            const { error, closeMessages } = await restartUnder(s, "graceful");
            // One Close before the hub went, with no error text; it allowed reconnecting, or the
            // client would have closed for good instead of reconnecting.
            assert.equal(closeMessages, 1, "the hub did not send exactly one Close message before it stopped");
            assert.equal(error, undefined, `onreconnecting reported ${error}`);
        },
        { timeout: 40_000 },
    );

    hubTest(
        "after the hub's process is killed the client reconnects by itself once it is back",
        async (s) => {
            const { closeMessages } = await restartUnder(s, "kill");
            assert.equal(closeMessages, 0);
        },
        { timeout: 40_000 },
    );
});
