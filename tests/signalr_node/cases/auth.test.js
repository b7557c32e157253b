// /authorizedhub: a token from GET /generateJwtToken lets a client in (sent as a bearer header,
// or as access_token where the transport cannot carry headers); no token, or a forged one, is
// refused at negotiate with 401.

import assert from "node:assert/strict";
import { describe } from "node:test";

import { closed, hubTest } from "../lib/connections.js";
import { generateToken } from "../lib/server.js";

const MESSAGE = "你好，世界！";
const UNAUTHORIZED = "Failed to complete negotiation with the server: Error: Unauthorized: Status code '401'";

describe("auth", () => {
    hubTest("a token from /generateJwtToken opens /authorizedhub, where Echo works", async (s) => {
        const token = await generateToken();
        const connection = s.build({ path: "/authorizedhub", accessTokenFactory: () => token });
        const closing = closed(connection);
        await connection.start();
        assert.equal(await connection.invoke("Echo", MESSAGE), MESSAGE);
        await connection.stop();
        assert.equal(await closing, undefined);
    });

    hubTest("an async token factory (fetching the token itself) opens /authorizedhub", async (s) => {
        const connection = await s.connect({ path: "/authorizedhub", accessTokenFactory: generateToken });
        assert.equal(await connection.invoke("Echo", MESSAGE), MESSAGE);
    });

    hubTest("GetUserNameIdentifier on /authorizedhub is the token's user, 'testuser'", async (s) => {
        const token = await generateToken();
        const connection = await s.connect({ path: "/authorizedhub", accessTokenFactory: () => token });
        assert.equal(await connection.invoke("GetUserNameIdentifier"), "testuser");
    });

    hubTest("without a token, start() fails with the exact 401 text", async (s) => {
        const connection = s.build({ path: "/authorizedhub" });
        await assert.rejects(connection.start(), { message: UNAUTHORIZED });
    });

    hubTest("a forged token is refused at negotiate with the same 401 text", async (s) => {
        const token = await generateToken();
        // A JWT keeps its header and claims but gets another signature; any other token gets longer.
        const forged = token.split(".").length === 3 ? token.replace(/[^.]*$/, "c2lnbmVkIGJ5IHNvbWVvbmUgZWxzZQ") : `${token}x`;
        assert.notEqual(forged, token);
        const connection = s.build({ path: "/authorizedhub", accessTokenFactory: () => forged });
        await assert.rejects(connection.start(), { message: UNAUTHORIZED });
    });
});
