// The conformance app's /echo: a connection handler (map_connection), no hub. The official
// client's HttpConnection (what HubConnection runs on) sends raw text over each transport and
// gets it back. Raw connections do not depend on the hub protocol, so these cases run in the
// JSON group of each transport; the ones that do not depend on the transport either (a plain
// WebSocket, the negotiate redirect, the refused negotiate) run once, in websockets-json.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { TransferFormat } from "@microsoft/signalr";
import { HttpConnection } from "@microsoft/signalr/dist/cjs/HttpConnection.js";
import WebSocket from "ws";

import { SERVER_URL, TRANSPORT, TRANSPORT_NAME, hubTest, isJson, isWebSockets } from "../lib/connections.js";
import { Deferred } from "../lib/waiting.js";

/** A raw connection to `path` (the group's transport, or the client's choice with `null`). */
function rawConnection(session, path = "/echo", transport = TRANSPORT) {
    const options = { logger: session.log.logger("raw"), logMessageContent: true };
    if (transport !== null) {
        options.transport = transport;
    }
    const connection = new HttpConnection(`${SERVER_URL}${path}`, options);
    const received = [];
    const arrivals = [];
    connection.onreceive = (data) => {
        received.push(data);
        arrivals.splice(0).forEach((deferred) => deferred.resolve());
    };
    const closing = new Deferred();
    connection.onclose = (error) => closing.resolve(error);
    session.connections.push({ stop: () => connection.stop() });
    return {
        connection,
        closed: closing.promise,
        /** Everything received so far, joined: the server may join what it echoes. */
        text: () => received.join(""),
        /** Resolves once the joined text is `expected`. */
        async receivedText(expected) {
            while (this.text() !== expected) {
                assert.ok(expected.startsWith(this.text()), `received '${this.text()}', expected '${expected}'`);
                const next = new Deferred();
                arrivals.push(next);
                await next.promise;
            }
        },
    };
}

if (isJson) {
    describe(`connection handler over ${TRANSPORT_NAME}`, () => {
        hubTest(`a raw connection to /echo gets its text back over ${TRANSPORT_NAME}, then stops cleanly`, async (s) => {
            const raw = rawConnection(s);
            await raw.connection.start(TransferFormat.Text);
            await raw.connection.send("Hello World!");
            await raw.receivedText("Hello World!");
            await raw.connection.stop();
            assert.equal(await raw.closed, undefined);
        });

        hubTest("what a raw connection sends comes back in order, UTF-8 intact", async (s) => {
            const raw = rawConnection(s);
            await raw.connection.start(TransferFormat.Text);
            const parts = ["你好，", "世界", "！", " 1", " 2", " 3"];
            for (const part of parts) {
                await raw.connection.send(part);
            }
            await raw.receivedText(parts.join(""));
            await raw.connection.stop();
            assert.equal(await raw.closed, undefined);
        });

        hubTest("/echo's path matches in any case, as a hub's does", async (s) => {
            const raw = rawConnection(s, "/Echo");
            await raw.connection.start(TransferFormat.Text);
            await raw.connection.send("case");
            await raw.receivedText("case");
        });
    });
}

if (isWebSockets && isJson) {
    describe("connection handler, any transport", () => {
        hubTest("a plain WebSocket to /echo (no negotiate) gets its message back; a Close without a code is answered with 1000", async () => {
            const socket = new WebSocket(`${SERVER_URL.replace(/^http/, "ws")}/echo`);
            const echoed = new Deferred();
            const ended = new Deferred();
            socket.onopen = () => socket.send("message");
            socket.onmessage = (event) => echoed.resolve(event.data);
            socket.onclose = (event) => ended.resolve(event);
            socket.onerror = (event) => echoed.reject(event.error ?? new Error("WebSocket error"));
            assert.equal(String(await echoed.promise), "message");
            socket.close(); // a Close frame with no status code
            const event = await ended.promise;
            assert.equal(event.code, 1000);
            assert.equal(event.wasClean, true);
        });

        hubTest("a negotiate redirected from /echoredirect to /echo is followed", async (s) => {
            const raw = rawConnection(s, "/echoredirect", null);
            await raw.connection.start(TransferFormat.Text);
            await raw.connection.send("Hello World!");
            await raw.receivedText("Hello World!");
            await raw.connection.stop();
            assert.equal(await raw.closed, undefined);
        });

        hubTest("a negotiate refused with 400 carries the server's text into the client's error", async (s) => {
            const raw = rawConnection(s, "/bad-negotiate", null);
            await assert.rejects(raw.connection.start(TransferFormat.Text), {
                message: "Failed to complete negotiation with the server: Error: Some response from server: Status code '400'",
            });
        });
    });
}
