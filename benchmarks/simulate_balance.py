"""Beyond one machine, in simulation: corral's real balancer (corral.balance) driving 100 simulated replicas
and 10,000 multi-turn conversations, per strategy.

    python benchmarks/simulate_balance.py [--replicas 100] [--conversations 10000] [--json out.json]

A discrete-event simulation (one heap of timed events, a simulated clock given to the Balancer): conversations
arrive as a Poisson process; each has 2 to 8 turns with think time between them; every request is routed by
``Balancer.pick`` on the real ``prefix_chain`` of its messages, and ``Balancer.end`` is called when it finishes,
so the balancer sees the same in-flight counts it sees in the gateway. Each replica serves ``--slots``
requests at once (more wait in its FIFO queue, as llama-server defers them) and keeps an LRU KV cache of
``--kv-tokens`` tokens of conversation prefixes: a request finds the tokens of its conversation's previous
prompt and answer cached if its replica still holds them, else only the shared system prompt (if that
replica has served it recently). Service time = uncached prompt tokens / ``--prompt-rate`` + answer tokens /
``--gen-rate`` (defaults: the rates llama.cpp reported on this machine in benchmarks/balance.py; one slot
gets the whole rate, several share it).

Reported per strategy: cache-hit share (cached / all prompt tokens, follow-up turns and all), load imbalance
(max / mean requests per replica, and of busy time), queueing delay (mean, p50, p95, p99), time to first
token; and for cache-aware, how the prefix index grows (links, bytes) as conversations come in.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from corral.balance import Balancer, PrefixIndex, prefix_chain

STRATEGIES = ("cache-aware", "least-loaded", "round-robin")
# llama.cpp's own averages (llamacpp:prompt_tokens_seconds, predicted_tokens_seconds) for gemma-3-270m on this
# 2-core machine, read from the replicas' /metrics in benchmarks/balance.py (shared with other work: slow).
PROMPT_RATE = 50.0
GEN_RATE = 5.0


@dataclass
class Conversation:
    cid: int
    system: int  # which application's system prompt
    turns: int
    messages: list[tuple[str, str]] = field(default_factory=list)
    tokens: int = 0  # the prompt so far (system + every message), in tokens
    done_turns: int = 0


@dataclass
class Replica:
    name: str
    kv: OrderedDict[Any, int] = field(default_factory=OrderedDict)  # cached prefix -> tokens (LRU)
    kv_used: int = 0
    busy: int = 0
    queue: list[Any] = field(default_factory=list)
    busy_time: float = 0.0
    requests: int = 0


def kv_put(r: Replica, key: Any, tokens: int, capacity: int) -> None:
    old = r.kv.pop(key, 0)
    r.kv_used -= old
    r.kv[key] = tokens
    r.kv_used += tokens
    while r.kv_used > capacity and r.kv:
        _, t = r.kv.popitem(last=False)
        r.kv_used -= t


def index_bytes(index: PrefixIndex) -> int:
    """The index's own memory: the ordered dict, its int keys, the (replica, time) tuples and their floats
    (replica names are shared strings, not counted; a tuple shared by a request's links counted once)."""
    links = index._links  # measuring the real structure
    total = sys.getsizeof(links) + sum(sys.getsizeof(k) for k in links)
    entries = {id(e): e for e in links.values()}
    return total + sum(sys.getsizeof(e) + sys.getsizeof(e[1]) for e in entries.values())


def simulate(strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    clock = [0.0]
    names = [f"r{i}" for i in range(args.replicas)]
    balancer = Balancer(names, strategy, imbalance=args.imbalance, index=PrefixIndex(args.index_size, args.index_ttl),
                        clock=lambda: clock[0])  # fmt: skip
    reps = {n: Replica(n) for n in names}
    events: list[tuple[float, int, str, Any]] = []
    seq = [0]

    def push(t: float, kind: str, payload: Any) -> None:
        seq[0] += 1
        heapq.heappush(events, (t, seq[0], kind, payload))

    # New conversations arrive at the rate that would keep the replicas --utilization busy if nothing were
    # cached (so a strategy's cache hits show as spare capacity, and its misses as queueing).
    turns = 5.0  # mean of randint(2, 8)
    mean_prompt = args.system_tokens + (sum(args.first_user) / 2 + (turns - 1) * (sum(args.follow_user) / 2)) / turns
    mean_prompt += (turns - 1) / 2 * (sum(args.answer) / 2 + sum(args.follow_user) / 2)  # the history grows
    service = mean_prompt / args.prompt_rate + sum(args.answer) / 2 / args.gen_rate
    arrival_rate = args.utilization * args.replicas / (turns * service)
    t = 0.0
    for cid in range(args.conversations):
        t += rng.expovariate(arrival_rate)
        convo = Conversation(cid, rng.randrange(args.apps), rng.randint(2, 8))
        convo.tokens = args.system_tokens
        push(t, "turn", convo)

    prompt_all = cached_all = prompt_follow = cached_follow = 0
    waits: list[float] = []
    ttfts: list[float] = []
    growth: list[dict[str, Any]] = []
    arrived = 0
    next_mark = max(1, args.conversations // 10)
    rate_share = args.slots  # a slot's rate: the replica's divided among its slots

    def start(r: Replica, req: dict[str, Any]) -> None:
        r.busy += 1
        now = clock[0]
        waits.append(now - req["arrival"])
        convo: Conversation = req["convo"]
        prefill = req["prompt"] - req["cached"]
        prefill_s = prefill / args.prompt_rate * rate_share
        gen_s = req["answer"] / args.gen_rate * rate_share
        ttfts.append(now - req["arrival"] + prefill_s)
        r.busy_time += prefill_s + gen_s
        push(now + prefill_s + gen_s, "done", (r, req, convo))

    while events:
        now, _, kind, payload = heapq.heappop(events)
        clock[0] = now
        if kind == "turn":
            convo = payload
            first = convo.done_turns == 0
            if first:
                arrived += 1
                if arrived % next_mark == 0 and strategy == "cache-aware":
                    index = balancer.index
                    growth.append({"conversations": arrived, "links": len(index), "bytes": index_bytes(index)})
            user = rng.randint(*args.first_user) if first else rng.randint(*args.follow_user)
            convo.messages.append(("user", f"{convo.cid}:{convo.done_turns}"))
            prompt = convo.tokens + user
            messages = [("system", f"app{convo.system}"), *convo.messages]
            name = balancer.pick(prefix_chain(messages))
            assert name is not None
            r = reps[name]
            r.requests += 1
            held = r.kv.get(("c", convo.cid), 0)
            if held:
                r.kv.move_to_end(("c", convo.cid))
            elif ("s", convo.system) in r.kv:
                held = args.system_tokens
                r.kv.move_to_end(("s", convo.system))
            cached = min(held, prompt)
            prompt_all += prompt
            cached_all += cached
            if not first:
                prompt_follow += prompt
                cached_follow += cached
            answer = rng.randint(*args.answer)
            req = {"arrival": now, "convo": convo, "prompt": prompt, "cached": cached, "answer": answer, "user": user}
            if r.busy < args.slots:
                start(r, req)
            else:
                r.queue.append(req)
        else:  # done
            r, req, convo = payload
            r.busy -= 1
            balancer.end(r.name, "ok")
            convo.tokens = req["prompt"] + req["answer"]
            convo.messages.append(("assistant", f"{convo.cid}:{convo.done_turns}"))
            convo.done_turns += 1
            kv_put(r, ("s", convo.system), args.system_tokens, args.kv_tokens)
            kv_put(r, ("c", convo.cid), convo.tokens, args.kv_tokens)
            if r.queue:
                start(r, r.queue.pop(0))
            if convo.done_turns < convo.turns:
                push(now + rng.expovariate(1 / args.think), "turn", convo)

    per_replica = [r.requests for r in reps.values()]
    busy = [r.busy_time for r in reps.values()]
    waits.sort()
    ttfts.sort()

    def q(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))]

    return {
        "requests": len(waits),
        "cache_hit_share_all": cached_all / prompt_all,
        "cache_hit_share_followups": cached_follow / prompt_follow,
        "imbalance_requests": max(per_replica) / statistics.fmean(per_replica),
        "imbalance_busy": max(busy) / statistics.fmean(busy),
        "queue_mean_s": statistics.fmean(waits),
        "queue_p50_s": q(waits, 0.5),
        "queue_p95_s": q(waits, 0.95),
        "queue_p99_s": q(waits, 0.99),
        "ttft_p50_s": q(ttfts, 0.5),
        "ttft_p95_s": q(ttfts, 0.95),
        "sim_hours": clock[0] / 3600,
        "index_growth": growth,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=100)
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--slots", type=int, default=4, help="requests a replica serves at once")
    p.add_argument("--prompt-rate", type=float, default=PROMPT_RATE, help="prompt tokens/s of one replica")
    p.add_argument("--gen-rate", type=float, default=GEN_RATE, help="generated tokens/s of one replica")
    p.add_argument("--kv-tokens", type=int, default=8 * 1024, help="KV cache of one replica, in tokens")
    p.add_argument("--system-tokens", type=int, default=300)
    p.add_argument("--first-user", type=int, nargs=2, default=(100, 600), help="first message tokens, min max")
    p.add_argument("--follow-user", type=int, nargs=2, default=(20, 100), help="follow-up message tokens")
    p.add_argument("--answer", type=int, nargs=2, default=(10, 40), help="answer tokens, min max")
    p.add_argument("--apps", type=int, default=10, help="distinct system prompts")
    p.add_argument("--utilization", type=float, default=0.8, help="replica load if nothing were cached")
    p.add_argument("--think", type=float, default=30.0, help="mean seconds between a conversation's turns")
    p.add_argument("--imbalance", type=int, default=2)
    p.add_argument("--index-size", type=int, default=100_000)
    p.add_argument("--index-ttl", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--json", nargs="?", const="-")
    args = p.parse_args(argv)
    results = {}
    for strategy in args.strategies.split(","):
        started = time.perf_counter()
        results[strategy] = simulate(strategy, args)
        results[strategy]["wall_s"] = time.perf_counter() - started
        print(f"[simulate_balance] {strategy}: {results[strategy]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    if args.json:
        text = json.dumps({"args": vars(args), "results": results}, indent=2)
        if args.json == "-":
            print(text)
            return 0
        with open(args.json, "w") as fh:
            fh.write(text)
    head = (f"{'strategy':<14} {'hit share':>9} {'follow-ups':>10} {'imbalance req':>13} {'busy':>6} "
            f"{'queue mean':>10} {'p50':>7} {'p95':>7} {'p99':>7} {'TTFT p50':>8} {'p95':>7}")  # fmt: skip
    print(f"{args.replicas} replicas x {args.slots} slots, {args.conversations} conversations, prompt "
          f"{args.prompt_rate:g} tok/s, generation {args.gen_rate:g} tok/s, KV {args.kv_tokens} tokens, "
          f"utilization {args.utilization:g} uncached")  # fmt: skip
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(f"{name:<14} {r['cache_hit_share_all']:>9.1%} {r['cache_hit_share_followups']:>10.1%} "
              f"{r['imbalance_requests']:>13.2f} {r['imbalance_busy']:>6.2f} {r['queue_mean_s']:>9.2f}s "
              f"{r['queue_p50_s']:>6.2f}s {r['queue_p95_s']:>6.2f}s {r['queue_p99_s']:>6.2f}s "
              f"{r['ttft_p50_s']:>7.2f}s {r['ttft_p95_s']:>6.2f}s")  # fmt: skip
    growth = results.get("cache-aware", {}).get("index_growth") or []
    if growth:
        print("\nprefix index (cache-aware), as conversations arrive:")
        print(f"{'conversations':>13} {'links':>8} {'MB':>7}")
        for g in growth:
            print(f"{g['conversations']:>13} {g['links']:>8} {g['bytes'] / 1e6:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
