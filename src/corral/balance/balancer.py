"""Which replica of a model gets a request: cache-aware (the replica holding the longest prefix of the
conversation, unless it is overloaded next to the others), least-loaded or round-robin; replicas that failed
are ejected by their circuit breaker. No I/O: the drivers report what happened (begin/end), a poller reports
llama-server's slots (observe_slots), and this decides."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .breaker import Breaker
from .prefix import PrefixIndex

__all__ = ["STRATEGIES", "Balancer", "Outcome", "Replica", "Strategy"]

Strategy = Literal["cache-aware", "least-loaded", "round-robin"]
STRATEGIES: tuple[Strategy, ...] = ("cache-aware", "least-loaded", "round-robin")
Outcome = Literal["ok", "failed", "other"]  # other: a 4xx, a cancelled call: says nothing of health


@dataclass(slots=True)
class Replica:
    name: str
    breaker: Breaker
    limit: int | None = None  # requests this replica takes at once (None: no limit of its own)
    in_flight: int = 0  # requests corral sent that have not ended
    slots_total: int | None = None  # from llama-server /slots, when polled
    slots_busy: int = 0
    external: int = 0  # busy slots at the last poll beyond corral's own requests then: others' load
    requests: int = 0
    cache_hits: int = 0  # requests routed here while it held part of their prompt
    failures: int = 0
    # llama-server slot affinity: slot -> (the conversation it holds, last used); slots in use now
    slot_owner: dict[int, tuple[int, float]] = field(default_factory=dict)
    slot_busy: dict[int, int] = field(default_factory=dict)

    def load(self) -> int:
        """What this replica is working on: corral's own requests (exact, now), plus what other clients
        kept busy at the last poll. The poll's own count includes corral's requests of that moment and is
        up to a second old: taken as it is, it would still count requests long finished."""
        return self.in_flight + self.external

    def full(self) -> bool:
        return self.limit is not None and self.in_flight >= self.limit

    def slot_total_known(self) -> bool:
        return bool(self.slots_total)


@dataclass(slots=True)
class Balancer:
    names: Sequence[str]
    strategy: Strategy = "cache-aware"
    imbalance: int = 2  # a cache holder may carry this many requests more than the least-loaded replica
    replica_limit: int | None = None
    eject_after: int = 1
    cooldown: float = 5.0
    slot_affinity: bool = True  # pin a conversation to one llama-server slot (id_slot) once /slots is known
    index: PrefixIndex = field(default_factory=PrefixIndex)
    clock: Callable[[], float] = time.monotonic
    replicas: dict[str, Replica] = field(init=False)
    _turn: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a balancer needs at least one replica")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown balance strategy {self.strategy!r} (one of {', '.join(STRATEGIES)})")
        self.replicas = {
            n: Replica(n, Breaker(self.eject_after, self.cooldown), self.replica_limit) for n in self.names
        }

    # -- choosing ----------------------------------------------------------------------------------------------
    def pick(self, chain: Sequence[int] = (), exclude: Collection[str] = ()) -> str | None:
        """Choose a replica for a request whose prompt has the prefix ``chain`` and count it in flight
        (the caller must :meth:`end` it). None: every replica not excluded is ejected."""
        with self._lock:
            now = self.clock()
            usable = [r for r in self.replicas.values() if r.name not in exclude and r.breaker.allows(now)]
            if not usable:
                return None
            open_ = [r for r in usable if not r.full()] or usable
            held = self.index.match(chain, now) if chain and self.strategy == "cache-aware" else {}
            chosen = self._choose(open_, held)
            chosen.in_flight += 1
            chosen.requests += 1
            if held.get(chosen.name):
                chosen.cache_hits += 1
            chosen.breaker.trial()
            if chain and self.strategy == "cache-aware":
                self.index.record(chain, chosen.name, now)
            return chosen.name

    def _choose(self, usable: list[Replica], held: dict[str, int]) -> Replica:
        self._turn += 1
        if self.strategy == "round-robin":
            return usable[self._turn % len(usable)]
        lightest = self._least_loaded(usable)
        if held:
            holders = [r for r in usable if r.name in held]
            if holders:
                # the longest prefix; of equal ones, the least loaded
                best = max(holders, key=lambda r: (held[r.name], -r.load()))
                if best.load() < lightest.load() + self.imbalance:
                    return best
        return lightest

    def _least_loaded(self, usable: list[Replica]) -> Replica:
        """The least loaded; ties broken in turn, so new conversations spread over idle replicas."""
        n = len(usable)
        start = self._turn % n
        return min((usable[(start + i) % n] for i in range(n)), key=Replica.load)

    def slot_for(self, name: str, chain: Sequence[int]) -> int | None:
        """The llama-server slot of replica ``name`` this conversation should use (``id_slot``), or None.

        llama-server picks a slot by prompt similarity: a new conversation that shares the system prompt
        with a cached one is put in *its* slot and overwrites it, so conversations evict each other even
        while other slots sit empty. Pinned, a conversation keeps its slot (its first non-system message
        names it); a new one takes the least recently used free slot. Only once the replica's /slots told
        how many it has (the gateway polls it), and only for conversations (a chain)."""
        with self._lock:
            r = self.replicas[name]
            if not self.slot_affinity or not chain or not r.slot_total_known():
                return None
            owner, now = chain[0], self.clock()
            total = r.slots_total or 0
            slot = next((s for s, (o, _) in r.slot_owner.items() if o == owner and s < total), None)
            if slot is None:
                free = [s for s in range(total) if not r.slot_busy.get(s)] or list(range(total))
                slot = min(free, key=lambda s: r.slot_owner.get(s, (0, -1.0))[1])
            r.slot_owner[slot] = (owner, now)
            r.slot_busy[slot] = r.slot_busy.get(slot, 0) + 1
            return slot

    # -- what happened -----------------------------------------------------------------------------------------
    def end(self, name: str, outcome: Outcome, slot: int | None = None) -> None:
        with self._lock:
            r = self.replicas[name]
            r.in_flight = max(0, r.in_flight - 1)
            if slot is not None and r.slot_busy.get(slot):
                r.slot_busy[slot] -= 1
            if outcome == "ok":
                r.breaker.success()
            elif outcome == "failed":
                r.failures += 1
                r.breaker.failure(self.clock())
            elif r.breaker.probing:  # the probe said nothing of health: let another one go
                r.breaker.probing = False

    def observe_slots(self, name: str, busy: int, total: int) -> None:
        """llama-server's /slots, polled in the background: how many slots work (for anyone)."""
        with self._lock:
            r = self.replicas[name]
            r.slots_busy, r.slots_total = busy, total
            r.external = max(0, busy - r.in_flight)

    def probe(self, name: str, ok: bool) -> None:
        """A background health poll: a success re-admits an ejected replica once its cooldown is over
        (its cache is gone if it restarted, so the index forgets it); a failure ejects a healthy one."""
        with self._lock:
            r = self.replicas[name]
            now = self.clock()
            if ok:
                if r.breaker.opened_at is not None and r.breaker.allows(now) and r.breaker.success():
                    self.index.forget(name)  # it may have restarted: its caches are gone
                    r.slot_owner.clear()
            elif r.breaker.opened_at is None or r.breaker.allows(now):
                r.failures += 1
                r.breaker.failure(now, escalate=False)

    def retry_in(self) -> float:
        """Seconds until some replica may be tried again (0 if one may now)."""
        now = self.clock()
        return min(r.breaker.retry_in(now) for r in self.replicas.values())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per replica: state, load and how often the cache was where the request went."""
        now = self.clock()
        return {
            r.name: {
                "state": r.breaker.state(now),
                "in_flight": r.in_flight,
                "slots_busy": r.slots_busy if r.slots_total is not None else None,
                "slots_total": r.slots_total,
                "requests": r.requests,
                "cache_hits": r.cache_hits,
                "cache_hit_share": round(r.cache_hits / r.requests, 4) if r.requests else None,
                "failures": r.failures,
                "ejections": r.breaker.ejections,
            }
            for r in self.replicas.values()
        }
