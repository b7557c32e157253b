"""Putting hubs and connection handlers on an ``App``: routes, and the servers that own connections.

What this package owns: ``map_hub`` and ``map_connection`` (negotiate and the
transports at a path), and ``HubServer`` / ``ConnectionServer``, whose one
nursery lives as long as the server and holds every connection of a hub.
"""
