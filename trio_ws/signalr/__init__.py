"""SignalR-compatible hubs for trio (being built: so far the sans-I/O hub protocol in _protocol/)."""
