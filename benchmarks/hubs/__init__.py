"""Hub benchmarks: trio_ws's SignalR hubs against aiosignalr and python-socketio.

``python -m benchmarks.hubs`` runs them and prints a table of same-run
ratios. See ``run.py`` for the scenarios and the knobs, ``servers.py`` for
the servers and ``load.js`` for the load generator (real hub clients in
Node). ``python -m benchmarks.hubs --setup`` installs what they need.
"""
