// What a hub method requires of its caller: AdminOnly on /authorizedhub wants a token with the
// role admin (GET /generateJwtToken?role=admin); Limited on /testhub allows 5 calls a second per
// connection. A refused call rejects with the server's exact text; the connection stays open.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { HubConnectionState } from "@microsoft/signalr";

import { closed, hubTest } from "../lib/connections.js";
import { generateToken, getText } from "../lib/server.js";

const UNAUTHORIZED = "Failed to invoke 'AdminOnly' because user is unauthorized";
const RATE_LIMITED = /^Failed to invoke 'Limited' because of a rate limit: at most 5 call\(s\) per 1 s per connection; try again in \d+\.\d\d s$/;

/** A token whose identity has the role admin. */
async function adminToken() {
    const { status, text } = await getText("/generateJwtToken?role=admin");
    assert.equal(status, 200, `GET /generateJwtToken?role=admin answered ${status}: ${text}`);
    return text;
}

describe("requirements", () => {
    hubTest("AdminOnly with a token of the role admin returns 'admin'", async (s) => {
        const token = await adminToken();
        const connection = await s.connect({ path: "/authorizedhub", accessTokenFactory: () => token });
        assert.equal(await connection.invoke("AdminOnly"), "admin");
    });

    hubTest("AdminOnly without the role is refused with ASP.NET's text, and the connection stays open", async (s) => {
        const token = await generateToken();
        const connection = s.build({ path: "/authorizedhub", accessTokenFactory: () => token });
        const closing = closed(connection);
        await connection.start();
        await assert.rejects(connection.invoke("AdminOnly"), { message: UNAUTHORIZED });
        assert.equal(connection.state, HubConnectionState.Connected);
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
        await connection.stop();
        assert.equal(await closing, undefined);
    });

    hubTest("Limited: five calls at once are 'ok', more are refused as a rate limit, the connection stays open", async (s) => {
        const connection = await s.connect();
        // Ten calls at once: the bucket holds five, and refills at one per 0.2 s.
        const outcomes = await Promise.allSettled(Array.from({ length: 10 }, () => connection.invoke("Limited")));
        const ok = outcomes.filter((outcome) => outcome.status === "fulfilled");
        const refused = outcomes.filter((outcome) => outcome.status === "rejected");
        for (const outcome of ok) {
            assert.equal(outcome.value, "ok");
        }
        for (const outcome of refused) {
            assert.match(outcome.reason.message, RATE_LIMITED);
        }
        assert.ok(ok.length >= 5, `only ${ok.length} of 10 calls were let through`);
        assert.ok(refused.length >= 1, "ten calls at once all got through a limit of five a second");
        assert.equal(connection.state, HubConnectionState.Connected);
        assert.equal(await connection.invoke("Echo", "still open"), "still open");
    });

    hubTest("Limited counts per connection: another connection's calls are not refused", async (s) => {
        const first = await s.connect();
        const second = await s.connect();
        const flood = await Promise.allSettled(Array.from({ length: 10 }, () => first.invoke("Limited")));
        assert.ok(flood.some((outcome) => outcome.status === "rejected"));
        assert.equal(await second.invoke("Limited"), "ok");
    });
});
