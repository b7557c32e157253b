"""Hubs: what hub code sees, and how a client's calls run.

What this package owns: ``Hub`` and typed hubs, finding hub methods and
binding a client's arguments to them, ``self.clients`` and groups, the hub
connection (handshake to last message), running calls and streams with
cancellation and client results, and the filters around them (authorization,
rate limits, metrics and traces).
"""
