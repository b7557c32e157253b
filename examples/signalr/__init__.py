"""SignalR examples: the conformance hub the official clients' tests run against (testhub.py), and a
chat with rooms and presence whose page uses the official browser client (chat.py)."""
