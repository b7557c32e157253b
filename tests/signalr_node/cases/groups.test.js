// Groups, broadcast and the serving worker: JoinGroup, LeaveGroup, SendToGroup (every member
// gets GroupMessage(name, message)), GroupCount, Broadcast (everyone gets Broadcast(message))
// and WorkerId (the serving process's pid).
//
// To show that a connection did NOT get a message, the case sends it a later Broadcast: the
// hub sends to one connection in order, so anything wrongly sent before would arrive first.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe } from "node:test";

import { hubTest } from "../lib/connections.js";
import { serverPid } from "../lib/server.js";
import { eventually } from "../lib/waiting.js";

/** Records every GroupMessage and Broadcast a connection receives, in order. */
function inbox(connection) {
    const received = [];
    connection.on("GroupMessage", (group, message) => received.push(["GroupMessage", group, message]));
    connection.on("Broadcast", (message) => received.push(["Broadcast", message]));
    return received;
}

/** Broadcasts a unique marker from `sender` and waits until each of `connections` has it. */
async function fence(sender, connections) {
    const marker = `fence ${randomUUID()}`;
    const arrivals = connections.map((connection) => waitForBroadcast(connection, marker));
    await sender.invoke("Broadcast", marker);
    await Promise.all(arrivals);
    return marker;
}

function waitForBroadcast(connection, marker) {
    return new Promise((resolve) => {
        const handler = (message) => {
            if (message === marker) {
                connection.off("Broadcast", handler);
                resolve();
            }
        };
        connection.on("Broadcast", handler);
    });
}

describe("groups and broadcast", () => {
    hubTest("SendToGroup reaches every member with GroupMessage(name, message), and no one else", async (s) => {
        const group = `room-${randomUUID()}`;
        const [a, b, outsider] = await Promise.all([s.connect(), s.connect(), s.connect()]);
        const inboxes = [a, b, outsider].map(inbox);
        await a.invoke("JoinGroup", group);
        await b.invoke("JoinGroup", group);
        await a.invoke("SendToGroup", group, "hello, room");
        const marker = await fence(a, [a, b, outsider]);
        assert.deepEqual(inboxes[0], [["GroupMessage", group, "hello, room"], ["Broadcast", marker]]);
        assert.deepEqual(inboxes[1], [["GroupMessage", group, "hello, room"], ["Broadcast", marker]]);
        assert.deepEqual(inboxes[2], [["Broadcast", marker]]);
    });

    hubTest("after LeaveGroup a connection no longer gets the group's messages", async (s) => {
        const group = `room-${randomUUID()}`;
        const [stays, leaves] = await Promise.all([s.connect(), s.connect()]);
        const inboxes = [stays, leaves].map(inbox);
        await stays.invoke("JoinGroup", group);
        await leaves.invoke("JoinGroup", group);
        await leaves.invoke("LeaveGroup", group);
        await leaves.invoke("SendToGroup", group, "after the leave");
        const marker = await fence(stays, [stays, leaves]);
        assert.deepEqual(inboxes[0], [["GroupMessage", group, "after the leave"], ["Broadcast", marker]]);
        assert.deepEqual(inboxes[1], [["Broadcast", marker]]);
    });

    hubTest("GroupCount follows joins, a leave and a member's disconnect", async (s) => {
        const group = `room-${randomUUID()}`;
        const [a, b, observer] = await Promise.all([s.connect(), s.connect(), s.connect()]);
        assert.equal(await observer.invoke("GroupCount", group), 0);
        await a.invoke("JoinGroup", group);
        await b.invoke("JoinGroup", group);
        assert.equal(await observer.invoke("GroupCount", group), 2);
        // Joining twice is still one membership.
        await b.invoke("JoinGroup", group);
        assert.equal(await observer.invoke("GroupCount", group), 2);
        await b.invoke("LeaveGroup", group);
        assert.equal(await observer.invoke("GroupCount", group), 1);
        // The hub learns of a disconnect after stop() returns; no event tells the observer when.
        await a.stop();
        await eventually(() => observer.invoke("GroupCount", group), (count) => count === 0, "the disconnected member leaving its group");
    });

    hubTest("Broadcast reaches every connection, the sender included", async (s) => {
        const connections = await Promise.all([s.connect(), s.connect(), s.connect()]);
        const message = `to everyone ${randomUUID()}`;
        const arrivals = connections.map((connection) => waitForBroadcast(connection, message));
        await connections[1].invoke("Broadcast", message);
        await Promise.all(arrivals);
    });

    hubTest("WorkerId is the serving process's pid, the same on every connection", async (s) => {
        const [a, b] = await Promise.all([s.connect(), s.connect()]);
        const [first, second] = await Promise.all([a.invoke("WorkerId"), b.invoke("WorkerId")]);
        assert.ok(Number.isInteger(first) && first > 0, `WorkerId returned ${JSON.stringify(first)}`);
        assert.equal(second, first);
        if (serverPid !== undefined) {
            assert.equal(first, serverPid);
        }
    });
});
