"""Negotiate's pure rules: the version asked for, the answer for versions 0 and 1, the transports."""

from __future__ import annotations

import pytest

from trio_ws.signalr import HttpTransportType
from trio_ws.signalr._transports.negotiate import NegotiateError, negotiate_answer, negotiate_version


def test_missing_version_is_zero_and_above_one_is_one() -> None:
    """No ``negotiateVersion`` means 0; 1 is 1; anything higher is answered as 1."""
    assert negotiate_version([]) == 0
    assert negotiate_version(["1"]) == 1
    assert negotiate_version(["7"]) == 1
    assert negotiate_version(["2147483647"]) == 1


@pytest.mark.parametrize(
    ("given", "version"),
    [(" 1 ", 1), ("\t\r\n1\x0b\x0c", 1), ("+1", 1), ("-0", 0), ("0001", 1), ("1\x00\x00", 1), ("1 \x00", 1)],
)
def test_versions_dotnet_reads_as_integers_are_integers(given: str, version: int) -> None:
    """What .NET's int.TryParse takes: ASCII whitespace around, a sign, leading zeros, trailing NULs."""
    assert negotiate_version([given]) == version


@pytest.mark.parametrize(
    "given",
    [
        "99999999999999999999",  # beyond 32 bits
        "2147483648",
        "-2147483649",
        "9" * 5000,  # beyond Python's int() digit limit too
        "1_0",  # Python's digit separator
        "\uff11",  # FULLWIDTH DIGIT ONE
        "\u0661",  # ARABIC-INDIC DIGIT ONE
        "\u00a01",  # NO-BREAK SPACE is not .NET's whitespace
        "1\u2003",  # nor EM SPACE
        "\x001",  # NULs only trail
        "1\x00 ",
        "0x1",
        "1.0",
        "1e0",
        "+-1",
        "+",
        " ",
    ],
)
def test_what_dotnet_refuses_is_not_an_integer(given: str) -> None:
    """Python's int() takes much that .NET's int.TryParse refuses; the server answers as ASP.NET does."""
    with pytest.raises(NegotiateError) as refused:
        negotiate_version([given])
    assert str(refused.value) == "The client requested a non-integer protocol version."


def test_a_repeated_version_is_not_an_integer() -> None:
    """ASP.NET joins repeated query values with a comma ("0,1"), which int.TryParse refuses."""
    with pytest.raises(NegotiateError):
        negotiate_version(["0", "1"])


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ("one", "The client requested a non-integer protocol version."),
        ("", "The client requested a non-integer protocol version."),
        ("-1", "The client requested version '-1', but the server does not support this version."),
    ],
)
def test_bad_versions_are_refused_with_a_text(given: str, text: str) -> None:
    """A version that is not a whole number of at least 0 is refused, with the text the client shows."""
    with pytest.raises(NegotiateError) as refused:
        negotiate_version([given])
    assert str(refused.value) == text


def test_version_one_answers_a_token_and_version_zero_does_not() -> None:
    """Version 1 carries the secret connectionToken; version 0 only the connectionId (which is the id)."""
    transports = [HttpTransportType.WEBSOCKETS]
    assert negotiate_answer(1, "public", "secret", transports) == {
        "negotiateVersion": 1,
        "connectionId": "public",
        "connectionToken": "secret",
        "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}],
    }
    assert "connectionToken" not in negotiate_answer(0, "public", "public", transports)


def test_transports_are_listed_in_the_order_clients_try_them() -> None:
    """Only the hub's transports are listed, WebSockets first; Server-Sent Events carry text only."""
    answer = negotiate_answer(
        1, "i", "t", [HttpTransportType.LONG_POLLING, HttpTransportType.SERVER_SENT_EVENTS]
    )
    assert answer["availableTransports"] == [
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]
