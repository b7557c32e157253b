// The hub chat's page: the official SignalR client (global `signalR`, from /static/signalr.js),
// and the hub's contract (contract.js, compiled from contract.ts, which is generated from
// ChatHub's type hints), so the page calls `hub.join(...)` rather than invoke("Join", ...).
//
// What it shows: the connection's state as the client reports it (connecting, connected,
// reconnecting, disconnected); joining a room (Join), who is in it (Presence, sent by the hub
// whenever someone comes or goes), and messages (Send, Message). After an automatic reconnect
// the hub sees a new connection, so the page joins its room again.
import { getChatHubServer, registerChatHubClient } from "./contract.js";

const $ = (id) => document.getElementById(id);
let joined = null; // { name, room } once joined

function setState(state) {
    $("state").textContent = state;
    $("state").dataset.state = state;
    const connected = state === "connected";
    $("join").disabled = !connected;
    $("text").disabled = $("say").disabled = !(connected && joined);
}

function note(text, kind = "") {
    const item = document.createElement("li");
    item.textContent = text;
    if (kind) {
        item.className = kind;
    }
    $("messages").append(item);
    item.scrollIntoView({ block: "end" });
}

const connection = new signalR.HubConnectionBuilder()
    .withUrl("/chat")
    // Keep trying while the server is away: at once, then every second or two, at most every 5 s.
    .withAutomaticReconnect({ nextRetryDelayInMilliseconds: ({ previousRetryCount }) => Math.min(5000, previousRetryCount * 1000) })
    .build();

const hub = getChatHubServer(connection);
registerChatHubClient(connection, {
    message: (name, text) => note(`${name}: ${text}`),
    presence: (room, names) => {
        if (joined && room === joined.room) {
            $("people").textContent = names.length ? names.join(", ") : "nobody";
        }
    },
});
connection.onreconnecting(() => setState("reconnecting"));
connection.onreconnected(async () => {
    setState("connected");
    if (joined) {
        await hub.join(joined.room, joined.name); // a new connection: join again
        note("reconnected", "info");
    }
});
connection.onclose(() => setState("disconnected"));

$("join-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("name").value.trim() || "guest";
    const room = $("room").value.trim() || "lobby";
    const before = joined;
    joined = { name, room }; // before the call: the hub tells the room who is there before it answers
    $("room-name").textContent = room;
    try {
        await hub.join(room, name);
    } catch (error) {
        joined = before;
        $("room-name").textContent = before ? before.room : "no room";
        note(`could not join: ${error.message}`, "info");
        return;
    }
    note(`you joined ${room} as ${name}`, "info");
    setState(connection.state === signalR.HubConnectionState.Connected ? "connected" : "reconnecting");
    $("text").focus();
});

$("say-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("text").value;
    if (!text) {
        return;
    }
    $("text").value = "";
    try {
        await hub.send(text);
    } catch (error) {
        note(`not sent: ${error.message}`, "info");
    }
});

(async () => {
    setState("connecting");
    try {
        await connection.start();
        setState("connected");
    } catch (error) {
        setState("disconnected");
        note(`could not connect: ${error.message}`, "info");
    }
})();
