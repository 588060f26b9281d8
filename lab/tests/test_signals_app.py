"""Traffic signals read from a real demo app process."""

from __future__ import annotations


def test_actuator_metrics_json_and_fallback() -> None:
    """Apps without Prometheus are read through /actuator/metrics; auto falls back to it."""
    import httpx

    from agent.deadline import Deadline, SystemClock
    from agent.drain.signals import ActuatorMetricsSignal, FirstAvailable, PrometheusSignal
    from prestop_lab.demo_app import AppConfig, DemoApp

    app = DemoApp(AppConfig(port=0, latency_ms=1))
    app.start()
    try:
        base = f"http://127.0.0.1:{app.port}"
        with httpx.Client() as http:
            for _ in range(4):
                http.get(f"{base}/work")
            http.get(f"{base}/actuator/health")
            deadline = Deadline.after(SystemClock(), 5)
            actuator = ActuatorMetricsSignal(f"{base}/actuator", http)
            assert actuator.read(deadline).requests == 4
            missing = PrometheusSignal(f"{base}/actuator/not-exposed", http)
            auto = FirstAvailable([missing, actuator])
            assert auto.read(deadline).requests == 4
            assert auto.name == "actuator"
    finally:
        app.shutdown()
