// The contract of the hub examples.signalr.chat:ChatHub, generated from its type hints by
// `python -m trio_ws.signalr.contract typescript examples.signalr.chat:ChatHub`. Do not edit: generate it again.
/** The hub's methods, called by their wire names (`invoke` or `stream`). */
export function getChatHubServer(connection) {
    return {
        join: (room, name) => connection.invoke("Join", room, name),
        send: (text) => connection.invoke("Send", text),
    };
}
/** Answers the hub's calls with `client`'s methods; the returned function removes them. */
export function registerChatHubClient(connection, client) {
    const handler0 = (name, text) => client.message(name, text);
    connection.on("Message", handler0);
    const handler1 = (room, names) => client.presence(room, names);
    connection.on("Presence", handler1);
    return () => {
        connection.off("Message", handler0);
        connection.off("Presence", handler1);
    };
}
