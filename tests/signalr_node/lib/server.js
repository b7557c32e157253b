/**
 * The conformance hub's plain HTTP routes, and the driver's control of the hub process.
 *
 * Rules: requests go only to SERVER_URL and SERVER_CONTROL_URL (both on this machine), with
 * Node's own fetch, so nothing here shares the SignalR client's cookies or headers.
 */

import assert from "node:assert/strict";

import { SERVER_URL } from "./connections.js";

/** GET a path on the hub's server: `{ status, text }`. */
export async function getText(path) {
    const response = await fetch(SERVER_URL + path);
    return { status: response.status, text: await response.text() };
}

/** A token that /authorizedhub accepts, from GET /generateJwtToken. */
export async function generateToken() {
    const { status, text } = await getText("/generateJwtToken");
    assert.equal(status, 200, `GET /generateJwtToken answered ${status}: ${text}`);
    assert.ok(text.length > 0, "GET /generateJwtToken answered an empty token");
    return text;
}

/** What GET /clientresult?id=... answers once the hub has asked the client's `Result` handler. */
export async function clientResult(connectionId) {
    const { status, text } = await getText(`/clientresult?id=${encodeURIComponent(connectionId)}`);
    assert.equal(status, 200, `GET /clientresult answered ${status}: ${text}`);
    return text;
}

/** The hub process's pid, when the driver says it (SERVER_PID). */
export const serverPid = process.env.SERVER_PID ? Number(process.env.SERVER_PID) : undefined;

const controlUrl = process.env.SERVER_CONTROL_URL?.replace(/\/+$/, "");

/**
 * The driver's control of the hub process, or undefined when this run has none.
 *
 * `stop("graceful")` sends the hub Ctrl-C and returns once it has exited (it must exit 0);
 * `stop("kill")` kills it; `start()` starts it again on the same port and returns its
 * `{ pid }` once it prints its URL.
 */
export const control = controlUrl && {
    async stop(how) {
        const response = await fetch(`${controlUrl}/stop?how=${how}`, { method: "POST" });
        assert.equal(response.status, 200, `the driver could not stop the hub: ${await response.text()}`);
    },
    async start() {
        const response = await fetch(`${controlUrl}/start`, { method: "POST" });
        const text = await response.text();
        assert.equal(response.status, 200, `the driver could not start the hub: ${text}`);
        return JSON.parse(text);
    },
};
