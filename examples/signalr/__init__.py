"""SignalR examples: the conformance hub the official clients' tests run against (testhub.py)."""
