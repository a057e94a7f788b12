"""Balancing replicas by where the KV cache is: corral cache-aware vs round-robin vs least-loaded vs
LiteLLM's router (least-busy, simple-shuffle), on the same real llama.cpp replicas, in one run.

    python benchmarks/balance.py [--replicas 2] [--conversations 6] [--turns 3] [--rounds 2] [--json out.json]

Each contender is a gateway process in front of the same N llama-server replicas (the bundled gemma-3-270m,
``-c 4096 -np 4``: four slots, each holding one conversation's KV cache): ``corral serve`` with
``[models.gemma] provider = [r0, r1, …]`` and ``balance = …``, and the LiteLLM proxy (from
benchmarks/.venv-litellm, ``--setup-litellm`` creates it) with one deployment per replica and
``routing_strategy`` least-busy or simple-shuffle. All gateways start first; then ``--rounds`` rounds run
every contender in turn, one at a time, the order rotated each round, so that a busy spell of the shared
machine does not fall on one contender.

The workload, per contender and round (its conversations, system prompt included, are its own: no contender
finds another's prompts in a replica's cache): ``--conversations`` conversations share a ~100-token system
prompt and each opens with its own ~450-token message (a pasted draft to discuss). Phase 1 sends every first turn
(``--concurrency`` at a time); phase 2 sends the follow-up turns, shuffled across conversations (each
conversation's turns stay in order), ``--concurrency`` at a time. All requests stream, ``max_tokens=4``,
``temperature=0``. Reported per contender: time to first token (p50/p95) of the follow-up turns and of all turns;
the share of follow-up prompt tokens the replicas served from their cache, from each replica's own /metrics during
phase 2: ``prompt_tokens_cached_total / (prompt_tokens_total + prompt_tokens_cached_total)`` (llama-server counts
the tokens it processed apart from those it reused); how the follow-up prompt tokens spread over the replicas;
throughput (requests/s over the contender's wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway_overhead import free_port, gateway, litellm_env, setup_litellm  # noqa: E402
from sdk_overhead import _child_env  # noqa: E402

DEFAULT_LITELLM_VENV = HERE / ".venv-litellm"
CONTENDERS = ("corral cache-aware", "corral round-robin", "corral least-loaded", "litellm least-busy",
              "litellm simple-shuffle")  # fmt: skip
# Not in the default run: cache-aware without llama.cpp slot affinity (no id_slot), to measure what it adds.
EXTRA = ("corral cache-aware-no-id-slot",)
SYSTEM = "You are a terse assistant. " + " ".join(f"Guideline {i}: answer in a few words." for i in range(8))
TOPICS = ["rivers", "volcanoes", "owls", "glaciers", "comets", "tides", "mosses", "deserts", "bridges", "violins"]


def log(msg: str) -> None:
    print(f"[balance] {msg}", file=sys.stderr, flush=True)


def first_question(tag: str, n: int) -> str:
    """A conversation's own opening: a pasted draft (~400 tokens) to talk about, as in a chat about a
    document or code. What a follow-up can find cached is mostly this, not the shared system prompt."""
    topic = TOPICS[n % len(TOPICS)]
    draft = " ".join(
        f"Paragraph {k}: {topic} matter to people in region {k * 7 + n} for reasons {k}, {k + 3} and {k + 9}."
        for k in range(16)
    )
    return f"[{tag}-{n}] Here is my draft school report about {topic}: {draft} What is missing?"


def replica_metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {m[1]: float(m[2]) for m in re.finditer(r"^llamacpp:(\w+) ([0-9.e+-]+)$", text, re.M)}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def ask(client: httpx.AsyncClient, url: str, messages: list[dict[str, str]]) -> tuple[float, str]:
    """One streamed request: (seconds to the first content token, the answer's text)."""
    body = {"model": "gemma", "messages": messages, "max_tokens": 4, "temperature": 0, "stream": True}
    started = time.perf_counter()
    first: float | None = None
    text = ""
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first if first is not None else time.perf_counter() - started
                    text += piece
    return (first if first is not None else time.perf_counter() - started), text or "ok"


async def workload(url: str, tag: str, args: argparse.Namespace, replicas: list[str]) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}-{tag}")
    # Each contender's own system prompt too: none finds a prompt another contender left in a replica's cache.
    system = f"[{tag}] {SYSTEM}"
    convos = [[{"role": "system", "content": system}, {"role": "user", "content": first_question(tag, n)}]
              for n in range(args.conversations)]  # fmt: skip
    sem = asyncio.Semaphore(args.concurrency)
    ttft_first: list[float] = []
    ttft_follow: list[float] = []
    async with httpx.AsyncClient(timeout=300, trust_env=False) as client:

        async def turn(n: int, out: list[float], follow: str | None) -> None:
            async with sem:
                if follow is not None:
                    convos[n].append({"role": "user", "content": follow})
                t, text = await ask(client, url, convos[n])
                out.append(t)
                convos[n].append({"role": "assistant", "content": text})

        started = time.perf_counter()
        await asyncio.gather(*(turn(n, ttft_first, None) for n in range(args.conversations)))
        before = [replica_metrics(u) for u in replicas]
        # Phase 2: follow-ups shuffled across conversations; a conversation's next turn waits for its last.
        order = [n for n in range(args.conversations) for _ in range(args.turns - 1)]
        rng.shuffle(order)
        locks = [asyncio.Lock() for _ in convos]
        counts = [0] * len(convos)

        async def follow_up(n: int) -> None:
            async with locks[n]:
                counts[n] += 1
                await turn(n, ttft_follow, f"And one more short fact, please ({counts[n]}).")

        await asyncio.gather(*(follow_up(n) for n in order))
        wall = time.perf_counter() - started
    after = [replica_metrics(u) for u in replicas]
    pairs = list(zip(after, before, strict=True))
    # llama-server counts the prompt tokens it processed (prompt_tokens_total) apart from those it found
    # in its cache (prompt_tokens_cached_total): a request's prompt is their sum
    cached = [a["prompt_tokens_cached_total"] - b["prompt_tokens_cached_total"] for a, b in pairs]
    prompt = [a["prompt_tokens_total"] - b["prompt_tokens_total"] + c for (a, b), c in zip(pairs, cached, strict=True)]
    rates = [[a.get("prompt_tokens_seconds", 0.0), a.get("predicted_tokens_seconds", 0.0)] for a in after]
    return {"ttft_first": ttft_first, "ttft_follow": ttft_follow, "prompt": prompt, "cached": cached,
            "wall_s": wall, "requests": args.conversations * args.turns, "rates": rates}  # fmt: skip


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One contender's rounds together."""
    first = [t for r in rounds for t in r["ttft_first"]]
    follow = [t for r in rounds for t in r["ttft_follow"]]
    prompt = [sum(col) for col in zip(*(r["prompt"] for r in rounds), strict=True)]
    cached = [sum(col) for col in zip(*(r["cached"] for r in rounds), strict=True)]
    wall = sum(r["wall_s"] for r in rounds)
    requests = sum(r["requests"] for r in rounds)
    return {
        "ttft_follow_p50_ms": pct(follow, 0.5) * 1000,
        "ttft_follow_p95_ms": pct(follow, 0.95) * 1000,
        "ttft_all_p50_ms": pct(first + follow, 0.5) * 1000,
        "ttft_all_p95_ms": pct(first + follow, 0.95) * 1000,
        "followup_prompt_tokens": sum(prompt),
        "followup_cached_share": sum(cached) / sum(prompt) if sum(prompt) else float("nan"),
        "followup_prompt_tokens_per_replica": prompt,
        "requests": requests,
        "wall_s": wall,
        "throughput_rps": requests / wall,
        "rounds": rounds,
    }


def corral_config(path: Path, replicas: list[str], strategy: str) -> None:
    lines = []
    for i, url in enumerate(replicas):
        lines += [f"[providers.r{i}]", 'type = "llamacpp"', f'base_url = "{url}"', ""]
    names = ", ".join(f'"r{i}"' for i in range(len(replicas)))
    slots = "false" if strategy.endswith("-no-id-slot") else "true"
    strategy = strategy.removesuffix("-no-id-slot")
    lines += ["[models.gemma]", f"provider = [{names}]", f'balance = "{strategy}"', f"slot_affinity = {slots}", ""]
    path.write_text("\n".join(lines))


def litellm_config(path: Path, replicas: list[str], strategy: str) -> None:
    lines = ["model_list:"]
    for url in replicas:
        lines += ["  - model_name: gemma", "    litellm_params:", "      model: openai/gemma",
                  f"      api_base: {url}/v1", "      api_key: x"]  # fmt: skip
    lines += ["router_settings:", f"  routing_strategy: {strategy}", "  num_retries: 0",
              "general_settings:", "  dangerously_permit_weak_or_unset_master_key: true", ""]  # fmt: skip
    path.write_text("\n".join(lines))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from corral.manager.bundled import bundled_model_path
    from corral.manager.engine import EngineProcess

    env = _child_env()
    report: dict[str, Any] = {"args": vars(args), "contenders": {}}
    litellm = Path(args.litellm_venv) / "bin" / "litellm"
    wanted = [c for c in CONTENDERS if c.split()[0] in args.only or c in args.only]
    wanted += [c for c in EXTRA if c in args.only]
    if not litellm.exists() and any(c.startswith("litellm") for c in wanted):
        report["litellm_skipped"] = f"no {litellm} (run with --setup-litellm)"
        log(report["litellm_skipped"])
        wanted = [c for c in wanted if not c.startswith("litellm")]
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        engines = []
        for i in range(args.replicas):
            flags = ["-c", str(args.ctx), "-np", str(args.slots), "--slots", "--metrics"]
            e = EngineProcess(bundled_model_path(), flags, api_key="")
            stack.callback(e.stop)
            log(f"starting replica r{i}")
            e.start()
            engines.append(e)
        replicas = [str(e.url) for e in engines]
        urls: dict[str, str] = {}
        for k, contender in enumerate(wanted):  # every gateway up before the first round
            kind, strategy = contender.split()
            port = free_port()
            cfg = tmp / f"{k}.conf"
            if kind == "corral":
                corral_config(cfg, replicas, strategy)
                argv = [sys.executable, "-m", "corral.cli", "serve", "--config", str(cfg), "--port", str(port)]
                health = "/health"
                genv = env
            else:
                litellm_config(cfg, replicas, strategy)
                argv = [str(litellm), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
                health, genv = "/health/liveliness", litellm_env(env)
            log(f"{contender}: starting the gateway")
            stack.enter_context(gateway(contender, argv, genv, port, health)).wait_ready(300.0)
            urls[contender] = f"http://127.0.0.1:{port}"
        # Rounds, the contenders in turn (rotated each round): a busy spell of the shared machine falls on
        # all of them, not on one. One contender at a time: the replicas' /metrics deltas are its own.
        rounds: dict[str, list[dict[str, Any]]] = {c: [] for c in wanted}
        for r in range(args.rounds):
            order = wanted[r % len(wanted) :] + wanted[: r % len(wanted)]
            for contender in order:
                k = wanted.index(contender)
                log(
                    f"round {r + 1}/{args.rounds}, {contender}: {args.conversations} conversations x {args.turns} turns"
                )
                got = asyncio.run(workload(urls[contender], f"c{k}r{r}", args, replicas))
                rounds[contender].append(got)
                share = sum(got["cached"]) / max(1, sum(got["prompt"]))
                log(f"  follow-up cached share {share:.1%}, wall {got['wall_s']:.1f} s")
        for contender in wanted:
            report["contenders"][contender] = summarize(rounds[contender])
    return report


def table(report: dict[str, Any]) -> str:
    rows = report["contenders"]
    head = (f"{'contender':<24} {'follow-up TTFT p50':>18} {'p95':>8} {'all TTFT p50':>13} {'p95':>8} "
            f"{'cached share':>12} {'per replica prompt tok':>24} {'req/s':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        spread = "/".join(str(int(x)) for x in r["followup_prompt_tokens_per_replica"])
        lines.append(
            f"{name:<24} {r['ttft_follow_p50_ms']:>15.0f} ms {r['ttft_follow_p95_ms']:>5.0f} ms "
            f"{r['ttft_all_p50_ms']:>10.0f} ms {r['ttft_all_p95_ms']:>5.0f} ms {r['followup_cached_share']:>11.1%} "
            f"{spread:>24} {r['throughput_rps']:>6.2f}"
        )
    base = rows.get("corral cache-aware")
    for other in ("litellm least-busy", "litellm simple-shuffle"):
        if base and other in rows:
            ratio = base["ttft_follow_p50_ms"] / rows[other]["ttft_follow_p50_ms"]
            lines.append(f"follow-up TTFT p50, corral cache-aware / {other}: {ratio:.2f}x")
    if report.get("litellm_skipped"):
        lines.append(f"litellm skipped: {report['litellm_skipped']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--conversations", type=int, default=6, help="per contender and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of all contenders, in rotated order")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--slots", type=int, default=4, help="llama-server -np: conversations a replica keeps cached")
    p.add_argument("--ctx", type=int, default=4096, help="llama-server -c (split over its slots)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--only", default="corral,litellm", help="corral, litellm, or full names, comma-separated "
                   "(also 'corral cache-aware-no-id-slot')")  # fmt: skip
    p.add_argument("--litellm-venv", default=str(DEFAULT_LITELLM_VENV))
    p.add_argument("--setup-litellm", action="store_true", help="create the LiteLLM venv first")
    p.add_argument("--json", nargs="?", const="-", help="write the report as JSON (to PATH, or stdout)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",")]
    # A plain `kill` stops the run as Ctrl-C does: the replicas and gateways are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.setup_litellm:
        setup_litellm(Path(args.litellm_venv), "litellm[proxy]")
    report = run(args)
    if args.json and args.json != "-":
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
