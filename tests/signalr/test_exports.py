"""trio_ws.signalr's public API: what __all__ promises exists and is documented."""

from __future__ import annotations

from pathlib import Path

import trio_ws.signalr


def test_all_names_exist_and_are_public() -> None:
    """Every name in __all__ is importable, public, and listed once."""
    for name in trio_ws.signalr.__all__:
        assert hasattr(trio_ws.signalr, name), name
        assert not name.startswith("_")
    assert sorted(trio_ws.signalr.__all__) == sorted(set(trio_ws.signalr.__all__))


def test_every_public_name_is_in_the_hubs_guide() -> None:
    """docs/hubs.md mentions every public name, so none is undocumented."""
    guide = (Path(__file__).parents[2] / "docs" / "hubs.md").read_text()
    missing = [name for name in trio_ws.signalr.__all__ if f"`{name}" not in guide]
    assert missing == []
