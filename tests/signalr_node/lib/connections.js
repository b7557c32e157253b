/**
 * Connections to the conformance hub, for the one transport × protocol group this run tests.
 *
 * Rules of the suite (every case file follows them):
 * - A run tests one group: SIGNALR_TRANSPORT (WebSockets, ServerSentEvents, LongPolling) and
 *   SIGNALR_PROTOCOL (json, messagepack), against the hub at SERVER_URL. Unset, they mean
 *   WebSockets and json, the group issue 11 brings first.
 * - A case only exists in the groups it applies to (no case skips itself at run time), so a
 *   run's count of cases is the count of things checked. The one exception: the server-restart
 *   cases need the driver's control of the hub and say so when it is missing.
 * - Every connection a case opens comes from its Session, which stops it when the case ends
 *   (nothing keeps Node alive after a case) and, when the case fails, adds the client's own
 *   log to the failure, so the report shows what went over the wire.
 * - When the driver has shortened the hub's intervals (HUB_KEEP_ALIVE_INTERVAL and
 *   HUB_CLIENT_TIMEOUT, in seconds, as given to the hub), the client's keep-alive and server
 *   timeout are set to the same values, as ASP.NET's defaults pair them (15 s and 30 s).
 */

import { test } from "node:test";

import {
    DefaultHttpClient,
    HttpClient,
    HttpTransportType,
    HubConnectionBuilder,
    JsonHubProtocol,
    LogLevel,
} from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

import { Deferred, within } from "./waiting.js";

const TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"];
const PROTOCOLS = ["json", "messagepack"];

function fromEnvironment(name, allowed, fallback) {
    const value = process.env[name] || fallback;
    if (!allowed.includes(value)) {
        throw new Error(`${name} must be one of ${allowed.join(", ")}, not '${value}'`);
    }
    return value;
}

function requiredUrl() {
    const url = process.env.SERVER_URL;
    if (!url) {
        throw new Error("SERVER_URL is not set: give the conformance hub's base URL, e.g. http://127.0.0.1:5000");
    }
    return url.replace(/\/+$/, "");
}

function seconds(name) {
    const value = process.env[name];
    if (value === undefined || value === "") {
        return undefined;
    }
    const number = Number(value);
    if (!(number > 0)) {
        throw new Error(`${name} must be a number of seconds above 0, not '${value}'`);
    }
    return number * 1000;
}

/** The hub's base URL, without a trailing slash. */
export const SERVER_URL = requiredUrl();
/** The group under test. */
export const TRANSPORT_NAME = fromEnvironment("SIGNALR_TRANSPORT", TRANSPORTS, "WebSockets");
export const PROTOCOL_NAME = fromEnvironment("SIGNALR_PROTOCOL", PROTOCOLS, "json");
if (TRANSPORT_NAME === "ServerSentEvents" && PROTOCOL_NAME === "messagepack") {
    throw new Error("MessagePack is binary and Server-Sent Events carry text only: pick another SIGNALR_TRANSPORT");
}
export const TRANSPORT = HttpTransportType[TRANSPORT_NAME];
export const isWebSockets = TRANSPORT_NAME === "WebSockets";
export const isServerSentEvents = TRANSPORT_NAME === "ServerSentEvents";
export const isLongPolling = TRANSPORT_NAME === "LongPolling";
export const isJson = PROTOCOL_NAME === "json";
export const isMessagePack = PROTOCOL_NAME === "messagepack";

/** The hub's intervals in milliseconds, as the driver set them (undefined: the hub's defaults). */
export const hubTimings = {
    keepAliveInterval: seconds("HUB_KEEP_ALIVE_INTERVAL"),
    clientTimeout: seconds("HUB_CLIENT_TIMEOUT"),
    longPollingTimeout: seconds("HUB_LONG_POLLING_TIMEOUT"),
    disconnectTimeout: seconds("HUB_DISCONNECT_TIMEOUT"),
};

/** An absolute URL on the hub's server: `hubUrl("/testhub")`. */
export function hubUrl(path = "/testhub") {
    return SERVER_URL + path;
}

/** A fresh instance of the group's hub protocol. */
export function newProtocol() {
    return isMessagePack ? new MessagePackHubProtocol() : new JsonHubProtocol();
}

/**
 * Wraps a hub protocol to count the messages the client receives, by type (6 is Ping).
 *
 * Returns `{ protocol, received }`; `received` is a Map from message type to count. (What the
 * client sends cannot be counted here: it writes its Ping once and caches the bytes.)
 */
export function countingProtocol(inner = newProtocol()) {
    const received = new Map();
    // Name, version and transfer format come from the real protocol through the prototype.
    const protocol = Object.create(inner);
    protocol.parseMessages = (input, logger) => {
        const messages = inner.parseMessages(input, logger);
        for (const message of messages) {
            received.set(message.type, (received.get(message.type) ?? 0) + 1);
        }
        return messages;
    };
    return { protocol, received };
}

/**
 * The client's own HTTP client, recording every request it sends and how it ended.
 *
 * `requests` holds `{ method, url, status, size, error }` in the order they were sent; the rest
 * fills in when the request settles (`size`: the body's length; an aborted poll ends with an
 * AbortError in `error`).
 */
export class RecordingHttpClient extends HttpClient {
    constructor() {
        super();
        this._inner = new DefaultHttpClient(silentLogger);
        this.requests = [];
    }

    async send(request) {
        const entry = { method: request.method, url: request.url, status: undefined, size: undefined, error: undefined };
        this.requests.push(entry);
        try {
            const response = await this._inner.send(request);
            entry.status = response.statusCode;
            entry.size = response.content?.length ?? response.content?.byteLength ?? 0;
            return response;
        } catch (error) {
            entry.status = error.statusCode;
            entry.error = error;
            throw error;
        }
    }

    getCookieString(url) {
        return this._inner.getCookieString(url);
    }
}

const silentLogger = { log() {} };

/** The last lines a session's connections logged, kept for a failing case's report. */
class ClientLog {
    constructor(limit = 200) {
        this.limit = limit;
        this.lines = [];
        this.started = Date.now();
    }

    logger(label) {
        return {
            log: (level, message) => {
                const elapsed = String(Date.now() - this.started).padStart(6);
                // SignalR's JSON messages end in a record separator (0x1E): show it as one.
                this.lines.push(`${elapsed} ms ${label} ${LogLevel[level]}: ${String(message).replaceAll("\x1e", "␞")}`);
                if (this.lines.length > this.limit) {
                    this.lines.shift();
                }
            },
        };
    }
}

/** The connections one case opens; see the module's rules. */
export class Session {
    constructor() {
        this.connections = [];
        this.log = new ClientLog();
    }

    /**
     * A HubConnection for the group, not started yet.
     *
     * Options: `path` (default "/testhub") or a full `url`; `transport` (default: the group's;
     * `null` lets the client choose); `protocol`; `reconnect` (retry delays or a retry policy for
     * withAutomaticReconnect); and the client's own `accessTokenFactory`, `headers`,
     * `httpClient`, `skipNegotiation`, `WebSocket` and `EventSource`.
     */
    build({ path = "/testhub", url = hubUrl(path), transport = TRANSPORT, protocol = newProtocol(), reconnect, ...client } = {}) {
        const label = `c${this.connections.length + 1}`;
        const options = { logMessageContent: true, ...client };
        if (transport !== null) {
            options.transport = transport;
        }
        let builder = new HubConnectionBuilder()
            .configureLogging(this.log.logger(label))
            .withUrl(url, options)
            .withHubProtocol(protocol);
        if (hubTimings.keepAliveInterval !== undefined) {
            builder = builder.withKeepAliveInterval(hubTimings.keepAliveInterval);
        }
        if (hubTimings.clientTimeout !== undefined) {
            builder = builder.withServerTimeout(hubTimings.clientTimeout);
        }
        if (reconnect !== undefined) {
            builder = builder.withAutomaticReconnect(reconnect);
        }
        const connection = builder.build();
        this.connections.push(connection);
        return connection;
    }

    /** Like build(), then start(). */
    async connect(options) {
        const connection = this.build(options);
        await connection.start();
        return connection;
    }

    /** Stops every connection still running; stop() reports its own problems in the log. */
    async close() {
        const stopping = Promise.allSettled(this.connections.map((connection) => connection.stop()));
        // A stop() that hangs (a DELETE nobody answers) must not hold up the report.
        await within(5000, stopping, "stop() of every connection").catch(() => {});
    }

    /** The failure, with the client's log appended (the original's stack kept, without nesting it). */
    explain(error) {
        if (this.log.lines.length === 0) {
            return error;
        }
        const original = error instanceof Error ? error : new Error(String(error));
        const explained = new Error(`${original.message}\n\nclient log (last ${this.log.lines.length} lines):\n${this.log.lines.join("\n")}`);
        const frames = (original.stack ?? "").split("\n").filter((line) => /^\s+at /.test(line));
        explained.stack = [`${original.name}: ${explained.message}`, ...frames].join("\n");
        return explained;
    }
}

/** Resolves with the argument of the connection's first onclose. */
export function closed(connection) {
    const deferred = new Deferred();
    connection.onclose((error) => deferred.resolve(error));
    return deferred.promise;
}

/** Resolves with the argument of the connection's first onreconnecting. */
export function reconnecting(connection) {
    const deferred = new Deferred();
    connection.onreconnecting((error) => deferred.resolve(error));
    return deferred.promise;
}

/** Resolves with the connection id the first onreconnected reports. */
export function reconnected(connection) {
    const deferred = new Deferred();
    connection.onreconnected((connectionId) => deferred.resolve(connectionId));
    return deferred.promise;
}

/** Resolves with the arguments of the first call the server makes to the client's `method`. */
export function nextCall(connection, method) {
    const deferred = new Deferred();
    const handler = (...args) => {
        connection.off(method, handler);
        deferred.resolve(args);
    };
    connection.on(method, handler);
    return deferred.promise;
}

/**
 * One case: `body(session)` runs with a fresh Session, under a deadline of `timeout` ms.
 *
 * The name is what the report shows; say the behaviour the case pins. At the deadline the
 * session stops its connections, which fails whatever the body still awaits from them, so
 * nothing keeps Node running after the case (node:test's own timeout, a little later, is
 * only a safety net: it reports the case but leaves its work running).
 */
export function hubTest(name, body, { timeout = 20_000 } = {}) {
    test(name, { timeout: timeout + 10_000 }, async () => {
        const session = new Session();
        try {
            await within(timeout, body(session), `end of the case within its deadline`);
        } catch (error) {
            throw session.explain(error);
        } finally {
            await session.close();
        }
    });
}
