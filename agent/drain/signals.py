"""Traffic signals: where the drain policy's samples come from.

``PrometheusSignal`` reads Spring Boot / Micrometer names from any Prometheus text endpoint.
Requests to ``/actuator/**`` (our own scrapes, kubelet probes) are not business traffic and are
left out of the count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import httpx

from agent.deadline import Deadline
from agent.exceptions import DeadlineExceeded, SignalUnavailable, json_of
from agent.httpcall import bounded, send

REQUESTS_COUNT = "http_server_requests_seconds_count"
ACTIVE_COUNT = "http_server_requests_active_seconds_active_count"
# Spring Boot 3.3+ (Micrometer 1.13+, Prometheus client 1.x) exports the same long-task timer's
# active count as ``_count``; the name above is the older simpleclient's. Both are read.
ACTIVE_COUNT_V1 = "http_server_requests_active_seconds_count"
BUSY_THREADS = "tomcat_threads_busy_threads"

# Micrometer's LongTaskTimer and Tomcat's busy-thread gauge count the scrape that reads them.
_SELF_SCRAPE = 1.0


# Why a read gave no reading: the signal failed, or the deadline left no time to ask it.
ReadFailure: TypeAlias = SignalUnavailable | DeadlineExceeded
READ_FAILURES: tuple[type[ReadFailure], ...] = (SignalUnavailable, DeadlineExceeded)

# SignalUnavailable is re-exported: the signals' callers import it from here.
__all__ = ["READ_FAILURES", "ReadFailure", "SignalUnavailable"]


@dataclass(frozen=True)
class Reading:
    requests: float | None  # cumulative arrivals (or completions when in-flight is unknown)
    in_flight: float | None


class TrafficSignal(Protocol):
    @property
    def name(self) -> str: ...

    def read(self, deadline: Deadline) -> Reading: ...


_LINE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class Metric:
    name: str
    labels: dict[str, str]
    value: float


def parse_prometheus(text: str) -> Iterator[Metric]:
    """Samples of the Prometheus text format (comments and malformed lines are skipped)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            continue
        if not math.isfinite(value):
            continue  # NaN or ±Inf says nothing about traffic (and would poison a rate)
        labels = {
            k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            for k, v in _LABEL.findall(m.group("labels") or "")
        }
        yield Metric(m.group("name"), labels, value)


def _business(metric: Metric) -> bool:
    return not metric.labels.get("uri", "").startswith("/actuator")


def reading_from_prometheus(
    text: str,
    *,
    requests_metric: str = REQUESTS_COUNT,
    active_metric: str = ACTIVE_COUNT,
    busy_metric: str = BUSY_THREADS,
) -> Reading:
    requests: float | None = None
    active: float | None = None
    busy: float | None = None
    active_names = (
        {active_metric, ACTIVE_COUNT_V1} if active_metric == ACTIVE_COUNT else {active_metric}
    )
    for metric in parse_prometheus(text):
        if metric.name == requests_metric and _business(metric):
            requests = (requests or 0.0) + metric.value
        elif metric.name in active_names and _business(metric):
            active = (active or 0.0) + metric.value
        elif metric.name == busy_metric:
            busy = (busy or 0.0) + metric.value
    gauge = active if active is not None else busy
    in_flight = None if gauge is None else max(0.0, gauge - _SELF_SCRAPE)
    if requests is None and in_flight is None:
        raise SignalUnavailable(f"none of {requests_metric}, {active_metric}, {busy_metric} found")
    if requests is None and active is not None:
        requests = 0.0  # the app has served no business request yet: the series appear later
    if requests is not None and in_flight is not None:
        # Micrometer counts a request when it completes; adding those in flight turns the
        # counter into arrivals, so a long request finishing is not mistaken for new traffic.
        requests += in_flight
    return Reading(requests=requests, in_flight=in_flight)


class PrometheusSignal:
    """Request count and in-flight gauge from a Prometheus endpoint such as /actuator/prometheus."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        http: httpx.Client,
        *,
        http_timeout: float = 2.0,
        requests_metric: str = REQUESTS_COUNT,
        active_metric: str = ACTIVE_COUNT,
    ) -> None:
        self.url = url
        self._http = http
        self._http_timeout = http_timeout
        self._names = {"requests_metric": requests_metric, "active_metric": active_metric}

    def read(self, deadline: Deadline) -> Reading:
        with bounded(deadline, self._http_timeout, f"reading {self.url}", SignalUnavailable) as t:
            response = self._http.get(self.url, timeout=t)
            text = response.text if response.status_code == 200 else ""
        if response.status_code != 200:
            raise SignalUnavailable(f"HTTP {response.status_code} from {self.url}")
        return reading_from_prometheus(text, **self._names)


class ActuatorMetricsSignal:
    """Request count (and in-flight, on Boot 3) from ``/actuator/metrics``, for apps without
    the Prometheus registry. One call per business URI, so that probes and scrapes are left out.
    """

    name = "actuator"

    def __init__(self, actuator_url: str, http: httpx.Client, *, http_timeout: float = 2.0):
        self.base = actuator_url.rstrip("/") + "/metrics/"
        self._http = http
        self._http_timeout = http_timeout

    def _get(self, metric: str, deadline: Deadline, tag: str | None = None) -> dict[str, object]:
        params = {"tag": tag} if tag else None
        url = self.base + metric
        response = send(
            self._http,
            "GET",
            url,
            deadline,
            self._http_timeout,
            SignalUnavailable,
            what=f"reading {url}",
            params=params,
        )
        if response.status_code != 200:
            raise SignalUnavailable(f"HTTP {response.status_code} from {url}")
        try:
            body = json_of(response)
        except ValueError as exc:
            raise SignalUnavailable(f"{url} answered {exc}") from None
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _statistic(body: dict[str, object], name: str) -> float | None:
        measurements = body.get("measurements")
        for m in measurements if isinstance(measurements, list) else []:
            if isinstance(m, dict) and m.get("statistic") == name:
                value = m.get("value", 0.0)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    number = float(value) if abs(value) < 1e300 else math.nan
                    if math.isfinite(number):
                        return number
                raise SignalUnavailable(f"{name} is not a number: {str(value)[:40]!r}")
        return None

    def read(self, deadline: Deadline) -> Reading:
        overview = self._get("http.server.requests", deadline)
        uris: list[str] = []
        tags = overview.get("availableTags")
        for tag in tags if isinstance(tags, list) else []:
            if isinstance(tag, dict) and tag.get("tag") == "uri":
                values = tag.get("values")
                listed = values if isinstance(values, list) else []
                uris = [u for u in listed if isinstance(u, str) and not u.startswith("/actuator")]
        requests = 0.0
        for uri in uris:
            body = self._get("http.server.requests", deadline, tag=f"uri:{uri}")
            requests += self._statistic(body, "COUNT") or 0.0
        in_flight: float | None = None
        try:
            active = self._get("http.server.requests.active", deadline)
            tasks = self._statistic(active, "ACTIVE_TASKS")
            in_flight = None if tasks is None else max(0.0, tasks - _SELF_SCRAPE)
        except SignalUnavailable:
            in_flight = None  # Boot 2 has no active-requests metric
        if in_flight is not None:
            requests += in_flight  # arrivals, as for Prometheus
        return Reading(requests=requests, in_flight=in_flight)


class FirstAvailable:
    """The first of several equivalent sources that answers; it then sticks to that one."""

    def __init__(self, signals: list[TrafficSignal]) -> None:
        self.signals = signals
        self.chosen: TrafficSignal | None = None
        self.name = "|".join(s.name for s in signals)

    def read(self, deadline: Deadline) -> Reading:
        if self.chosen is not None:
            return self.chosen.read(deadline)
        errors: list[str] = []
        out_of_time = True
        for signal in self.signals:
            try:
                reading = signal.read(deadline)
            except READ_FAILURES as exc:
                errors.append(f"{signal.name}: {exc}")
                out_of_time = out_of_time and isinstance(exc, DeadlineExceeded)
                continue
            self.chosen, self.name = signal, signal.name
            return reading
        raise (DeadlineExceeded if out_of_time else SignalUnavailable)("; ".join(errors))
