"""A circuit breaker per replica: closed (in use) -> open (ejected, for a cooldown) -> half-open (one
probe request, or a successful health poll) -> closed again. No clock of its own: callers pass ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Breaker", "BreakerState"]

BreakerState = Literal["healthy", "ejected", "probing"]


@dataclass(slots=True)
class Breaker:
    failures_to_eject: int = 1  # consecutive failures (refused, timed out, 5xx) that eject a replica
    cooldown: float = 5.0  # seconds ejected before a probe; doubles on each failed probe, up to max_cooldown
    max_cooldown: float = 60.0
    failures: int = 0
    opened_at: float | None = None
    current_cooldown: float = 0.0
    probing: bool = False  # a half-open trial request is out
    ejections: int = 0

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return "healthy"
        if self.probing or now >= self.opened_at + self.current_cooldown:
            return "probing"
        return "ejected"

    def allows(self, now: float) -> bool:
        """Whether a request may go to this replica now (a half-open replica takes one at a time)."""
        if self.opened_at is None:
            return True
        return not self.probing and now >= self.opened_at + self.current_cooldown

    def retry_in(self, now: float) -> float:
        """Seconds until this replica may be tried again (0: now)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.current_cooldown - now)

    def trial(self) -> None:
        """A request goes out to a half-open replica: the probe."""
        if self.opened_at is not None:
            self.probing = True

    def success(self) -> bool:
        """An answer came back. True when this re-admits an ejected replica."""
        readmitted = self.opened_at is not None
        self.failures, self.opened_at, self.probing, self.current_cooldown = 0, None, False, 0.0
        return readmitted

    def failure(self, now: float, *, escalate: bool = True) -> bool:
        """No answer or a 5xx. True when this ejects the replica (or keeps it out after a failed probe).
        ``escalate``: a failed request probe doubles the cooldown; a failed background health poll does
        not (it risks no caller's request, and a replica that restarts should be back soon after)."""
        self.failures += 1
        if self.opened_at is not None:  # a failed probe: out again, for longer
            if escalate:
                self.current_cooldown = min(self.max_cooldown, max(self.cooldown, self.current_cooldown * 2))
            self.opened_at, self.probing = now, False
            return True
        if self.failures >= self.failures_to_eject:
            self.opened_at, self.current_cooldown, self.probing = now, self.cooldown, False
            self.ejections += 1
            return True
        return False
