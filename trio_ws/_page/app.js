// The echo page: one WebSocket, a status line, and a log of everything that happens.
"use strict";

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let socket = null;

// Buttons are enabled only when they make sense for the socket's state.
function setState(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
  const open = state === "open";
  const idle = state === "ready" || state === "closed";
  $("connect").disabled = !idle;
  $("url").disabled = !idle;
  $("close").disabled = !open;
  $("send").disabled = !open;
  $("message").disabled = !open;
}

function log(kind, label, details) {
  const row = document.createElement("tr");
  row.className = kind;
  for (const [cls, text] of [["time", new Date().toLocaleTimeString()], ["event", label], ["details", details]]) {
    const cell = document.createElement("td");
    cell.className = cls;
    cell.textContent = text;
    row.appendChild(cell);
  }
  $("log-body").appendChild(row);
  $("log-empty").hidden = true;
  row.scrollIntoView({ block: "nearest" });
}

function describe(data) {
  if (typeof data === "string") return `text: ${data}`;
  const bytes = new Uint8Array(data);
  return `binary, ${bytes.length} bytes: ${decoder.decode(bytes)}`;
}

function closeText(event) {
  const reason = event.reason ? `, reason "${event.reason}"` : "";
  return `code ${event.code}${reason}${event.wasClean ? "" : ", not clean"}`;
}

function connect() {
  const url = $("url").value.trim();
  try {
    socket = new WebSocket(url);
  } catch (error) {
    log("error", "Error", `cannot connect to ${url}: ${error.message}`);
    return;
  }
  socket.binaryType = "arraybuffer";
  setState("connecting", "Connecting…");
  log("connecting", "Connecting", url);
  socket.onopen = () => {
    setState("open", "Open");
    const protocol = socket.protocol ? `, subprotocol ${socket.protocol}` : "";
    const extensions = socket.extensions ? `, extensions: ${socket.extensions}` : "";
    log("open", "Open", `connected to ${socket.url}${protocol}${extensions}`);
    $("message").focus();
  };
  socket.onmessage = (event) => log("received", "Received", describe(event.data));
  socket.onerror = () => log("error", "Error", "the connection failed (see the close code)");
  socket.onclose = (event) => {
    setState("closed", `Closed (${closeText(event)})`);
    log("close", "Closed", closeText(event));
    socket = null;
  };
}

function send() {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const text = $("message").value;
  const data = $("binary").checked ? encoder.encode(text).buffer : text;
  socket.send(data);
  log("sent", "Sent", describe(data));
  $("message").value = "";
  $("message").focus();
}

function closeSocket() {
  if (!socket) return;
  setState("closing", "Closing…");
  log("closing", "Closing", "sent close frame, code 1000");
  socket.close(1000, "Closing from client");
}

document.addEventListener("DOMContentLoaded", () => {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  $("url").value = `${scheme}//${location.host}/ws`;
  $("connect").addEventListener("click", connect);
  $("send").addEventListener("click", send);
  $("close").addEventListener("click", closeSocket);
  $("clear").addEventListener("click", () => {
    $("log-body").replaceChildren();
    $("log-empty").hidden = false;
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter") send();
  });
  $("url").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !$("connect").disabled) connect();
  });
  setState("ready", "Ready to connect");
});
