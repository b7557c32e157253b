// The hub benchmarks' load generator: real hub clients in Node, on a core of their own.
//
//   node load.js --kind signalr|socketio --url URL --scenarios echo-one,echo-many,echo-pipe,fanout,idle
//                [--transport websockets|sse|longpolling] [--protocol json|messagepack]
//                [--server-pids 12,34] ...
//
// `python -m benchmarks.hubs` runs it against a server that is already
// listening; it prints one JSON object per scenario on stdout, one a line.
//
// Rules:
// * Clients are the ones people use: `@microsoft/signalr` for SignalR
//   servers, `socket.io-client` for socket.io. Nothing is faked on the wire,
//   so the generator costs what a client costs, and its own CPU share
//   (`client_cpu`, CPU seconds over wall seconds) is reported beside the
//   server's (`server_cpu`): a generator near 1.0 was the bottleneck.
// * Every reply is checked: an echo must come back as it was sent, and every
//   client must receive every broadcast exactly once and whole (`reordered`
//   counts those that overtook another one in flight). Anything else ends
//   the run with an error (exit status 1).
// * Figures count only what happens inside the measured window, after a
//   warm-up; latencies are measured on this process's clock.
// * WebSockets never use permessage-deflate: the servers would spend their
//   time compressing 32-byte messages, which is not what is compared.

"use strict";

const fs = require("node:fs");
const { parseArgs } = require("node:util");
const { performance } = require("node:perf_hooks");

const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
const { io } = require("socket.io-client");
// The `ws` that @microsoft/signalr itself uses in Node.
const WebSocket = require(require.resolve("ws", { paths: [require.resolve("@microsoft/signalr")] }));

const { values: args } = parseArgs({
  options: {
    kind: { type: "string" },
    url: { type: "string" },
    transport: { type: "string", default: "websockets" },
    protocol: { type: "string", default: "json" },
    scenarios: { type: "string", default: "echo-one,echo-many,echo-pipe,fanout,idle" },
    "echo-clients": { type: "string", default: "50" },
    "pipe-depth": { type: "string", default: "16" },
    "idle-clients": { type: "string", default: "5000" },
    "fanout-clients": { type: "string", default: "1000" },
    "fanout-window": { type: "string", default: "4" },
    payload: { type: "string", default: "32" },
    warmup: { type: "string", default: "0.3" },
    duration: { type: "string", default: "2" },
    "connect-batch": { type: "string", default: "50" },
    "server-pids": { type: "string", default: "" },
    "clk-tck": { type: "string", default: "100" },
    "text-frames": { type: "boolean", default: false },
  },
});

const PAYLOAD = Number(args.payload);
const WARMUP = Number(args.warmup) * 1000;
const DURATION = Number(args.duration) * 1000;
const LONGEST_WINDOW = Math.max(DURATION, 10000);
const CONNECT_BATCH = Number(args["connect-batch"]);
const SERVER_PIDS = args["server-pids"].split(",").filter(Boolean).map(Number);
const CLK_TCK = Number(args["clk-tck"]);
// A broadcast that has not reached every client after this long is lost.
const STALL_MS = 15000;
const FILLER = "hello, trio_ws! ".repeat(Math.ceil(PAYLOAD / 16) + 4);

function fail(error) {
  process.stderr.write(`load generator: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
}
process.on("unhandledRejection", fail);

// -- the server's process, from /proc ---------------------------------------------

function serverCpuSeconds() {
  let ticks = 0;
  for (const pid of SERVER_PIDS) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]); // utime and stime: fields 14 and 15 of stat(5)
  }
  return ticks / CLK_TCK;
}

function serverRssBytes() {
  let kib = 0;
  for (const pid of SERVER_PIDS) {
    const match = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    kib += match ? Number(match[1]) : 0;
  }
  return kib * 1024;
}

function ownCpuSeconds() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolve once the server uses under 5% of a CPU over 50 ms (or after 10 s): the last scenario's teardown is over. */
async function serverIdle() {
  const deadline = performance.now() + 10000;
  while (SERVER_PIDS.length && performance.now() < deadline) {
    const before = serverCpuSeconds();
    await sleep(50);
    if (serverCpuSeconds() - before < 0.0025) return;
  }
}

// -- clients ----------------------------------------------------------------------

/** `ws` without permessage-deflate; with `textFrames`, Binary frames reach the client as text. */
function webSocketClass(textFrames) {
  return class BenchWebSocket extends WebSocket {
    constructor(url, protocols, options) {
      super(url, protocols, { ...options, perMessageDeflate: false });
    }

    set onmessage(handler) {
      // aiosignalr sends JSON in Binary frames, which @microsoft/signalr cannot parse
      // ("textData.substring is not a function"); the JSON protocol is text, so decode it here.
      this.on("message", (data) => handler({ data: textFrames && typeof data !== "string" ? data.toString("utf8") : data }));
    }
  };
}

const BenchWebSocket = webSocketClass(args["text-frames"]);

const SIGNALR_TRANSPORTS = {
  websockets: signalR.HttpTransportType.WebSockets,
  sse: signalR.HttpTransportType.ServerSentEvents,
  longpolling: signalR.HttpTransportType.LongPolling,
};
const SOCKETIO_TRANSPORTS = { websockets: "websocket", longpolling: "polling" };

/** One SignalR hub connection; methods and client handlers are called "Echo", "Broadcast". */
async function openSignalR(onClosed) {
  const transport = SIGNALR_TRANSPORTS[args.transport];
  if (transport === undefined) throw new Error(`no SignalR transport ${args.transport}`);
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(args.url, { transport, WebSocket: BenchWebSocket })
    .configureLogging(signalR.LogLevel.None);
  if (args.protocol === "messagepack") builder = builder.withHubProtocol(new MessagePackHubProtocol());
  else if (args.protocol !== "json") throw new Error(`no SignalR protocol ${args.protocol}`);
  const connection = builder.build();
  connection.onclose((error) => onClosed(error || "the server closed the connection"));
  await connection.start();
  return {
    invoke: (method, arg) => connection.invoke(method, arg),
    on: (method, handler) => connection.on(method, handler),
    stop: () => connection.stop(),
  };
}

/** One socket.io client; events are "echo", "broadcast", and an echo's reply is its ack. */
async function openSocketIO(onClosed) {
  const transport = SOCKETIO_TRANSPORTS[args.transport];
  if (transport === undefined) throw new Error(`socket.io has no transport ${args.transport}`);
  const socket = io(args.url, {
    transports: [transport],
    upgrade: false,
    reconnection: false,
    forceNew: true,
    perMessageDeflate: false,
  });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  socket.on("disconnect", (reason) => onClosed(reason));
  return {
    invoke: (method, arg) => socket.emitWithAck(method.toLowerCase(), arg),
    on: (method, handler) => socket.on(method.toLowerCase(), handler),
    stop: async () => {
      socket.disconnect();
    },
  };
}

const open = { signalr: openSignalR, socketio: openSocketIO }[args.kind];
if (!open) fail(`unknown --kind ${args.kind}`);

let closing = false;

function onClosed(reason) {
  if (!closing) fail(`a client lost its connection: ${reason}`);
}

/** Open `count` clients, `CONNECT_BATCH` at a time, so no server sees a storm it would refuse. */
async function openClients(count) {
  const clients = [];
  while (clients.length < count) {
    const batch = Math.min(CONNECT_BATCH, count - clients.length);
    clients.push(...(await Promise.all(Array.from({ length: batch }, () => open(onClosed)))));
  }
  return clients;
}

async function closeClients(clients) {
  closing = true;
  for (let i = 0; i < clients.length; i += CONNECT_BATCH) {
    await Promise.all(clients.slice(i, i + CONNECT_BATCH).map((c) => c.stop()));
  }
  closing = false;
  await serverIdle();
}

// -- measuring --------------------------------------------------------------------

/** The measured window: starts after the warm-up, ends `DURATION` later; counts what lands inside.
 * A window that has seen nothing land by then (a short --quick window on a busy machine, a slow
 * transport) lasts until the first thing does, at most `LONGEST_WINDOW` ms: a rate of 0 would say
 * the server did nothing, which is not what happened. */
function measuredWindow() {
  const window = { measuring: false, stopping: false, count: 0, latencies: [] };
  window.over = new Promise((resolve) => {
    const close = () => {
      window.measuring = false;
      window.stopping = true;
      window.seconds = (performance.now() - window.start) / 1000;
      window.clientCpu = (ownCpuSeconds() - window.cpuStart) / window.seconds;
      window.serverCpu = (serverCpuSeconds() - window.serverCpuStart) / window.seconds;
      resolve();
    };
    const closeOnceSomethingLanded = () => {
      if (window.count > 0 || performance.now() - window.start >= LONGEST_WINDOW) close();
      else setTimeout(closeOnceSomethingLanded, 10);
    };
    setTimeout(() => {
      window.start = performance.now();
      window.cpuStart = ownCpuSeconds();
      window.serverCpuStart = SERVER_PIDS.length ? serverCpuSeconds() : NaN;
      window.measuring = true;
      setTimeout(closeOnceSomethingLanded, DURATION);
    }, WARMUP);
  });
  return window;
}

function percentileUs(sorted, fraction) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] * 1000;
}

function figures(window, perSecondKey) {
  const sorted = window.latencies.sort((a, b) => a - b);
  const rate = window.count / window.seconds;
  return {
    [perSecondKey]: rate,
    [`${perSecondKey.replace(/_per_s$/, "")}_per_cpu_s`]: window.serverCpu ? rate / window.serverCpu : NaN,
    p50_us: percentileUs(sorted, 0.5),
    p99_us: percentileUs(sorted, 0.99),
    client_cpu: window.clientCpu,
    server_cpu: window.serverCpu,
  };
}

function echoText(client, n) {
  const head = `${client}:${n}:`;
  return head + FILLER.slice(0, Math.max(0, PAYLOAD - head.length));
}

/** Each client calls Echo with `inFlight` calls in flight (pipelined), and checks every answer. */
async function echoScenario(name, count, inFlight) {
  const clients = await openClients(count);
  const window = measuredWindow();
  const loops = clients.flatMap((client, id) => Array.from({ length: inFlight }, async (_, lane) => {
    for (let n = 0; !window.stopping; n++) {
      const text = echoText(`${id}.${lane}`, n);
      const sent = performance.now();
      const reply = await client.invoke("Echo", text);
      if (reply !== text) throw new Error(`Echo(${JSON.stringify(text)}) answered ${JSON.stringify(reply)}`);
      if (window.measuring) {
        window.count++;
        window.latencies.push(performance.now() - sent);
      }
    }
  }));
  await Promise.all([window.over, ...loops]);
  await closeClients(clients);
  return { scenario: name, clients: count, in_flight: inFlight, ...figures(window, "calls_per_s") };
}

/**
 * `count` idle hub connections (handshaken, nothing in flight): the server's RSS per connection,
 * from its RSS with one client connected and with all of them.
 */
async function idleScenario(count) {
  // One client first, so that lazy imports and first-use caches are not counted as per-connection memory.
  const [first] = await openClients(1);
  await serverIdle();
  const rssBefore = SERVER_PIDS.length ? serverRssBytes() : NaN;
  const connectStart = performance.now();
  const clients = [first, ...(await openClients(count - 1))];
  const connectSeconds = (performance.now() - connectStart) / 1000;
  await serverIdle();
  const rssPerConnection = SERVER_PIDS.length ? (serverRssBytes() - rssBefore) / (count - 1) : NaN;
  // Every connection is still alive and answering: the figure is for working connections.
  const [echoed] = await Promise.all([clients[count - 1].invoke("Echo", "still here"), first.invoke("Echo", "x")]);
  if (echoed !== "still here") throw new Error(`Echo after connecting answered ${JSON.stringify(echoed)}`);
  await closeClients(clients);
  return { scenario: "idle", clients: count, rss_per_connection: rssPerConnection, connect_s: connectSeconds };
}

function broadcastText(seq, sentAt) {
  const head = `${seq} ${sentAt} `;
  return head + FILLER.slice(0, Math.max(0, PAYLOAD - head.length));
}

/**
 * Client 0 calls Broadcast(text) with `--fanout-window` broadcasts in flight; every client,
 * client 0 too, must receive each one exactly once and whole. The text carries its sequence
 * number and its send time, so each delivery's latency is measured from the send to the receipt.
 */
async function fanoutScenario(count, inFlight) {
  // One client first, so that lazy imports and first-use caches are not counted as per-connection memory.
  const [first] = await openClients(1);
  await serverIdle();
  const rssBefore = SERVER_PIDS.length ? serverRssBytes() : NaN;
  const connectStart = performance.now();
  const clients = [first, ...(await openClients(count - 1))];
  const connectSeconds = (performance.now() - connectStart) / 1000;
  await serverIdle();
  const rssPerConnection = SERVER_PIDS.length ? (serverRssBytes() - rssBefore) / (count - 1) : NaN;

  const window = measuredWindow();
  const pending = new Map(); // sequence number -> clients that have it
  let sent = 0;
  let complete = 0;
  let lastProgress = performance.now();
  let drained;
  const allDelivered = new Promise((resolve) => {
    drained = resolve;
  });

  const calls = new Set(); // the sender's Broadcast calls still unanswered
  function pump() {
    while (!window.stopping && sent - complete < inFlight) {
      sent++;
      const call = clients[0].invoke("Broadcast", broadcastText(sent, performance.now()));
      calls.add(call);
      call.then(() => calls.delete(call), fail);
    }
    if (window.stopping && complete === sent) drained();
  }

  let reordered = 0;
  clients.forEach((client, id) => {
    let next = 1; // the broadcast this client has not received yet, with all before it received
    const early = new Set(); // broadcasts received ahead of `next`
    client.on("Broadcast", (text) => {
      const now = performance.now();
      const [seqText, sentText] = String(text).split(" ", 2);
      const seq = Number(seqText);
      if (!Number.isInteger(seq) || seq < next || early.has(seq) || seq > sent || text !== broadcastText(seq, sentText)) {
        fail(`client ${id} received ${JSON.stringify(text)}: not whole, a duplicate or never sent`);
      }
      if (seq === next) {
        next++;
        while (early.delete(next)) next++;
      } else {
        // Servers that run a client's calls concurrently (socket.io) may deliver two broadcasts
        // in flight in either order; SignalR servers run one call at a time, and keep the order.
        early.add(seq);
        reordered++;
      }
      if (window.measuring) {
        window.count++;
        window.latencies.push(now - Number(sentText));
      }
      const have = (pending.get(seq) || 0) + 1;
      if (have < count) {
        pending.set(seq, have);
        return;
      }
      pending.delete(seq);
      complete++;
      lastProgress = now;
      pump();
    });
  });

  const watchdog = setInterval(() => {
    if (sent > complete && performance.now() - lastProgress > STALL_MS) {
      const reached = [...pending].map(([seq, have]) => `broadcast ${seq} reached ${have}`).join(", ");
      fail(`no broadcast reached all ${count} clients for ${STALL_MS / 1000} s (${reached || "none arrived"})`);
    }
  }, 1000);
  pump();
  await window.over;
  pump(); // nothing more is sent; resolves `allDelivered` if nothing is in flight
  await allDelivered;
  await Promise.all(calls);
  clearInterval(watchdog);
  await closeClients(clients);
  return {
    scenario: "fanout",
    clients: count,
    ...figures(window, "deliveries_per_s"),
    broadcasts_per_s: window.count / window.seconds / count,
    reordered,
    connect_s: connectSeconds,
    rss_per_connection: rssPerConnection,
  };
}

async function main() {
  for (const name of args.scenarios.split(",")) {
    let result;
    if (name === "echo-one") result = await echoScenario(name, 1, 1);
    else if (name === "echo-many") result = await echoScenario(name, Number(args["echo-clients"]), 1);
    else if (name === "echo-pipe") result = await echoScenario(name, Number(args["echo-clients"]), Number(args["pipe-depth"]));
    else if (name === "idle") result = await idleScenario(Number(args["idle-clients"]));
    else if (name === "fanout") result = await fanoutScenario(Number(args["fanout-clients"]), Number(args["fanout-window"]));
    else throw new Error(`unknown scenario ${name}`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  process.exit(0);
}

main().catch(fail);
