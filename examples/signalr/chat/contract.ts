// The contract of the hub examples.signalr.chat:ChatHub, generated from its type hints by
// `python -m trio_ws.signalr.contract typescript examples.signalr.chat:ChatHub`. Do not edit: generate it again.

import type { HubConnection } from "@microsoft/signalr";

/**
 * What the page can call on ChatHub.
 *
 * Rooms are groups; the hub keeps who is where, so it can tell a room who is in it.
 */
export interface ChatHubServer {
    /** Join ``room`` as ``name`` (leaving the room this connection was in, if any). */
    join(room: string, name: string): Promise<void>;
    /** Say ``text`` to everyone in this connection's room (the sender too). */
    send(text: string): Promise<void>;
}

/** What ChatHub calls on its clients. */
export interface ChatHubClient {
    /** ``name`` said ``text`` in the page's room. */
    message(name: string, text: string): void | Promise<void>;
    /** Who is in ``room`` now, sorted; sent whenever someone comes or goes. */
    presence(room: string, names: string[]): void | Promise<void>;
}

/** The hub's methods, called by their wire names (`invoke` or `stream`). */
export function getChatHubServer(connection: HubConnection): ChatHubServer {
    return {
        join: (room, name) => connection.invoke<void>("Join", room, name),
        send: (text) => connection.invoke<void>("Send", text),
    };
}

/** Answers the hub's calls with `client`'s methods; the returned function removes them. */
export function registerChatHubClient(connection: HubConnection, client: ChatHubClient): () => void {
    const handler0 = (name: string, text: string): void | Promise<void> => client.message(name, text);
    connection.on("Message", handler0);
    const handler1 = (room: string, names: string[]): void | Promise<void> => client.presence(room, names);
    connection.on("Presence", handler1);
    return () => {
        connection.off("Message", handler0);
        connection.off("Presence", handler1);
    };
}
