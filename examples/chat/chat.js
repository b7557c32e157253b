// The chat page: join with a name, then every message in the room appears in the list.
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;

function setState(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
  const open = state === "open";
  $("join").disabled = state !== "closed";
  $("name").disabled = state !== "closed";
  $("leave").disabled = !open;
  $("text").disabled = !open;
  $("say").disabled = !open;
}

// One line in the list; `who` (optional) is shown in bold before the text.
function show(kind, text, who) {
  const item = document.createElement("li");
  item.className = kind;
  if (who) {
    const name = document.createElement("strong");
    name.textContent = `${who}: `;
    item.appendChild(name);
  }
  item.appendChild(document.createTextNode(text));
  $("messages").appendChild(item);
  item.scrollIntoView({ block: "nearest" });
}

// The server sends JSON events: welcome, join, message and leave.
function receive(event) {
  switch (event.type) {
    case "welcome":
      setState("open", `In the room as ${event.name}`);
      show("info", `You joined as ${event.name}. Here now: ${event.members.join(", ")}.`);
      break;
    case "join":
      show("info", `${event.name} joined.`);
      break;
    case "leave":
      show("info", `${event.name} left (${event.reason}).`);
      break;
    case "message":
      show("message", event.text, event.name);
      break;
  }
}

function join(submit) {
  submit.preventDefault();
  const name = $("name").value.trim() || "guest";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws?name=${encodeURIComponent(name)}`);
  setState("connecting", "Joining…");
  socket.onmessage = (message) => receive(JSON.parse(message.data));
  socket.onclose = (close) => {
    const reason = close.reason ? `: ${close.reason}` : "";
    setState("closed", `Not in the room (code ${close.code}${reason})`);
    show("closed", `Disconnected (code ${close.code}${reason}).`);
    socket = null;
  };
}

function say(submit) {
  submit.preventDefault();
  const text = $("text").value;
  if (socket && text) {
    socket.send(text);
    $("text").value = "";
  }
}

$("join-form").addEventListener("submit", join);
$("say-form").addEventListener("submit", say);
$("leave").addEventListener("click", () => socket && socket.close(1000, "left the room"));
setState("closed", "Not in the room");
