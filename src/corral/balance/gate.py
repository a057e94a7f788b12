"""A model's concurrency limit with a bounded wait queue (asyncio, no I/O): requests beyond ``limit``
wait in turn, at most ``queue`` of them for at most ``timeout`` seconds; beyond that :class:`Refused`
(the gateway answers 429 with its ``retry_after``)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

__all__ = ["Gate", "Refused"]


class Refused(Exception):
    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Gate:
    def __init__(self, limit: int, queue: int = 0, timeout: float = 30.0) -> None:
        self.limit, self.queue, self.timeout = limit, queue, timeout
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.queued = 0  # requests that waited
        self.rejected = 0  # refused: queue full or timed out
        self.timed_out = 0
        self.wait_total = 0.0  # seconds spent waiting, all requests
        self.wait_max = 0.0
        self._hold = 1.0  # moving average of how long a request holds its place, for Retry-After

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        """A fair guess at when a place frees: the queue ahead, drained ``limit`` at a time."""
        return max(1, math.ceil((self.waiting + 1) / self.limit * self._hold))

    async def acquire(self) -> float:
        """Wait for a place; the seconds waited. Raises Refused when the queue is full or the wait times out."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return 0.0
        if len(self._waiters) >= self.queue:
            self.rejected += 1
            raise Refused(f"{self.active} requests running and {self.waiting} waiting (the limit)", self.retry_after())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.queued += 1
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except BaseException as exc:
            if fut.done() and not fut.cancelled():
                self.release()  # the place was handed over just as we gave up: pass it on
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            if isinstance(exc, TimeoutError):
                self.timed_out += 1
                self.rejected += 1
                self._note_wait(time.perf_counter() - started)
                raise Refused(f"waited {self.timeout:g} s in the queue", self.retry_after()) from None
            raise
        waited = time.perf_counter() - started
        self._note_wait(waited)
        return waited

    def _note_wait(self, waited: float) -> None:
        self.wait_total += waited
        self.wait_max = max(self.wait_max, waited)

    def release(self, held: float | None = None) -> None:
        """A request ended (``held`` seconds): its place goes to the first waiter still waiting."""
        if held is not None:
            self._hold = 0.8 * self._hold + 0.2 * held
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.active = max(0, self.active - 1)

    def snapshot(self) -> dict[str, float | int]:
        return {
            "limit": self.limit,
            "active": self.active,
            "waiting": self.waiting,
            "queue": self.queue,
            "queued": self.queued,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
            "wait_seconds_total": round(self.wait_total, 6),
            "wait_seconds_max": round(self.wait_max, 6),
        }
