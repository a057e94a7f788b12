"""The balancing core: prefix index, breaker, balancer strategies, the gate, the config table."""

from __future__ import annotations

import asyncio

import pytest

from corral.balance import Balancer, Breaker, Gate, PrefixIndex, Refused, model_policy, prefix_chain
from corral.errors import ConfigurationError
from corral.types import Message


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def convo(n: int, turns: int) -> list[Message]:
    msgs = [Message.system("be brief"), Message.user(f"conversation {n}")]
    for t in range(turns):
        msgs += [Message.assistant(f"answer {n}.{t}"), Message.user(f"follow-up {n}.{t}")]
    return msgs


# -- prefix index ----------------------------------------------------------------------------------------------
def test_chain_links_cover_everything_before_them():
    a, b = prefix_chain(convo(1, 2)), prefix_chain(convo(1, 3))
    assert b[: len(a)] == a and len(b) == len(a) + 2
    assert prefix_chain(convo(2, 2))[0] != a[0]  # the shared system prompt makes no link of its own
    assert prefix_chain([{"role": "user", "content": "x"}]) == prefix_chain([{"role": "user", "content": "x"}])


def test_index_finds_the_longest_prefix_per_replica_and_forgets_old_links():
    index = PrefixIndex(capacity=100, ttl=10)
    index.record(prefix_chain(convo(1, 1)), "a", now=0)
    index.record(prefix_chain(convo(1, 0)), "b", now=0)
    held = index.match(prefix_chain(convo(1, 2)), now=1)
    assert held == {"a": 3, "b": 1}
    assert index.match(prefix_chain(convo(1, 2)), now=11) == {}  # past the TTL: its cache is probably gone


def test_index_memory_is_bounded():
    index = PrefixIndex(capacity=50)
    for n in range(1000):
        index.record(prefix_chain(convo(n, 3)), f"r{n % 7}", now=n)
    assert len(index) == 50
    assert index.match(prefix_chain(convo(999, 3)), now=1000)  # the newest survive


# -- breaker ---------------------------------------------------------------------------------------------------
def test_breaker_ejects_cools_down_probes_and_readmits():
    b = Breaker(failures_to_eject=2, cooldown=5)
    assert not b.failure(0) and b.allows(0)
    assert b.failure(1) and not b.allows(2) and b.state(2) == "ejected"
    assert b.allows(6) and b.state(6) == "probing"
    b.trial()
    assert not b.allows(6)  # one probe at a time
    assert b.failure(7) and b.current_cooldown == 10 and not b.allows(16)  # a failed probe: out for longer
    assert b.allows(17)
    b.trial()
    assert b.success() and b.state(17) == "healthy" and b.allows(17)


# -- balancer --------------------------------------------------------------------------------------------------
def test_cache_aware_sticks_to_the_holder_and_spreads_new_conversations():
    bal = Balancer(["a", "b", "c"], clock=Clock())
    first = {n: bal.pick(prefix_chain(convo(n, 0))) for n in range(6)}
    for name in first.values():
        assert name is not None
        bal.end(name, "ok")
    assert sorted(first.values()) == ["a", "a", "b", "b", "c", "c"]  # idle replicas share new conversations
    for turn in range(1, 4):
        for n in range(6):
            got = bal.pick(prefix_chain(convo(n, turn)))
            assert got == first[n]
            bal.end(got, "ok")
    snap = bal.snapshot()
    assert sum(r["cache_hits"] for r in snap.values()) == 18


def test_cache_aware_leaves_an_overloaded_holder():
    bal = Balancer(["a", "b"], imbalance=2, clock=Clock())
    holder = bal.pick(prefix_chain(convo(1, 0)))
    assert holder is not None
    bal.end(holder, "ok")
    other = "b" if holder == "a" else "a"
    bal.replicas[holder].in_flight += 1  # one more request than the other: still the holder
    assert bal.pick(prefix_chain(convo(1, 1))) == holder
    bal.end(holder, "ok")
    bal.replicas[holder].in_flight += 1  # two more: past the imbalance, the other replica takes it
    assert bal.pick(prefix_chain(convo(1, 1))) == other


def test_round_robin_and_least_loaded():
    rr = Balancer(["a", "b", "c"], "round-robin", clock=Clock())
    picks = [rr.pick() for _ in range(6)]
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]
    ll = Balancer(["a", "b"], "least-loaded", clock=Clock())
    ll.observe_slots("a", busy=3, total=4)  # someone else keeps a busy
    assert [ll.pick() for _ in range(3)] == ["b", "b", "b"]
    assert ll.pick() in ("a", "b")


def test_failures_eject_and_the_others_take_over():
    clock = Clock()
    bal = Balancer(["a", "b"], "round-robin", cooldown=5, clock=clock)
    name = bal.pick()
    assert name is not None
    bal.end(name, "failed")
    other = "b" if name == "a" else "a"
    assert {bal.pick() for _ in range(4)} == {other}
    assert bal.pick(exclude={other}) is None
    assert bal.snapshot()[name]["state"] == "ejected"
    clock.now = 6
    bal.probe(name, True)  # a health poll after the cooldown re-admits it
    assert bal.snapshot()[name]["state"] == "healthy"


def test_a_client_error_says_nothing_of_health():
    bal = Balancer(["a"], clock=Clock())
    for _ in range(5):
        assert bal.pick() == "a"
        bal.end("a", "other")
    assert bal.snapshot()["a"]["state"] == "healthy" and bal.replicas["a"].in_flight == 0


def test_replica_limit_prefers_replicas_with_room():
    bal = Balancer(["a", "b"], replica_limit=1, clock=Clock())
    holder = bal.pick(prefix_chain(convo(1, 0)))  # now at its limit (still in flight)
    assert bal.pick(prefix_chain(convo(1, 1))) not in (holder, None)


# -- gate ------------------------------------------------------------------------------------------------------
def test_gate_queues_then_refuses_with_retry_after():
    async def main() -> None:
        gate = Gate(limit=1, queue=1, timeout=0.3)
        assert await gate.acquire() == 0.0
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0.01)
        assert gate.waiting == 1
        with pytest.raises(Refused) as full:
            await gate.acquire()  # the queue is full
        assert full.value.retry_after >= 1
        gate.release(0.5)
        assert await waiter > 0
        with pytest.raises(Refused, match="waited"):
            await gate.acquire()  # nobody releases: times out
        snap = gate.snapshot()
        assert snap["rejected"] == 2 and snap["timed_out"] == 1 and snap["waiting"] == 0
        gate.release()
        assert gate.active == 0

    asyncio.run(main())


def test_gate_passes_a_place_on_when_a_waiter_is_cancelled():
    async def main() -> None:
        gate = Gate(limit=1, queue=5, timeout=5)
        await gate.acquire()
        first = asyncio.ensure_future(gate.acquire())
        second = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0.01)
        first.cancel()
        gate.release()
        assert await asyncio.wait_for(second, 1) >= 0
        assert gate.active == 1 and gate.waiting == 0

    asyncio.run(main())


# -- config ----------------------------------------------------------------------------------------------------
def test_model_policy_reads_the_table_and_names_bad_fields():
    table = {"provider": ["a", "b"], "balance": "round-robin", "replica_concurrency": 2}
    p = model_policy(table, "models.m", {"a", "b"})
    assert p.replicas == ("a", "b") and p.balance == "round-robin" and p.limit == 4
    with pytest.raises(ConfigurationError, match=r"models\.m\.balance"):
        model_policy({"provider": ["a", "b"], "balance": "random"}, "models.m", {"a", "b"})
    with pytest.raises(ConfigurationError, match="'c' is not configured"):
        model_policy({"provider": ["a", "c"]}, "models.m", {"a", "b"})
    with pytest.raises(ConfigurationError, match="concurrency"):
        model_policy({"provider": "a", "concurrency": 0}, "models.m", {"a"})


def test_slot_affinity_keeps_a_conversation_in_its_slot_and_fills_free_slots_first():
    bal = Balancer(["a"], clock=Clock())
    assert bal.slot_for("a", prefix_chain(convo(1, 0))) is None  # slots unknown until /slots was polled
    bal.observe_slots("a", busy=0, total=3)
    first = {n: bal.slot_for("a", prefix_chain(convo(n, 0))) for n in range(3)}
    assert sorted(first.values()) == [0, 1, 2]  # three conversations, three slots: none shares
    for slot in first.values():
        bal.end("a", "ok", slot)
    for n in range(3):
        assert bal.slot_for("a", prefix_chain(convo(n, 2))) == first[n]
        bal.end("a", "ok", first[n])
    assert bal.slot_for("a", prefix_chain(convo(9, 0))) == first[0]  # a fourth: the least recently used slot
    assert bal.slot_for("a", ()) is None  # not a conversation: llama-server chooses
