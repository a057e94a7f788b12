"""Replicas and queues on ``/metrics``, read from the router at scrape time (nothing is counted twice and
the hot path pays nothing). Labels are only configured names: the model's and its replicas'."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .routing import Router

__all__ = ["ReplicaCollector"]

_REPLICA = (
    ("corral_replica_healthy", "gauge", "1 while the replica takes requests, 0 while it is ejected", None),
    ("corral_replica_in_flight", "gauge", "Requests corral has in flight on the replica", "in_flight"),
    ("corral_replica_slots_busy", "gauge", "Busy slots the replica's /slots reported", "slots_busy"),
    ("corral_replica_requests", "counter", "Requests routed to the replica", "requests"),
    ("corral_replica_cache_hits", "counter", "Requests routed to a replica holding part of their prompt", "cache_hits"),
    ("corral_replica_failures", "counter", "Refused, timed-out or 5xx attempts on the replica", "failures"),
    ("corral_replica_ejections", "counter", "Times the replica was ejected", "ejections"),
)
_QUEUE = (
    ("corral_queue_active", "gauge", "Requests running under the model's concurrency limit", "active"),
    ("corral_queue_depth", "gauge", "Requests waiting for a place", "waiting"),
    ("corral_queue_limit", "gauge", "The model's concurrency limit", "limit"),
    ("corral_queue_queued", "counter", "Requests that had to wait", "queued"),
    ("corral_queue_rejected", "counter", "Requests refused with 429 (queue full or wait too long)", "rejected"),
    ("corral_queue_wait_seconds", "counter", "Seconds requests spent waiting", "wait_seconds_total"),
)


def _family(name: str, kind: str, doc: str, labels: list[str]) -> Any:
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


class ReplicaCollector(Collector):
    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Any]:
        state = self.router.replica_state()
        replica = {n: _family(n, k, d, ["model", "replica"]) for n, k, d, _ in _REPLICA}
        queue = {n: _family(n, k, d, ["model"]) for n, k, d, _ in _QUEUE}
        for model, entry in state.items():
            for name, r in entry["replicas"].items():
                for metric, _, _, key in _REPLICA:
                    value = (r.get("state", "healthy") != "ejected") if key is None else r.get(key)
                    if value is not None:
                        replica[metric].add_metric([model, name], float(value))
            gate = entry["queue"]
            if gate is not None:
                for metric, _, _, key in _QUEUE:
                    queue[metric].add_metric([model], float(gate[key]))
        yield from replica.values()
        yield from queue.values()
