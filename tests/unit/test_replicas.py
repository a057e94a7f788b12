"""Replicas in the library: Client/AsyncClient balance a [models.<name>] over its providers, stick a
conversation to the replica holding its prefix, eject a failing replica and retry elsewhere, then fall back."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

import corral
from corral.errors import ServerError

CHAT = {
    "id": "x",
    "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}
A, B, BACKUP = "http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.2:9090"


def config(fallbacks: bool = False, **model: object) -> dict[str, object]:
    return {
        "providers": {
            "a": {"type": "llamacpp", "base_url": A},
            "b": {"type": "llamacpp", "base_url": B},
            "backup": {"type": "openai", "base_url": f"{BACKUP}/v1", "api_key": "k"},
        },
        "models": {"fast": {"provider": ["a", "b"], **model}},
        "routing": {"fallbacks": {"fast": ["backup"]}} if fallbacks else {},
    }


def conversation(n: int, turns: int) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"topic {n}"}]
    for t in range(turns):
        msgs += [{"role": "assistant", "content": f"answer {t}"}, {"role": "user", "content": f"more {t}"}]
    return msgs


def test_conversations_stick_to_their_replica_and_spread() -> None:
    with respx.mock() as router:
        ra = router.post(f"{A}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        rb = router.post(f"{B}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        client = corral.Client("fast", config=config())
        where: dict[int, set[str]] = {}
        for turn in range(3):
            for n in range(4):
                before = ra.call_count
                client.chat(conversation(n, turn))
                where.setdefault(n, set()).add("a" if ra.call_count > before else "b")
    assert all(len(s) == 1 for s in where.values())  # every turn of a conversation on one replica
    assert ra.call_count == rb.call_count == 6  # four conversations over two idle replicas: two each
    snap = client.balancer.snapshot() if client.balancer else {}
    assert snap["a"]["cache_hits"] + snap["b"]["cache_hits"] == 8  # the follow-up turns


def test_a_dead_replica_is_ejected_and_its_request_answered_by_another() -> None:
    with respx.mock() as router:
        ra = router.post(f"{A}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
        rb = router.post(f"{B}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        client = corral.Client("fast", config=config(balance="round-robin", cooldown=60))
        for n in range(6):
            assert client.chat(conversation(n, 0)).content == "ok"
    assert ra.call_count == 1  # tried once, then ejected: no call pays for it again
    assert rb.call_count == 6
    assert client.balancer is not None and client.balancer.snapshot()["a"]["state"] == "ejected"


def test_after_every_replica_the_fallback_answers_then_a_clear_503() -> None:
    with respx.mock() as router:
        router.post(f"{A}/v1/chat/completions").mock(return_value=httpx.Response(500, json={"error": "boom"}))
        router.post(f"{B}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
        backup = router.post(f"{BACKUP}/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT))
        client = corral.Client("fast", config=config(fallbacks=True, cooldown=30))
        assert client.chat("hi").content == "ok"
        assert client.chat("hi").content == "ok"  # both ejected: straight to the fallback
        assert backup.call_count == 2
        alone = corral.Client("fast", config=config(cooldown=30))
        with pytest.raises(ServerError):
            alone.chat("hi")
        with pytest.raises(ServerError, match="every replica of 'fast' is ejected") as err:
            alone.chat("hi")
        assert err.value.status == 503 and (err.value.retry_after or 0) >= 1


def test_a_4xx_is_not_a_replica_failure() -> None:
    with respx.mock(assert_all_called=False) as router:  # the same question sticks to one replica
        bad = httpx.Response(400, json={"error": {"message": "bad", "type": "invalid_request_error"}})
        router.post(f"{A}/v1/chat/completions").mock(return_value=bad)
        router.post(f"{B}/v1/chat/completions").mock(return_value=bad)
        client = corral.Client("fast", config=config())
        for _ in range(3):
            with pytest.raises(corral.errors.BadRequest):
                client.chat("hi")
    assert client.balancer is not None
    assert {r["state"] for r in client.balancer.snapshot().values()} == {"healthy"}
    assert all(r.in_flight == 0 for r in client.balancer.replicas.values())


def test_async_client_balances_streams_and_counts_them_until_closed() -> None:
    sse = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )

    async def main() -> None:
        with respx.mock() as router:
            router.post(f"{A}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
            rb = router.post(f"{B}/v1/chat/completions").mock(
                return_value=httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
            )
            async with corral.AsyncClient("fast", config=config(cooldown=60)) as client:
                assert client.balancer is not None
                for n in range(3):
                    async with client.stream(conversation(n, 0)) as s:
                        assert client.balancer.replicas["b"].in_flight == 1
                        text = "".join([e.text async for e in s if getattr(e, "text", None)])
                    assert text == "Hi"
                    assert client.balancer.replicas["b"].in_flight == 0
                assert rb.call_count == 3

    asyncio.run(main())


def test_poll_replicas_reads_slots_and_readmits() -> None:
    slots = [{"id": 0, "n_ctx": 512, "is_processing": True}, {"id": 1, "n_ctx": 512, "is_processing": False}]
    with respx.mock() as router:
        router.get(f"{A}/slots").mock(return_value=httpx.Response(200, json=slots))
        router.get(f"{B}/slots").mock(return_value=httpx.Response(501, json={"error": "slots disabled"}))
        router.get(f"{B}/health").mock(return_value=httpx.Response(200, json={"status": "ok"}))
        client = corral.Client("fast", config=config(cooldown=0))
        assert client.balancer is not None
        client.balancer.end("b", "failed")  # ejected; cooldown 0: the next poll may re-admit it
        state = client.poll_replicas()
        assert state["a"]["slots_busy"] == 1 and state["a"]["slots_total"] == 2
        assert state["b"]["state"] == "healthy"
        client.poll_replicas()  # b has no /slots: asked for its health instead
    assert corral.Client("a", config=config()).poll_replicas() == {}


def test_a_polled_llama_server_replica_gets_id_slot_per_conversation() -> None:
    import json

    slots = [{"id": i, "n_ctx": 512, "is_processing": False} for i in range(2)]
    seen: list[int | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content).get("id_slot"))
        return httpx.Response(200, json=CHAT)

    with respx.mock(assert_all_called=False) as router:
        for url in (A, B):
            router.get(f"{url}/slots").mock(return_value=httpx.Response(200, json=slots))
            router.post(f"{url}/v1/chat/completions").mock(side_effect=answer)
        client = corral.Client("fast", config=config(balance="round-robin"))
        client.poll_replicas()
        client.chat(conversation(1, 0))
        client.chat(conversation(2, 0))
        assert sorted(seen) == [0, 0]  # one conversation per replica, each in its first slot
        off = corral.Client("fast", config=config(slot_affinity=False))
        off.poll_replicas()
        seen.clear()
        off.chat(conversation(1, 0))
        assert seen == [None]  # slot_affinity = false: llama-server picks the slot
