// Node socket.io serving the hub benchmarks' hub: the reference row, a fast server in another runtime.
//
//   node socketio_server.js [--port N]
//
// `python -m benchmarks.hubs` starts it. It serves what the Python servers
// serve: an `echo` event answered by its acknowledgement, and a `broadcast`
// event that emits `broadcast` with the message to every client, then
// acknowledges. It prints `listening on http://127.0.0.1:PORT/socket.io/`
// once it accepts connections. permessage-deflate is off (socket.io's default).

"use strict";

const http = require("node:http");
const { parseArgs } = require("node:util");
const { Server } = require("socket.io");

const { values: args } = parseArgs({ options: { port: { type: "string", default: "0" } } });

const server = http.createServer();
const io = new Server(server, { serveClient: false, perMessageDeflate: false });

io.on("connection", (socket) => {
  socket.on("echo", (message, ack) => ack(message));
  socket.on("broadcast", (message, ack) => {
    io.emit("broadcast", message);
    ack();
  });
});

server.listen(Number(args.port), "127.0.0.1", () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}/socket.io/\n`);
});
