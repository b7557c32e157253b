"""``contain``: what app code raises is logged as its failure, except what tells the server to stop."""

from __future__ import annotations

import logging

import pytest
import trio

from trio_ws._contain import contain

logger = logging.getLogger("trio_ws.test")


class AppEscape(BaseException):
    pass


def test_a_base_exception_of_the_app_is_logged_and_returned(caplog: pytest.LogCaptureFixture) -> None:
    """Not an ``Exception``, but the app's failure all the same: one record, with its traceback."""
    escape = AppEscape("mine")
    assert contain(escape, logger, "handler %s failed", "h") is escape
    [record] = caplog.records
    assert (record.getMessage(), record.levelno) == ("handler h failed", logging.ERROR)
    assert record.exc_info is not None and record.exc_info[1] is escape


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(1)])
def test_a_stop_goes_on_up_unlogged(stop: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(type(stop)):
        contain(stop, logger, "failed")
    assert caplog.records == []


def test_a_group_is_split_the_stop_raised_the_rest_logged(caplog: pytest.LogCaptureFixture) -> None:
    group = BaseExceptionGroup("both", [SystemExit(1), ValueError("app")])
    with pytest.raises(BaseExceptionGroup) as raised:
        contain(group, logger, "failed")
    assert [type(e) for e in raised.value.exceptions] == [SystemExit]
    [record] = caplog.records
    assert record.exc_info is not None
    logged = record.exc_info[1]
    assert isinstance(logged, BaseExceptionGroup)
    assert [type(e) for e in logged.exceptions] == [ValueError]


def test_expected_exceptions_are_neither_logged_nor_returned(caplog: pytest.LogCaptureFixture) -> None:
    group = BaseExceptionGroup("expected", [EOFError(), EOFError()])
    assert contain(group, logger, "failed", expected=(EOFError,)) is None
    assert caplog.records == []


async def test_the_servers_cancellation_reaches_its_scope(caplog: pytest.LogCaptureFixture) -> None:
    """A request cancelled while its handler's task fails in cleanup: the group holds Cancelled and
    the app's error; the error is logged, the Cancelled reaches the cancelled scope."""

    async def fails_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise ValueError("cleanup failed")

    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fails_when_cancelled)
                await trio.sleep_forever()
        except BaseException as exc:
            contain(exc, logger, "handler failed")
    assert scope.cancelled_caught
    [record] = caplog.records
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], BaseExceptionGroup)
    assert [type(e) for e in record.exc_info[1].exceptions] == [ValueError]
