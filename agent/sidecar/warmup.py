"""The weight warm-up after start-up: from a low weight up to the registered one."""

from __future__ import annotations

from typing import Literal

from agent.deadline import Clock, Deadline
from agent.exceptions import AgentError
from agent.logs import get_logger
from agent.sidecar.seams import WeightedRegistry
from agent.sidecar.settings import WarmupConfig
from agent.sidecar.state import SidecarState

log = get_logger()


def warmup_weight(
    elapsed: float,
    duration: float,
    start: float,
    target: float,
    curve: Literal["quadratic", "linear"] = "quadratic",
) -> float:
    """The weight ``elapsed`` seconds into a warm-up (quadratic, like Sermant's and MSE's)."""
    if duration <= 0 or elapsed >= duration:
        return target
    fraction = max(0.0, elapsed) / duration
    if curve == "quadratic":
        fraction *= fraction
    return start + (target - start) * fraction


class WarmUp:
    def __init__(
        self,
        weights: WeightedRegistry,
        config: WarmupConfig,
        clock: Clock,
        state: SidecarState,
    ) -> None:
        self.weights = weights
        self.config = config
        self.clock = clock
        self.state = state

    def run(self, target: float) -> None:
        """Raise the weight from a low start to ``target``; stop if anyone else changes it."""
        w, state = self.config, self.state
        start = min(w.start_weight, target)
        begun = self.clock.now()
        written: float | None = None
        log.info("warmup_started", target=target, duration_s=w.duration, curve=w.curve)
        while not state.stop.is_set() and not state.draining.is_set():
            elapsed = self.clock.now() - begun
            weight = round(warmup_weight(elapsed, w.duration, start, target, w.curve), 4)
            deadline = Deadline.after(self.clock, 3.0)
            try:
                if written is not None:
                    current = self.weights.get_instance(deadline)
                    if current is None:
                        return
                    if abs(current.weight - written) > 1e-3:
                        log.warning("warmup_stopped", reason="weight_changed_by_someone_else")
                        return
                if weight != written:
                    self.weights.set_weight(weight, deadline)
                    written = weight
            except AgentError as exc:
                log.warning("warmup_step_failed", error=str(exc))
            state.warmup_progress = min(1.0, elapsed / w.duration)
            if elapsed >= w.duration:
                log.info("warmup_done", weight=target)
                return
            self.clock.sleep(min(w.step, w.duration - elapsed))
        log.info("warmup_stopped", reason="draining" if state.draining.is_set() else "stopping")
