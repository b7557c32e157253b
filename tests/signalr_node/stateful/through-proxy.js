/**
 * The official client with stateful reconnect, driven by tests/signalr/transports/test_stateful_reconnect.py
 * through the TCP proxy that test runs between this client and the hub.
 *
 * It is not a case of the suite (the proxy and the hub live in the pytest test, which decides
 * when connections are cut); it talks to that test in JSON lines:
 * - stdout: {"event": "connected", "connectionId": ...} once started, then the outcome as
 *   {"event": "done", ...}, or {"event": "failed", "error": ...}. The client's own log goes to
 *   stderr.
 *
 * Environment: SERVER_URL (the proxy's base URL), MODE ("flow", "calls" or "away"), COUNT
 * (calls, and "Message" sends the server answers them with), PUSHES (server-to-client sends the
 * test makes, "flow" only), WINDOW (calls in flight, "calls" only), SIZE (bytes of each Echo's
 * text, "calls" only).
 *
 * Modes:
 * - flow: COUNT Echo calls and COUNT InvokeWithString sends, a few at a time, while the test
 *   pushes PUSHES "Push" messages and the proxy cuts the WebSocket again and again. It reports
 *   every echo, every "Message" and every "Push" in arrival order, how often the client lost its
 *   transport (onreconnecting: never, under stateful reconnect), and the connection id before
 *   and after.
 * - calls: COUNT Echo calls of SIZE bytes each, WINDOW of them in flight, nothing else: the
 *   replies outrun the client's once-a-second Acks and fill the server's replay buffer again
 *   and again. It reports whether every echo came back right, and the connection ids.
 * - away: stateful and automatic reconnect both on; the proxy cuts the socket and holds the
 *   client's attempt to come back until the server's disconnect timeout has passed. The client
 *   must fall back to an automatic reconnect: a new negotiate, a new connection id.
 */

import { randomBytes } from "node:crypto";

import { HttpTransportType, HubConnectionBuilder, LogLevel } from "@microsoft/signalr";

const url = `${process.env.SERVER_URL.replace(/\/+$/, "")}/testhub`;
const mode = process.env.MODE || "flow";
const count = Number(process.env.COUNT || "100");
const pushes = Number(process.env.PUSHES || "0");
// Calls in flight at once: enough that messages are on the wire both ways when a cut comes.
const WINDOW = 8;
// Only bounds a hang; the test's own deadline is the one that fails it.
const DEADLINE_MS = 60_000;

function say(event) {
    process.stdout.write(`${JSON.stringify(event)}\n`);
}

const logger = {
    log(level, message) {
        if (level >= LogLevel.Information) {
            process.stderr.write(`[${new Date().toISOString()}] ${LogLevel[level]}: ${message}\n`);
        }
    },
};

function build() {
    const builder = new HubConnectionBuilder()
        .withUrl(url, { transport: HttpTransportType.WebSockets })
        .withStatefulReconnect()
        .configureLogging(logger);
    if (mode === "away") {
        builder.withAutomaticReconnect([0, 0, 0]);
    }
    return builder.build();
}

function waitFor(what, predicate, onChange) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${what} within ${DEADLINE_MS} ms`)), DEADLINE_MS);
        onChange(() => {
            if (predicate()) {
                clearTimeout(timer);
                resolve();
            }
        });
    });
}

async function flow(connection) {
    const messages = [];
    const pushed = [];
    let reconnecting = 0;
    let changed = () => {};
    connection.on("Message", (text) => {
        messages.push(text);
        changed();
    });
    connection.on("Push", (number) => {
        pushed.push(number);
        changed();
    });
    connection.onreconnecting(() => reconnecting++);
    let closedWith = null;
    connection.onclose((error) => {
        closedWith = String(error);
        changed();
    });

    await connection.start();
    const first = await connection.invoke("GetCallerConnectionId");
    say({ event: "connected", connectionId: first });

    const echoes = new Array(count);
    let next = 0;
    async function worker() {
        while (next < count) {
            const i = next++;
            await connection.send("InvokeWithString", String(i));
            echoes[i] = await connection.invoke("Echo", String(i));
        }
    }
    await Promise.all(Array.from({ length: WINDOW }, worker));
    await waitFor(
        "last Message and Push",
        () => closedWith !== null || (messages.length >= count && pushed.length >= pushes),
        (fn) => {
            changed = fn;
            fn();
        },
    );
    if (closedWith !== null) {
        throw new Error(`the connection closed: ${closedWith}`);
    }
    const last = await connection.invoke("GetCallerConnectionId");
    await connection.stop();
    say({ event: "done", first, last, echoes, messages, pushed, reconnecting });
}

async function calls(connection) {
    const window = Number(process.env.WINDOW || "12");
    const size = Number(process.env.SIZE || "1024");
    let reconnecting = 0;
    connection.onreconnecting(() => reconnecting++);
    await connection.start();
    const first = await connection.invoke("GetCallerConnectionId");
    say({ event: "connected", connectionId: first });
    const started = Date.now();
    const wrong = [];
    let next = 0;
    async function worker() {
        while (next < count) {
            const i = next++;
            // Random text: permessage-deflate must not shrink it below the proxy's cuts.
            const text = `${i}:${randomBytes(size).toString("base64").slice(0, size)}`;
            const echo = await connection.invoke("Echo", text);
            if (echo !== text) {
                wrong.push(i);
            }
        }
    }
    await Promise.all(Array.from({ length: window }, worker));
    const seconds = (Date.now() - started) / 1000;
    const last = await connection.invoke("GetCallerConnectionId");
    await connection.stop();
    say({ event: "done", first, last, calls: count, wrong, seconds, reconnecting });
}

async function away(connection) {
    let reconnected = null;
    const back = new Promise((resolve) => {
        reconnected = resolve;
    });
    const events = [];
    connection.onreconnecting((error) => events.push(`reconnecting: ${error}`));
    connection.onreconnected((connectionId) => {
        events.push("reconnected");
        reconnected(connectionId);
    });
    connection.onclose((error) => events.push(`closed: ${error}`));

    await connection.start();
    const first = await connection.invoke("GetCallerConnectionId");
    say({ event: "connected", connectionId: first });
    const reconnectedId = await Promise.race([
        back,
        new Promise((_, reject) => setTimeout(() => reject(new Error("no reconnect")), DEADLINE_MS)),
    ]);
    const second = await connection.invoke("GetCallerConnectionId");
    const echo = await connection.invoke("Echo", "still here");
    await connection.stop();
    say({ event: "done", first, reconnectedId, second, echo, events });
}

const connection = build();
try {
    const modes = { flow, calls, away };
    await modes[mode](connection);
    process.exit(0);
} catch (error) {
    say({ event: "failed", error: String(error && error.stack ? error.stack : error) });
    process.exit(1);
}
