// The dashboard page: figures pushed by the server, drawn as a live chart on a canvas.
"use strict";

const $ = (id) => document.getElementById(id);
const KEEP = 60; // points kept: a minute at one per second
const history = [];
let socket = null;

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
  $("burst").disabled = state !== "open";
}

// One line for `key`, scaled so its peak reaches the top; returns that peak.
function drawLine(context, key, color, width, height) {
  const peak = Math.max(1, ...history.map((point) => point[key]));
  context.strokeStyle = color;
  context.lineWidth = 2;
  context.beginPath();
  history.forEach((point, i) => {
    const x = (i / (KEEP - 1)) * width;
    const y = height - (point[key] / peak) * (height - 50) - 10; // the top 40 px hold the labels
    if (i === 0) context.moveTo(x, y);
    else context.lineTo(x, y);
  });
  context.stroke();
  return peak;
}

function draw() {
  const canvas = $("chart");
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  context.strokeStyle = "#d0d7de";
  context.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    context.beginPath();
    context.moveTo(0, (i * height) / 4);
    context.lineTo(width, (i * height) / 4);
    context.stroke();
  }
  const connectionsPeak = drawLine(context, "connections", "#0969da", width, height);
  const ratePeak = drawLine(context, "messages_per_second", "#bc4c00", width, height);
  context.font = "12px system-ui, sans-serif";
  context.fillStyle = "#0969da";
  context.fillText(`${connectionsPeak} connections`, 6, 14);
  context.fillStyle = "#bc4c00";
  context.fillText(`${ratePeak} messages/s`, 6, 30);
  canvas.dataset.points = String(history.length);
}

function receive(figures) {
  history.push(figures);
  if (history.length > KEEP) history.shift();
  $("connections").textContent = figures.connections;
  $("rate").textContent = figures.messages_per_second;
  $("total").textContent = figures.messages;
  draw();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.onopen = () => setStatus("open", "Live");
  socket.onmessage = (message) => receive(JSON.parse(message.data));
  socket.onclose = (close) => {
    const reason = close.reason ? `: ${close.reason}` : "";
    setStatus("closed", `Disconnected (code ${close.code}${reason}); reload to reconnect`);
  };
}

$("burst").addEventListener("click", () => {
  for (let i = 0; i < 100; i++) socket.send(`burst ${i}`);
});
draw();
connect();
