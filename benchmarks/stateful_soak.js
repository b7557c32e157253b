/**
 * The stateful-reconnect soak's clients (benchmarks/stateful_soak.py starts this): CLIENTS official
 * clients with withStatefulReconnect() and withAutomaticReconnect(), through the soak's cutting
 * proxy, each calling Echo every INTERVAL_MS and receiving the message the hub pushes (over the
 * backplane) for each call.
 *
 * Environment: SERVER_URL (the proxy), CLIENTS, DURATION_S, INTERVAL_MS, SIZE (bytes of text in each
 * Echo, and in the message pushed for it).
 * stdout: one JSON line at the end, with every client's figures summed up:
 * calls made, failed, latencies' percentiles, pushes expected, received, lost, duplicated or out
 * of order, and how often the clients fell back to a new connection (automatic reconnect).
 *
 * It uses the official client installed for the Node suite (`npm ci` in tests/signalr_node).
 */

import { createRequire } from "node:module";

const require = createRequire(new URL("../tests/signalr_node/package.json", import.meta.url));
const signalR = require("@microsoft/signalr");

const url = `${process.env.SERVER_URL.replace(/\/+$/, "")}/soak`;
const clients = Number(process.env.CLIENTS || "20");
const durationMs = Number(process.env.DURATION_S || "600") * 1000;
const intervalMs = Number(process.env.INTERVAL_MS || "200");
const padding = "x".repeat(Number(process.env.SIZE || "0"));

const totals = {
    calls: 0,
    failed: 0,
    pushesExpected: 0,
    pushesReceived: 0,
    pushesLost: 0,
    duplicates: 0,
    outOfOrder: 0,
    newConnections: 0,
    errors: {},
};
const latencies = [];

const logger = {
    log(level, message) {
        if (level >= signalR.LogLevel.Warning) {
            process.stderr.write(`[${new Date().toISOString()}] ${signalR.LogLevel[level]}: ${message}\n`);
        }
    },
};

async function client(index) {
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(url, { transport: signalR.HttpTransportType.WebSockets })
        .withStatefulReconnect()
        .withAutomaticReconnect({ nextRetryDelayInMilliseconds: () => 1000 })
        .configureLogging(logger)
        .build();
    // Pushes are numbered by the call that caused them; per connection id, since a new connection
    // (automatic reconnect) cannot have what was sent to the old one.
    const seen = new Set();
    let lastPushed = -1;
    connection.on("Pushed", (number) => {
        if (seen.has(number)) {
            totals.duplicates++;
            return;
        }
        seen.add(number);
        totals.pushesReceived++;
        if (number < lastPushed) {
            totals.outOfOrder++;
        }
        lastPushed = number;
    });
    connection.onreconnected(() => totals.newConnections++);
    await connection.start();
    const answered = new Set();
    const deadline = Date.now() + durationMs;
    let number = 0;
    const inFlight = [];
    while (Date.now() < deadline) {
        const n = number++;
        const started = Date.now();
        totals.calls++;
        inFlight.push(
            connection
                .invoke("Echo", n, `${index}:${n}:${padding}`)
                .then((echo) => {
                    latencies.push(Date.now() - started);
                    if (echo !== `${index}:${n}:${padding}`) {
                        throw new Error(`wrong echo ${echo}`);
                    }
                    answered.add(n);
                })
                .catch((error) => {
                    totals.failed++;
                    const key = String(error).slice(0, 120);
                    totals.errors[key] = (totals.errors[key] || 0) + 1;
                }),
        );
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
    await Promise.all(inFlight);
    // Give the last pushes a moment (they travel over the backplane, beside the Completions).
    await new Promise((resolve) => setTimeout(resolve, 2000));
    totals.pushesExpected += answered.size;
    for (const n of answered) {
        if (!seen.has(n)) {
            totals.pushesLost++;
        }
    }
    await connection.stop();
}

function percentile(sorted, p) {
    if (sorted.length === 0) {
        return null;
    }
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
latencies.sort((a, b) => a - b);
process.stdout.write(
    `${JSON.stringify({
        ...totals,
        p50_ms: percentile(latencies, 50),
        p99_ms: percentile(latencies, 99),
        max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    })}\n`,
);
process.exit(0);
