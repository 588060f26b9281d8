"""New pods' first seconds against the steady state, computed from the consumers' records."""

from __future__ import annotations

from prestop_lab.consumer import Record
from prestop_lab.rollout import _percentile, start_latency


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert _percentile(values, 50) == 50.0
    assert _percentile(values, 99) == 99.0
    assert _percentile([7.0], 99) == 7.0
    assert _percentile([], 99) is None


def test_new_pods_first_window_against_old_pods_before_the_rollout() -> None:
    old, new = "127.0.0.1:1", "127.0.0.1:2"
    records = [Record(t, t + 0.020, old, "ok") for t in range(100)]  # steady: 20 ms
    records += [Record(100.0, 100.5, new, "ok")]  # the new pod's cold first request
    records += [Record(100.0 + t / 10, 100.0 + t / 10 + 0.020, new, "ok") for t in range(1, 99)]
    records += [Record(101.0, 101.0, new, "connect_refused")]
    records += [Record(140.0, 142.0, new, "ok")]  # after its first 30 s: not counted
    st = start_latency(records, [old], [new, "127.0.0.1:3"], rollout_started=100.0, steady_from=50)
    assert st.steady_requests == 50 and st.steady_p99_ms == 20.0
    assert st.new_requests == 100 and st.new_errors == 1
    # 99 served: the nearest-rank p99 is the slowest one, the cold first request.
    assert st.new_p50_ms == 20.0 and st.new_p99_ms == 500.0
    (pod, missing) = st.pods
    assert pod.max_ms == 500.0 and pod.errors == 1
    assert missing.requests == 0 and missing.p99_ms is None
    assert st.p99_ratio == 25.0
