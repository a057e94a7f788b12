"""Issue 10's wire items on canned backends (the real llama.cpp server is in test_wire_items_live.py):
tool calls repaired or withheld, forced calls streamed without text first, structured output cut at
max_tokens relayed with its finish reason, model names as asked, stop sequences, message_start usage,
output clamps, thinking, Retry-After, request ids and the wire log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from .canned import Canned, Reply, json_reply, sse, sse_reply
from .conftest import RunningGateway, gateway_config

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANTHROPIC_WEATHER = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}  # type: ignore[index]


def chat_answer(message: dict[str, Any], finish: str, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "/models/x.gguf",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}, **extra}  # fmt: skip


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "/models/x.gguf",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip


def tool_call(args: str) -> dict[str, Any]:
    return {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}


class LlamaLike:
    """A canned llama-server: /props (context, tool support), /apply-template, /tokenize (a token per
    4 characters), and a scripted /v1/chat/completions that answers streamed or whole."""

    def __init__(self, n_ctx: int = 4096) -> None:
        self.whole: Callable[[dict[str, Any]], Reply] = lambda b: json_reply(chat_answer({"content": "ok"}, "stop"))
        self.stream: list[bytes] = sse(chunk({"content": "ok"}), chunk({}, "stop"))
        self.server = Canned(
            {
                "/props": lambda b: json_reply(
                    {"default_generation_settings": {"n_ctx": n_ctx}, "total_slots": 1,
                     "chat_template_caps": {"supports_tools": True}}
                ),
                "/health": lambda b: json_reply({"status": "ok"}),
                "/apply-template": lambda b: json_reply({"prompt": json.dumps(b)}),
                "/tokenize": lambda b: json_reply({"tokens": list(range(len(b["content"]) // 4))}),
                "/v1/chat/completions": self._chat,
            }
        )

    def _chat(self, body: dict[str, Any]) -> Reply:
        return sse_reply(self.stream) if body.get("stream") else self.whole(body)


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaLike]:
    server = LlamaLike()
    yield server
    server.server.close()


@pytest.fixture(scope="module")
def anthropic_up() -> Iterator[Canned]:
    def messages(body: dict[str, Any]) -> Reply:
        return json_reply({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                           "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                           "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}})  # fmt: skip

    server = Canned({"/v1/messages": messages})
    yield server
    server.close()


@pytest.fixture(scope="module")
def gw(llama: LlamaLike, anthropic_up: Canned) -> Iterator[RunningGateway]:
    config = gateway_config(
        {
            "local": {"type": "llamacpp", "base_url": llama.server.url},
            "claude": {"type": "anthropic", "base_url": anthropic_up.url, "api_key": "claude-canary-key-0001"},
        },
        models={
            "local": {"provider": "local", "aliases": ["gpt-4o-mini", "claude-sonnet-4-5"]},
            "capped": {"provider": "local", "max_output_tokens": 100},
            "cloud-claude": {"provider": "claude", "upstream": "claude-real", "max_output_tokens": 4096},
        },
    )
    gateway = RunningGateway(config)
    yield gateway
    gateway.stop()


def oai(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)


def ant(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)


# -- 8. tool calls --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_unrepairable_tool_arguments_never_reach_an_openai_client_as_a_call(
    gw: RunningGateway, llama: LlamaLike, stream: bool
) -> None:
    broken = '{"city": Par'
    llama.whole = lambda b: json_reply(chat_answer({"content": None, "tool_calls": [tool_call(broken)]}, "tool_calls"))
    llama.stream = sse(chunk({"tool_calls": [tool_call(broken)]}), chunk({}, "tool_calls"))
    client = oai(gw)
    msgs = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        parts = list(client.chat.completions.create(model="local", messages=msgs, tools=[WEATHER], stream=True))
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in parts)
        text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
        finish = [c.choices[0].finish_reason for c in parts if c.choices and c.choices[0].finish_reason]
    else:
        r = client.chat.completions.create(model="local", messages=msgs, tools=[WEATHER])
        assert r.choices[0].message.tool_calls is None
        text, finish = r.choices[0].message.content or "", [r.choices[0].finish_reason]
    assert finish == ["stop"] and "get_weather" in text and broken in text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_unrepairable_tool_arguments_never_become_a_tool_use_block(
    gw: RunningGateway, llama: LlamaLike, stream: bool
) -> None:
    broken = '{"city": Par'
    llama.whole = lambda b: json_reply(chat_answer({"content": None, "tool_calls": [tool_call(broken)]}, "tool_calls"))
    llama.stream = sse(chunk({"tool_calls": [tool_call(broken)]}), chunk({}, "tool_calls"))
    args: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 50, "tools": [ANTHROPIC_WEATHER],
                            "messages": [{"role": "user", "content": "weather in Paris?"}]}  # fmt: skip
    client = ant(gw)
    if stream:
        with client.messages.stream(**args) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**args)
    assert [b.type for b in message.content] == ["text"] and message.stop_reason == "end_turn"
    assert "_invalid_arguments" not in message.model_dump_json()


def test_mechanically_broken_arguments_arrive_repaired(gw: RunningGateway, llama: LlamaLike) -> None:
    fenced = '```json\n{"city": "Paris",}\n```'
    llama.stream = sse(chunk({"tool_calls": [tool_call(fenced)]}), chunk({}, "tool_calls"))
    parts = list(
        oai(gw).chat.completions.create(
            model="local", messages=[{"role": "user", "content": "w"}], tools=[WEATHER], stream=True
        )
    )
    calls = [tc for c in parts if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr,arg-type]


def test_a_forced_tool_call_streams_no_text_first(gw: RunningGateway, llama: LlamaLike) -> None:
    # llama.cpp may stream the call's raw JSON as text before it recognises the call.
    llama.stream = sse(
        chunk({"role": "assistant", "content": None}),
        chunk({"content": '{"name": "get_wea'}),
        chunk({"content": 'ther", "arguments": {"city": "Rome"}}'}),
        chunk({"tool_calls": [tool_call('{"city": "Rome"}')]}),
        chunk({}, "tool_calls"),
    )
    parts = list(
        oai(gw).chat.completions.create(
            model="local", messages=[{"role": "user", "content": "w"}], tools=[WEATHER], tool_choice="required",
            stream=True,
        )
    )  # fmt: skip
    deltas = [c.choices[0].delta for c in parts if c.choices]
    assert not any(d.content for d in deltas)
    assert any(d.tool_calls for d in deltas) and parts[-1].choices[0].finish_reason == "tool_calls"


# -- 4. structured output cut at max_tokens ----------------------------------------------------------------------
def test_json_cut_at_max_tokens_is_relayed_with_its_finish_reason(gw: RunningGateway, llama: LlamaLike) -> None:
    cut = '{"name": "Ada", "bio": "a mathemat'
    llama.stream = sse(chunk({"content": cut}), chunk({}, "length"))
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "bio": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": True}}
    r = oai(gw).chat.completions.create(
        model="local", messages=[{"role": "user", "content": "who"}], response_format=fmt, max_tokens=8  # type: ignore[arg-type]
    )
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == cut
    a = ant(gw).messages.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "who"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )  # fmt: skip
    assert a.stop_reason == "max_tokens" and a.content[0].text == cut  # type: ignore[union-attr]


# -- 5. the model named as the client asked ------------------------------------------------------------------
def test_answers_name_the_model_the_client_asked_for(gw: RunningGateway, llama: LlamaLike) -> None:
    llama.stream = sse(chunk({"content": "hi"}), chunk({}, "stop"))
    client = oai(gw)
    parts = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "h"}],
                                                stream=True))  # fmt: skip
    assert {p.model for p in parts} == {"gpt-4o-mini"}
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "h"}])
    assert whole.model == "gpt-4o-mini"
    hi = [{"role": "user", "content": "h"}]
    with ant(gw).messages.stream(model="claude-sonnet-4-5", max_tokens=5, messages=hi) as s:  # type: ignore[arg-type]
        assert s.get_final_message().model == "claude-sonnet-4-5"


# -- 7. stop sequences, 11. usage at message_start -----------------------------------------------------------
def test_the_stop_sequence_that_ended_the_answer_is_reported(gw: RunningGateway, llama: LlamaLike) -> None:
    verbose = {"__verbose": {"stop_type": "word", "stopping_word": "END", "content": ""}}
    llama.whole = lambda b: json_reply(chat_answer({"content": "hello "}, "stop", **verbose))
    llama.stream = sse(chunk({"content": "hello "}), chunk({}, "stop", **verbose))
    args: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 20, "stop_sequences": ["STOP", "END"],
                            "messages": [{"role": "user", "content": "say hello END"}]}  # fmt: skip
    whole = ant(gw).messages.create(**args)
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "END")
    assert llama.server.last("/v1/chat/completions")["verbose"] is True  # llama.cpp asked to say which
    with ant(gw).messages.stream(**args) as s:
        streamed = s.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", "END")
    plain = ant(gw).messages.create(**{**args, "stop_sequences": None})
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)


def test_message_start_and_message_delta_carry_the_input_tokens(gw: RunningGateway, llama: LlamaLike) -> None:
    timings = {"prompt_n": 40, "cache_n": 2, "predicted_n": 1, "prompt_ms": 1.0, "predicted_ms": 1.0}
    llama.stream = sse(
        chunk({"content": "hi"}, timings=timings),
        chunk({}, "stop", timings={**timings, "predicted_n": 2}),
        {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
         "usage": {"prompt_tokens": 42, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 2}}},
    )  # fmt: skip
    r = httpx.post(f"{gw.url}/v1/messages", json={"model": "claude-sonnet-4-5", "max_tokens": 5, "stream": True,
                   "messages": [{"role": "user", "content": "h"}]}, timeout=10)  # fmt: skip
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    start = next(e for e in events if e["type"] == "message_start")["message"]["usage"]
    delta = next(e for e in events if e["type"] == "message_delta")["usage"]
    assert (start["input_tokens"], start["cache_read_input_tokens"]) == (40, 2)  # Anthropic: uncached + cached
    assert (delta["input_tokens"], delta["cache_read_input_tokens"], delta["output_tokens"]) == (40, 2, 2)
    assert llama.server.last("/v1/chat/completions")["timings_per_token"] is True


# -- 1. output limits and thinking ---------------------------------------------------------------------------
def test_a_models_max_output_tokens_clamps_the_request_and_says_so(gw: RunningGateway, llama: LlamaLike) -> None:
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "capped", "max_tokens": 32000,
                   "messages": [{"role": "user", "content": "h"}]}, timeout=10)  # fmt: skip
    assert r.status_code == 200
    assert r.headers["x-corral-max-tokens"] == "requested=32000; applied=100; by=max_output_tokens"
    assert llama.server.last("/v1/chat/completions")["max_tokens"] == 100
    small = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "capped", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "h"}]}, timeout=10)  # fmt: skip
    assert "x-corral-max-tokens" not in small.headers and llama.server.last("/v1/chat/completions")["max_tokens"] == 50


def test_without_a_setting_the_request_is_clamped_to_the_context_left(gw: RunningGateway, llama: LlamaLike) -> None:
    prompt = "word " * 2000  # 10,000 characters: the canned tokenizer counts ~2,500 tokens with the template
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "local", "max_tokens": 32000,
                   "messages": [{"role": "user", "content": prompt}]}, timeout=10)  # fmt: skip
    assert r.status_code == 200
    rendered = json.dumps({"messages": [{"role": "user", "content": prompt}]})
    left = 4096 - len(rendered) // 4
    assert r.headers["x-corral-max-tokens"] == f"requested=32000; applied={left}; by=context"
    assert llama.server.last("/v1/chat/completions")["max_tokens"] == left


def test_claude_codes_32k_ask_with_thinking_is_clamped_on_pass_through(
    gw: RunningGateway, anthropic_up: Canned
) -> None:
    body = {"model": "cloud-claude", "max_tokens": 32000, "thinking": {"type": "enabled", "budget_tokens": 31999},
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    r = httpx.post(f"{gw.url}/v1/messages", json=body, timeout=10)
    assert r.status_code == 200, r.text
    sent = anthropic_up.last("/v1/messages")
    assert (sent["model"], sent["max_tokens"], sent["thinking"]["budget_tokens"]) == ("claude-real", 4096, 4095)
    assert r.headers["x-corral-max-tokens"] == "requested=32000; applied=4096; by=max_output_tokens"


def test_anthropic_thinking_becomes_llama_cpps_own_fields(gw: RunningGateway, llama: LlamaLike) -> None:
    base = {"model": "claude-sonnet-4-5", "max_tokens": 3000, "messages": [{"role": "user", "content": "h"}]}
    httpx.post(f"{gw.url}/v1/messages", json={**base, "thinking": {"type": "enabled", "budget_tokens": 2048}})
    sent = llama.server.last("/v1/chat/completions")
    assert sent["chat_template_kwargs"] == {"enable_thinking": True} and sent["thinking_budget_tokens"] == 2048
    assert "thinking" not in sent
    httpx.post(f"{gw.url}/v1/messages", json={**base, "thinking": {"type": "disabled"}})
    sent = llama.server.last("/v1/chat/completions")
    assert sent["chat_template_kwargs"] == {"enable_thinking": False} and sent["thinking_budget_tokens"] == 0


def test_thinking_comes_back_as_a_signed_block_and_goes_back_upstream(gw: RunningGateway, llama: LlamaLike) -> None:
    llama.stream = sse(chunk({"reasoning_content": "Let me think."}), chunk({"content": "42"}), chunk({}, "stop"))
    args: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 2000,
                            "thinking": {"type": "enabled", "budget_tokens": 1024},
                            "messages": [{"role": "user", "content": "answer?"}]}  # fmt: skip
    with ant(gw).messages.stream(**args) as s:
        message = s.get_final_message()
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "Let me think." and thinking.signature
    history = [*args["messages"], {"role": "assistant", "content": [b.model_dump() for b in message.content]},
               {"role": "user", "content": "and?"}]  # fmt: skip
    ant(gw).messages.create(**{**args, "messages": history})
    sent = llama.server.last("/v1/chat/completions")["messages"]
    assert sent[1] == {"role": "assistant", "content": "42", "reasoning_content": "Let me think."}


# -- Retry-After, 9. model lookups, 12. request ids and the wire log ---------------------------------------------
@pytest.mark.parametrize(("status", "kind"), [(429, "rate_limit_error"), (503, "overloaded_error")])
def test_retry_after_reaches_the_client_and_the_gateway_does_not_retry_on_its_own(status: int, kind: str) -> None:
    """Issue 12 #12: the upstream's Retry-After goes back to the caller, and the gateway makes one upstream
    call (the SDKs retry on their own: gateway retries would multiply them)."""
    calls: list[int] = []

    def limited(body: dict[str, Any]) -> Reply:
        calls.append(1)
        err = json.dumps({"error": {"message": "slow down", "type": kind}}).encode()
        return status, "application/json", err, {"Retry-After": "7"}

    up = Canned({"/v1/chat/completions": limited})
    gw = RunningGateway(gateway_config({"up": {"type": "openai", "base_url": up.url + "/v1", "api_key": "k"}}))
    try:
        body = {"model": "m", "messages": [{"role": "user", "content": "h"}]}
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)
        assert (r.status_code, r.headers.get("retry-after"), len(calls)) == (status, "7", 1)
    finally:
        gw.stop()
        up.close()


def test_models_retrieve_in_both_sdks(gw: RunningGateway) -> None:
    assert oai(gw).models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    assert ant(gw).models.retrieve("claude-sonnet-4-5").id == "claude-sonnet-4-5"
    listed = ant(gw).models.list()
    assert {m.id for m in listed.data} >= {"local", "claude-sonnet-4-5"} and all(m.type == "model" for m in listed.data)
    with pytest.raises(openai.NotFoundError):
        oai(gw).models.retrieve("nope")
    with pytest.raises(anthropic.NotFoundError) as caught:
        ant(gw).models.retrieve("nope")
    assert caught.value.body["type"] == "error"  # type: ignore[index]


def test_every_answer_has_a_request_id(gw: RunningGateway) -> None:
    r = httpx.get(f"{gw.url}/health")
    assert r.headers["x-request-id"].startswith("req_")
    mine = httpx.get(f"{gw.url}/health", headers={"x-request-id": "trace-42.a_b"})
    assert mine.headers["x-request-id"] == "trace-42.a_b"
    forged = httpx.get(f"{gw.url}/health", headers={"x-request-id": "x" * 65})
    assert forged.headers["x-request-id"].startswith("req_")


def test_the_wire_log_shows_bodies_and_masks_keys(llama: LlamaLike, caplog: pytest.LogCaptureFixture) -> None:
    config = gateway_config({"local": {"type": "llamacpp", "base_url": llama.server.url}},
                            gateway={"wire_log": True, "api_keys": ["gw-wire-canary-key-1"]})  # fmt: skip
    gw = RunningGateway(config)
    try:
        llama.stream = sse(chunk({"content": "canned-answer-text"}), chunk({}, "stop"))
        with caplog.at_level(logging.INFO, logger="corral.wire"):
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "wire-q"}]}
            auth = {"authorization": "Bearer gw-wire-canary-key-1"}
            r = httpx.post(f"{gw.url}/v1/chat/completions", headers=auth, json=body)
        assert r.status_code == 200
        text = caplog.text
        assert "wire-q" in text and "canned-answer-text" in text and r.headers["x-request-id"] in text
        assert "gw-wire-canary-key-1" not in text
    finally:
        gw.stop()


def test_a_lone_surrogate_a_model_emits_is_relayed_escaped_not_a_500(gw: RunningGateway, llama: LlamaLike) -> None:
    llama.stream = [b'data: {"choices":[{"index":0,"delta":{"content":"odd \\ud800 byte"},"finish_reason":null}]}\n\n',
                    *sse(chunk({}, "stop"))]  # fmt: skip
    body = {"model": "local", "messages": [{"role": "user", "content": "h"}]}
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=body)
    assert r.status_code == 200 and "\\ud800" in r.text
