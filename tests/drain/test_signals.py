"""Parsing Spring Boot's Prometheus output into a traffic reading."""

from __future__ import annotations

import pytest

from agent.drain.signals import SignalUnavailable, parse_prometheus, reading_from_prometheus

SPRING = """\
# HELP http_server_requests_seconds
# TYPE http_server_requests_seconds summary
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/work"} 120
http_server_requests_seconds_sum{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/work"} 2.4
http_server_requests_seconds_count{error="none",exception="none",method="POST",outcome="SERVER_ERROR",status="500",uri="/work"} 3
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/actuator/prometheus"} 77
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/actuator/health/readiness"} 9
# TYPE http_server_requests_active_seconds_active_count gauge
http_server_requests_active_seconds_active_count{exception="none",method="GET",outcome="SUCCESS",status="200",uri="UNKNOWN"} 3
tomcat_threads_busy_threads{name="http-nio-8080"} 3
"""


def test_business_requests_and_in_flight() -> None:
    """Actuator requests are not business traffic; the scrape itself is not in flight."""
    reading = reading_from_prometheus(SPRING)
    assert reading.in_flight == 2
    assert reading.requests == 123 + 2  # arrivals: completed plus in flight


def test_busy_threads_fallback() -> None:
    """Without the active-requests timer, Tomcat's busy threads stand in for in-flight."""
    reading = reading_from_prometheus('tomcat_threads_busy_threads{name="http-nio-8080"} 1\n')
    assert reading.in_flight == 0
    assert reading.requests is None


def test_no_known_metric() -> None:
    """An endpoint without any of the metrics is an unavailable signal, not 'quiet'."""
    with pytest.raises(SignalUnavailable):
        reading_from_prometheus("jvm_threads_live_threads 30\n")


def test_label_escapes_and_timestamps() -> None:
    """Escaped quotes in labels and trailing timestamps parse."""
    (m,) = parse_prometheus('x{a="q\\"uote",b="2"} 4 1700000000000\n')
    assert m.labels == {"a": 'q"uote', "b": "2"}
    assert m.value == 4


def test_custom_metric_names() -> None:
    """Any app's metric names can be configured."""
    text = 'myapp_requests_total{path="/x"} 7\nmyapp_inflight 1\n'
    reading = reading_from_prometheus(
        text, requests_metric="myapp_requests_total", active_metric="myapp_inflight"
    )
    assert reading.in_flight == 0  # minus our own scrape
    assert reading.requests == 7


# What Spring Boot 3.5 (Micrometer 1.15, Prometheus client 1.x) answers, from the real provider:
# the long-task timer's active count is ``_count``, not the older ``_active_count``.
SPRING_BOOT_3_5 = """\
http_server_requests_active_seconds_count{exception="none",method="GET",outcome="SUCCESS",status="200",uri="UNKNOWN"} 3
http_server_requests_active_seconds_sum{exception="none",method="GET",outcome="SUCCESS",status="200",uri="UNKNOWN"} 0.05
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/actuator/health"} 1
http_server_requests_seconds_count{error="none",exception="none",method="GET",outcome="SUCCESS",status="200",uri="/api/work"} 3
"""


def test_spring_boot_3_5_active_count() -> None:
    """The in-flight gauge is read under its Prometheus-client-1.x name; our scrape is left out."""
    reading = reading_from_prometheus(SPRING_BOOT_3_5)
    assert reading.in_flight == 2
    assert reading.requests == 5  # 3 completed + 2 in flight
