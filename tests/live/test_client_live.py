"""Every Client call against the real llama.cpp server, run through Client and AsyncClient alike."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

import corral
from corral import AsyncClient, Client, ContentDelta, Done, StreamEvent

pytestmark = pytest.mark.live


class SyncApi:
    """Client, as is."""

    def __init__(self, url: str) -> None:
        self.client = Client(f"llamacpp://{url.split('://', 1)[1]}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def stream_events(self, messages: Any, **kw: Any) -> tuple[list[StreamEvent], corral.ChatResponse]:
        with self.client.stream(messages, **kw) as s:
            events = list(s)
            return events, s.final()

    def close(self) -> None:
        self.client.close()


class AsyncApi:
    """AsyncClient, each coroutine run to completion on one private loop, so the same test body drives it."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self.client = AsyncClient(f"llamacpp://{url.split('://', 1)[1]}")

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        return lambda *a, **kw: self.runner.run(method(*a, **kw))

    def stream_events(self, messages: Any, **kw: Any) -> tuple[list[StreamEvent], corral.ChatResponse]:
        async def go() -> tuple[list[StreamEvent], corral.ChatResponse]:
            async with self.client.stream(messages, **kw) as s:
                events = [e async for e in s]
                return events, await s.final()

        return self.runner.run(go())

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.close()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, llama_url: str) -> Iterator[Any]:
    impl = SyncApi(llama_url) if request.param == "sync" else AsyncApi(llama_url)
    yield impl
    impl.close()


HI = [{"role": "user", "content": "Say hi."}]
GREEDY = {"temperature": 0.0, "seed": 7}


def test_chat_returns_content_usage_and_timings(api: Any) -> None:
    r = api.chat(HI, max_tokens=12, **GREEDY)
    assert isinstance(r.content, str) and r.content
    assert r.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert 0 < r.usage.completion_tokens <= 12
    assert r.timings is not None and r.timings.predicted_tokens == r.usage.completion_tokens
    assert r.provider == "llamacpp"


def test_stream_events_and_final_match_chat(api: Any) -> None:
    whole = api.chat(HI, max_tokens=16, **GREEDY)
    events, final = api.stream_events(HI, max_tokens=16, **GREEDY)
    deltas = [e.text for e in events if isinstance(e, ContentDelta)]
    assert deltas, "no content arrived while streaming"
    assert isinstance(events[-1], Done) and events[-1].response == final
    assert "".join(deltas) == final.content
    # Same prompt, greedy sampling: streaming and non-streaming must agree on everything a caller reads.
    assert final.content == whole.content
    assert final.finish_reason == whole.finish_reason
    assert final.usage.completion_tokens == whole.usage.completion_tokens
    assert final.usage.prompt_tokens == whole.usage.prompt_tokens > 0


def test_complete_raw_text(api: Any) -> None:
    r = api.complete("Once upon a time", max_tokens=6, **GREEDY)
    assert r.text and r.finish_reason == "length"
    assert r.usage.completion_tokens == 6
    assert r.timings is not None and r.timings.predicted_tokens == 6


def test_embed_vectors(api: Any) -> None:
    e = api.embed(["the cat sat", "stock markets fell", "the cat sat"])
    assert len(e.vectors) == 3
    assert len({len(v) for v in e.vectors}) == 1 and len(e.vectors[0]) == 640

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cos(e.vectors[0], e.vectors[2]) == pytest.approx(1.0, abs=1e-5)
    assert cos(e.vectors[0], e.vectors[1]) < 0.999


def test_models_health_props(api: Any, gguf_path: Path) -> None:
    models = api.models()
    assert len(models) == 1 and models[0].id.endswith(gguf_path.name)
    assert models[0].context_length == 1024  # 2048 split over 2 slots
    assert api.health().ok
    props = api.props()
    assert props["total_slots"] == 2
    assert props["default_generation_settings"]["n_ctx"] == 1024


def test_tokenize_detokenize_round_trip(api: Any) -> None:
    tokens = api.tokenize("hello world")
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert api.detokenize(tokens) == "hello world"
    assert len(api.tokenize("hello world", add_special=True)) == len(tokens) + 1  # <bos>


def test_apply_template_uses_the_servers_template(api: Any) -> None:
    prompt = api.apply_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    # The bundled GGUF has no template of its own: llama.cpp falls back to ChatML.
    assert "<|im_start|>user\nhi<|im_end|>" in prompt and "Be brief." in prompt


def test_metrics_count_tokens(api: Any) -> None:
    before = api.metrics()["llamacpp:tokens_predicted_total"]
    api.chat(HI, max_tokens=5, **GREEDY)
    after = api.metrics()["llamacpp:tokens_predicted_total"]
    assert after >= before + 5


def test_slots_save_restore_erase(api: Any, slot_dir: Path, request: pytest.FixtureRequest) -> None:
    slots = api.slots()
    assert [s.id for s in slots] == [0, 1]
    name = f"slot-{request.node.callspec.id}.bin"
    # Fill slot 0's cache, then save it to the server's slot directory.
    api.chat(HI, max_tokens=4, extra_body={"id_slot": 0}, **GREEDY)
    saved = api.save_slot(0, name)
    assert saved["n_saved"] > 0 and (slot_dir / name).stat().st_size == saved["n_written"]
    erased = api.erase_slot(0)
    assert erased["n_erased"] == saved["n_saved"]
    restored = api.restore_slot(0, name)
    assert restored["n_restored"] == saved["n_saved"]


def test_slot_filename_cannot_escape(api: Any) -> None:
    with pytest.raises(corral.ConfigurationError, match="plain file name"):
        api.save_slot(0, "../outside.bin")


class Person(BaseModel):
    name: str = Field(max_length=24)
    age: int = Field(ge=0, le=120)


def test_json_schema_validates_into_pydantic(api: Any) -> None:
    r = api.chat(
        [{"role": "user", "content": "Invent a person. Reply in JSON with name and age."}],
        response_format=Person,
        max_tokens=300,
        **GREEDY,
    )
    assert isinstance(r.parsed, Person)
    assert 0 <= r.parsed.age <= 120 and r.parsed.name


def test_json_object_and_raw_grammar(api: Any) -> None:
    r = api.chat(
        [{"role": "user", "content": "Answer yes or no: is the sky blue?"}],
        grammar='root ::= "yes" | "no"',
        max_tokens=4,
        **GREEDY,
    )
    assert r.content in ("yes", "no")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    r = api.chat(HI, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
                 max_tokens=20, **GREEDY)  # fmt: skip
    assert isinstance(r.parsed, dict) and isinstance(r.parsed["ok"], bool)


def test_context_overflow_is_classified(api: Any) -> None:
    with pytest.raises(corral.ContextLengthExceeded) as info:
        api.chat([{"role": "user", "content": "word " * 1500}], max_tokens=4)
    assert info.value.status == 400
    assert "context" in str(info.value)


def test_timeout_per_request(api: Any) -> None:
    with pytest.raises(corral.RequestTimeout) as info:
        api.chat([{"role": "user", "content": "Count to a thousand."}], max_tokens=400, timeout=0.05)
    assert str(info.value) == "llama-server request timed out"


def test_templated_server_renders_gemma_turns(templated_server: Any) -> None:
    with Client(f"llamacpp://{templated_server.url.split('://', 1)[1]}") as c:
        prompt = c.apply_template([{"role": "user", "content": "hi"}])
        assert "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n" in prompt
        assert c.chat("hi", max_tokens=4, temperature=0).usage.completion_tokens > 0
