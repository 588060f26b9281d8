"""The one bounded HTTP call: the timeout from the Deadline, failures in the caller's terms."""

from __future__ import annotations

import httpx
import pytest

from agent.deadline import Deadline
from agent.exceptions import DeadlineExceeded, RegistryUnavailable, SignalUnavailable
from agent.httpcall import bounded, send
from tests.fakes import FakeClock


def test_the_timeout_is_the_cap_or_what_is_left(clock: FakeClock) -> None:
    with bounded(Deadline.after(clock, 10), 3.0, "GET /x", RegistryUnavailable) as timeout:
        assert timeout == 3.0
    with bounded(Deadline.after(clock, 1.5), 3.0, "GET /x", RegistryUnavailable) as timeout:
        assert timeout == 1.5


def test_no_time_left_is_raised_before_the_call(clock: FakeClock) -> None:
    ran = []
    with (
        pytest.raises(DeadlineExceeded, match="no time left for GET /x"),
        bounded(Deadline.after(clock, 0.005), 3.0, "GET /x", RegistryUnavailable),
    ):
        ran.append(True)
    assert ran == []


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.DecodingError("bad gzip"),
        httpx.InvalidURL("bad host"),
        UnicodeError("idna"),
        LookupError("unknown encoding: x-nothing"),
    ],
)
def test_a_failed_call_is_the_callers_error(clock: FakeClock, error: Exception) -> None:
    with (
        pytest.raises(SignalUnavailable) as caught,
        bounded(Deadline.after(clock, 10), 3.0, "reading /metrics", SignalUnavailable),
    ):
        raise error
    assert str(caught.value) == f"reading /metrics: {type(error).__name__}"
    # The library's message (a URL with credentials, a body) goes nowhere.
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_other_errors_are_not_taken_for_the_transport(clock: FakeClock) -> None:
    with (
        pytest.raises(ValueError, match="ours"),
        bounded(Deadline.after(clock, 10), 3.0, "GET /x", RegistryUnavailable),
    ):
        raise ValueError("ours")


def test_send_bounds_the_request(clock: FakeClock) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        r = send(http, "DELETE", "http://x.test/a", Deadline.after(clock, 0.7), 2.0, OSError)
    assert r.status_code == 204
    assert seen[0].extensions["timeout"]["read"] == pytest.approx(0.7)
