"""Benchmarks for trio_ws: its echo server against bare trio-websocket, websockets and raw TCP.

``python -m benchmarks`` runs everything and prints a table of ratios. See
``run.py`` for the method, ``servers.py`` for the servers measured and
``load.py`` for the load generator.
"""
