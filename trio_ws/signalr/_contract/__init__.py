"""A hub's client contract, read from its type hints: TypeScript for ``@microsoft/signalr``, and AsyncAPI.

What this package owns: the model of what a hub offers and expects, and the
two renderings of it. The command line is ``python -m trio_ws.signalr.contract``.
"""
