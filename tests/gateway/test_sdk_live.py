"""The official openai and anthropic SDKs, unchanged, against `corral serve` over the real llama.cpp server."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from .conftest import GATEWAY_KEY, RunningGateway

pytestmark = [
    pytest.mark.live,
    # The SDK warns about retired Claude model names; Claude Code still sends them, so they are aliases here.
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_openai_chat(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
    )
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0


def test_openai_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="local-model",
            messages=[{"role": "user", "content": "Count: one two"}],
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    usage = [c.usage for c in chunks if c.usage]
    assert (usage and usage[-1].completion_tokens == 8) or finishes[-1] == "stop"


def test_openai_tools_round_trip(oai: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    ]
    r = oai.chat.completions.create(
        model="tools-model", messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=12, temperature=0
    )
    assert r.choices[0].message.content
    assert r.usage is not None and r.usage.prompt_tokens > 60  # the tool schema and history reached the model


def test_openai_embeddings_and_models(oai: openai.OpenAI) -> None:
    e = oai.embeddings.create(model="local-model", input=["hello", "world"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 640
    ids = {m.id for m in oai.models.list()}
    assert {"local-model", "gpt-4o-mini", "claude-sonnet-4-5", "tools-model"} <= ids


def test_openai_errors_keep_their_meaning(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "no-such-model" in str(nf.value)
    with pytest.raises(openai.BadRequestError) as br:
        oai.chat.completions.create(model="local-model", messages=[{"role": "user", "content": "x"}], temperature=7)
    assert "temperature" in str(br.value)
    # The upstream's own error keeps its status and message (llama-server: context overflow).
    with pytest.raises(openai.BadRequestError) as ctx:
        oai.chat.completions.create(model="local-model", messages=[{"role": "user", "content": "word " * 1500}])
    assert "context" in str(ctx.value)


def test_openai_wrong_key_is_401(live_gateway: RunningGateway) -> None:
    bad = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="local-model", messages=[{"role": "user", "content": "x"}])


def test_anthropic_messages_with_system(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=8,
        system="You answer in one word.",
        messages=[{"role": "user", "content": "Say hi."}],
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.content and m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.output_tokens > 0


def test_anthropic_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "Say hi."}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0


def test_anthropic_tools_round_trip(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="tools-model",
        max_tokens=12,
        tools=[
            {
                "name": "get_weather",
                "description": "Current weather in a city",
                "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
            }
        ],
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "18 C and sunny"}]},
        ],
    )
    assert m.content and m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) > 60


def test_anthropic_errors_are_anthropic_shaped(claude: anthropic.Anthropic, live_gateway: RunningGateway) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        claude.messages.create(model="nope", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    assert nf.value.body["type"] == "error" and nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    bad = anthropic.Anthropic(base_url=live_gateway.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-sonnet-4-5", max_tokens=4, messages=[{"role": "user", "content": "x"}])


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    long = claude.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi " * 50}])
    assert 0 < short.input_tokens < long.input_tokens


def test_metrics_and_health(live_gateway: RunningGateway, oai: openai.OpenAI) -> None:
    import httpx

    oai.chat.completions.create(model="local-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert httpx.get(f"{live_gateway.url}/health").json() == {"status": "ok"}
    text = httpx.get(f"{live_gateway.url}/metrics", headers={"authorization": f"Bearer {GATEWAY_KEY}"}).text
    line = next(
        ln for ln in text.splitlines()
        if ln.startswith("corral_requests_total{") and 'route="/v1/chat/completions"' in ln and 'status="200"' in ln
    )  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "corral_request_seconds_bucket" in text and GATEWAY_KEY not in text
