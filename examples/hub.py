"""A SignalR hub in twenty lines: the server and a trio client talking to it, in one program.

What it teaches: a ``Hub`` subclass's ``async def`` methods are what clients
call (``send_message`` is ``"SendMessage"`` on the wire); ``map_hub`` serves
it on an ``App``; ``open_hub_client`` is a trio client for any SignalR hub,
whose ``on`` handlers answer the hub's calls. The browser's
``@microsoft/signalr`` would connect to the same URL unchanged.

Run it with ``python examples/hub.py``: it prints ``ada: hello`` and exits.
"""

import trio

import trio_ws
from trio_ws.signalr import Hub, map_hub, open_hub_client


class Chat(Hub):
    async def send_message(self, user: str, text: str) -> None:  # clients call "SendMessage"
        await self.clients.all.send("Message", user, text)


app = trio_ws.App()
map_hub(app, "/chat", Chat())  # POST /chat/negotiate, then WebSockets, SSE or Long Polling


async def main() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve, app, "127.0.0.1", 0)  # port 0: any free port
        async with open_hub_client(server.url + "chat") as hub:
            received = trio.Event()

            @hub.on("Message")  # the hub calls it
            def show(user: str, text: str) -> None:
                print(f"{user}: {text}")
                received.set()

            await hub.send("SendMessage", "ada", "hello")
            await received.wait()
        await server.aclose()  # graceful: hub clients are told to reconnect, then the server ends


trio.run(main)
