"""Options (``_options.py``): the defaults, normalised lists, and a clear error per bad value."""

from __future__ import annotations

import pytest

import trio_ws


def test_options_defaults_are_valid() -> None:
    """The defaults build, and allowed_origins and allowed_hosts are normalised."""
    options = trio_ws.Options(
        allowed_origins=["HTTPS://App.Example/"], allowed_hosts=["App.Example.", "fd00::1"]
    )
    assert options.allowed_origins == ("https://app.example",)
    assert options.allowed_hosts == ("app.example", "fd00::1")
    assert options.keep_alive_interval == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_message_size": 0}, "max_message_size must be greater than 0"),
        ({"max_message_size": 1.5}, "max_message_size must be a whole number"),
        ({"keep_alive_interval": -1}, "keep_alive_interval must be greater than 0"),
        ({"handshake_timeout": float("nan")}, "handshake_timeout must be a number"),
        ({"shutdown_timeout": None}, "shutdown_timeout must be a number"),
        ({"message_queue_size": -1}, "message_queue_size must be at least 0"),
        ({"max_connections": 0}, "max_connections must be greater than 0"),
        ({"max_idle_connections": 0}, "max_idle_connections must be greater than 0"),
        ({"allowed_hosts": "app.example"}, "must be a list of host names"),
        ({"allowed_hosts": ["http://app.example"]}, "must be a bare host name"),
        ({"allowed_hosts": ["app.example:443"]}, "must be a bare host name"),
        ({"max_request_headers": 2.5}, "max_request_headers must be a whole number"),
        ({"allowed_origins": "https://a.example"}, "must be a list of origins"),
        ({"allowed_origins": ["a.example"]}, "needs a scheme"),
        ({"compression": "yes"}, "compression must be True or False"),
        ({"compression_window_bits": 8}, "compression_window_bits must be a whole number from 9 to 15"),
        ({"compression_window_bits": 16}, "compression_window_bits must be a whole number from 9 to 15"),
        ({"compression_min_size": -1}, "compression_min_size must be at least 0"),
    ],
)
def test_options_refuse_bad_values_by_name(kwargs: dict[str, object], message: str) -> None:
    """A bad value fails when Options is built, with a message naming the option."""
    with pytest.raises(ValueError, match=message):
        trio_ws.Options(**kwargs)  # type: ignore[arg-type]
