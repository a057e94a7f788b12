"""The OpenAI side of the gateway, checked with the official ``openai`` SDK on the client end: what the
SDK sends must parse, and what the gateway writes must be what the SDK reassembles."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from corral.errors import RateLimited, ServerError
from corral.events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from corral.gateway.openai.chat_wire import (
    OpenAIChunkWriter,
    chat_request_from_openai,
    openai_response,
    openai_stream_flags,
)
from corral.gateway.openai.completions_wire import completion_request_from_openai, openai_completion_response
from corral.gateway.openai.embeddings_wire import (
    embedding_inputs_from_openai,
    openai_embeddings_response,
    openai_models,
)
from corral.gateway.wire_errors import WireError
from corral.providers.openai_compat.stream import ChunkAssembler
from corral.sse import DONE, StreamDecoder
from corral.types import (
    ChatResponse,
    Completion,
    Embeddings,
    ImagePart,
    Message,
    TextPart,
    Timings,
    ToolCall,
    Usage,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIMINGS = Timings(12, 30.5, 393.4, 7, 70.0, 100.0, cached_tokens=4)
CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')


class Gateway:
    """A mock transport that records what the SDK sent and answers with what a test gives."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx2.Response]) -> None:
        self.sent: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._answer = answer

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else {}
        self.sent.append(body)
        self.paths.append(request.url.path)
        return self._answer(body)

    def client(self) -> openai.OpenAI:
        http = httpx2.Client(transport=httpx2.MockTransport(self.handler))
        return openai.OpenAI(api_key="x", base_url="http://gw/v1", max_retries=0, http_client=http)


def sse(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


def stream_bytes(events: list[StreamEvent], *, include_usage: bool = True) -> bytes:
    w = OpenAIChunkWriter("local-model", 1700000000, "chatcmpl-abc", include_usage)
    return w.first() + b"".join(w.event(e) for e in events) + w.done()


def tool_stream() -> tuple[list[StreamEvent], ChatResponse]:
    second = ToolCall("call_2", "get_time", '{"tz": "CET"}')
    final = ChatResponse(
        content="Checking both.",
        finish_reason="tool_calls",
        usage=Usage(20, 9, 4),
        reasoning="Need weather and time.",
        tool_calls=(CALL, second),
        timings=TIMINGS,
    )
    events: list[StreamEvent] = [
        ReasoningDelta("Need weather "),
        ReasoningDelta("and time."),
        ContentDelta("Checking "),
        ContentDelta("both."),
        ToolCallDelta(0, "call_1", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city": '),
        ToolCallDelta(0, "call_1", "get_weather", '"Paris"}'),  # some servers repeat id and name
        ToolCallDelta(1, "call_2", "get_time", '{"tz": "CET"}'),
        ToolCallEnd(0, CALL),
        ToolCallEnd(1, second),
        Done(final),
    ]
    return events, final


# -- requests ---------------------------------------------------------------------------------------------------
def test_what_the_sdk_sends_becomes_the_right_chat_request() -> None:
    gw = Gateway(
        lambda body: httpx2.Response(
            200, json=openai_response(ChatResponse("ok", "stop", Usage()), model="m", created=1)
        )
    )
    gw.client().chat.completions.create(  # type: ignore[call-overload]
        model="local-model",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                ],
            },
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
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        ],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_completion_tokens=64,
        temperature=0.2,
        stop=["\n\n"],
        seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        stream_options=None,
        extra_body={"top_k": 20, "min_p": 0.05, "cache_prompt": True, "id_slot": 1, "n": 1},
    )
    req = chat_request_from_openai(gw.sent[0])
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[1].content == (TextPart("Weather here?"), ImagePart("data:image/png;base64,AAAA", "low"))
    assert req.messages[2].tool_calls == (ToolCall("call_1", "get_weather", '{"city":"Paris"}'),)
    assert req.messages[3] == Message.tool("call_1", "18 C")
    assert (req.model, req.max_tokens, req.temperature, req.stop, req.seed) == ("local-model", 64, 0.2, ("\n\n",), 7)
    assert req.tools == (WEATHER,)
    assert req.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert req.response_format == {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    assert req.extra_body == {"top_k": 20, "min_p": 0.05, "cache_prompt": True, "id_slot": 1}


def test_stream_fields_stay_with_the_gateway() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 5,
        "frequency_penalty": None,
        "repeat_penalty": 1.1,
    }
    req = chat_request_from_openai(body)
    assert req.extra_body == {"repeat_penalty": 1.1}  # nulls mean "not given"
    assert req.max_tokens == 5
    assert openai_stream_flags(body) == (True, True)
    assert openai_stream_flags({"messages": []}) == (False, False)


def test_llamacpp_schema_form_and_grammar() -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object", "schema": {"type": "object"}},
    }
    assert chat_request_from_openai(body).response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}},
    }
    req = chat_request_from_openai({"messages": [{"role": "user", "content": "x"}], "grammar": 'root ::= "a"'})
    assert req.grammar == 'root ::= "a"' and "grammar" not in req.extra_body


def test_tool_choice_without_tools() -> None:
    assert (
        chat_request_from_openai({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}).tool_choice
        is None
    )
    with pytest.raises(WireError) as caught:
        chat_request_from_openai({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"})
    assert caught.value.param == "tool_choice"


OK_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([{"role": "user"}], None),
        ({"model": "m"}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [*OK_MESSAGES, {"role": "assistant", "content": "a"}, {"role": "user", "content": 5}]},
            "messages[2].content",
        ),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages[0].content[0].text"),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "tool", "content": "18 C"}]}, "messages[0].tool_call_id"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]},
            "messages[0].tool_calls[0].function.name",
        ),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0].tool_calls"),
        ({"messages": OK_MESSAGES, "model": 3}, "model"),
        ({"messages": OK_MESSAGES, "temperature": 2.5}, "temperature"),
        ({"messages": OK_MESSAGES, "temperature": "hot"}, "temperature"),
        ({"messages": OK_MESSAGES, "top_p": 1.5}, "top_p"),
        ({"messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"messages": OK_MESSAGES, "max_tokens": True}, "max_tokens"),
        ({"messages": OK_MESSAGES, "max_completion_tokens": "5"}, "max_completion_tokens"),
        ({"messages": OK_MESSAGES, "n": 0}, "n"),
        ({"messages": OK_MESSAGES, "n": "2"}, "n"),
        ({"messages": OK_MESSAGES, "stream": "yes"}, "stream"),
        ({"messages": OK_MESSAGES, "stream_options": {"include_usage": "yes"}}, "stream_options"),
        ({"messages": OK_MESSAGES, "stop": 5}, "stop"),
        ({"messages": OK_MESSAGES, "seed": "7"}, "seed"),
        ({"messages": OK_MESSAGES, "tools": {"x": 1}}, "tools"),
        ({"messages": OK_MESSAGES, "tools": [{"type": "retrieval"}]}, "tools[0].type"),
        (
            {"messages": OK_MESSAGES, "tools": [{"type": "function", "function": {"description": "d"}}]},
            "tools[0].function.name",
        ),
        (
            {"messages": OK_MESSAGES, "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"messages": OK_MESSAGES, "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {
                "messages": OK_MESSAGES,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice.function.name",
        ),
        ({"messages": OK_MESSAGES, "response_format": "json"}, "response_format"),
        ({"messages": OK_MESSAGES, "response_format": {"type": "xml"}}, "response_format.type"),
        (
            {"messages": OK_MESSAGES, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"messages": OK_MESSAGES, "grammar": 1}, "grammar"),
    ],
)
def test_validation_errors_name_their_field(body: Any, param: str | None) -> None:
    with pytest.raises(WireError) as caught:
        chat_request_from_openai(body)
    err = caught.value
    assert (err.status, err.kind, err.param) == (400, "invalid_request_error", param)
    if param is not None:
        assert err.message.startswith(param.split("[")[0])
        assert err.openai() == {
            "error": {"message": err.message, "type": "invalid_request_error", "param": param, "code": None}
        }


# -- whole responses --------------------------------------------------------------------------------------------
def test_sdk_reads_a_whole_response_with_reasoning_tool_calls_and_usage() -> None:
    resp = ChatResponse(
        "", "tool_calls", Usage(20, 9, 4), id="chatcmpl-up", reasoning="think", tool_calls=(CALL,), timings=TIMINGS
    )
    body = openai_response(resp, model="local-model", created=1700000000)
    gw = Gateway(lambda _: httpx2.Response(200, json=body))
    out = gw.client().chat.completions.create(model="local-model", messages=[{"role": "user", "content": "hi"}])
    choice = out.choices[0]
    assert (out.id, out.model, out.created, choice.finish_reason) == (
        "chatcmpl-up",
        "local-model",
        1700000000,
        "tool_calls",
    )
    assert choice.message.content is None  # no text, only a tool call
    assert choice.message.tool_calls is not None
    call: Any = choice.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
    )
    assert choice.message.model_extra == {"reasoning_content": "think"}
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (20, 9, 29)
    assert out.usage.prompt_tokens_details is not None and out.usage.prompt_tokens_details.cached_tokens == 4
    assert body["timings"] == {
        "prompt_n": 12, "prompt_ms": 30.5, "prompt_per_second": 393.4, "predicted_n": 7,
        "predicted_ms": 70.0, "predicted_per_second": 100.0, "cache_n": 4,
    }  # fmt: skip


def test_plain_response_keeps_empty_content_a_string_and_normalises_finish() -> None:
    body = openai_response(ChatResponse("", "pause_turn", Usage(1, 0)), model="m", created=1)
    assert body["choices"][0]["message"] == {"role": "assistant", "content": ""}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["id"].startswith("chatcmpl-") and "timings" not in body


# -- streams ----------------------------------------------------------------------------------------------------
def test_sdk_reassembles_a_stream_with_reasoning_text_tool_calls_and_usage() -> None:
    events, _ = tool_stream()
    gw = Gateway(lambda _: sse(stream_bytes(events)))
    with gw.client().chat.completions.stream(model="local-model", messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content == "Checking both."
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}'),
        ("call_2", "get_time", '{"tz": "CET"}'),
    ]
    assert final.usage is not None and (final.usage.prompt_tokens, final.usage.completion_tokens) == (20, 9)
    assert final.id == "chatcmpl-abc" and final.model == "local-model"


def test_sdk_sees_no_usage_unless_asked() -> None:
    events, _ = tool_stream()
    gw = Gateway(lambda _: sse(stream_bytes(events, include_usage=False)))
    chunks = list(
        gw.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def _corral_reads(raw: bytes) -> ChatResponse:
    """The bytes through corral's own client side (SSE decoder + OpenAI chunk assembler)."""
    decoder, state = StreamDecoder("sse"), ChunkAssembler("gateway")
    for payload in decoder.feed(raw) + decoder.close():
        if payload is not DONE:
            state.feed(payload)
    return state.finish()


def test_corral_reads_the_stream_back_unchanged() -> None:
    events, final = tool_stream()
    got = _corral_reads(stream_bytes(events))
    assert (got.content, got.reasoning, got.tool_calls, got.finish_reason) == (
        final.content, final.reasoning, final.tool_calls, final.finish_reason,
    )  # fmt: skip
    assert got.usage == final.usage and got.timings == final.timings


def test_done_alone_streams_a_whole_response() -> None:
    events, final = tool_stream()
    got = _corral_reads(stream_bytes([Done(final)]))
    assert (got.content, got.reasoning, got.tool_calls, got.usage) == (
        final.content, final.reasoning, final.tool_calls, final.usage,
    )  # fmt: skip
    assert _corral_reads(stream_bytes(events)).content == final.content  # streamed text is not sent twice


def test_frames_are_compact_utf8_and_the_role_chunk_comes_once() -> None:
    w = OpenAIChunkWriter("m", 1, "chatcmpl-1", include_usage=False)
    raw = w.event(ContentDelta("héllo ✓")) + w.event(ContentDelta("!"))
    frames = raw.split(b"\n\n")[:-1]
    assert len(frames) == 3
    first = json.loads(frames[0].removeprefix(b"data: "))
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert '"content":"héllo ✓"'.encode() in frames[1]
    assert w.first() == b""
    assert w.event(Done(ChatResponse("héllo ✓!", "stop", Usage()))).count(b"data: ") == 1
    assert w.event(ContentDelta("late")) == b""
    assert w.done() == b"data: [DONE]\n\n"


def test_error_frame_after_the_stream_started() -> None:
    w = OpenAIChunkWriter("m", 1, "chatcmpl-1")
    raw = w.event(ContentDelta("Hel")) + w.error(429, "rate_limit_error", "upstream rate limited")
    gw = Gateway(lambda _: sse(raw))
    with pytest.raises(openai.APIError, match="upstream rate limited"):
        list(gw.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
    with pytest.raises(RateLimited):
        _corral_reads(raw)
    with pytest.raises(ServerError):  # no code of its own: the status rides in "code"
        _corral_reads(w.error(502, "api_error", "upstream server error (HTTP 500): boom"))


# -- /v1/completions, /v1/embeddings, /v1/models ----------------------------------------------------------------
def test_completions_through_the_sdk() -> None:
    def answer(body: dict[str, Any]) -> httpx2.Response:
        prompt, params = completion_request_from_openai(body)
        assert prompt == "Once upon"
        assert params == {"max_tokens": 16, "temperature": 0.5, "stop": ["."], "seed": 3, "top_k": 40}
        done = Completion(" a time", "length", Usage(3, 16), timings=TIMINGS)
        return httpx2.Response(200, json=openai_completion_response(done, model="m", created=5))

    gw = Gateway(answer)
    out = gw.client().completions.create(
        model="m", prompt="Once upon", max_tokens=16, temperature=0.5, stop=".", seed=3, extra_body={"top_k": 40}
    )
    assert (out.choices[0].text, out.choices[0].finish_reason, out.object) == (" a time", "length", "text_completion")
    assert out.usage is not None and out.usage.total_tokens == 19


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "x", "stream": "yes"}, "stream"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 17}, "n"),
        ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
    ],
)
def test_completion_validation(body: dict[str, Any], param: str) -> None:
    with pytest.raises(WireError) as caught:
        completion_request_from_openai(body)
    assert (caught.value.status, caught.value.param) == (400, param)


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_embeddings_through_the_sdk(encoding_format: str | None) -> None:
    vectors = [[0.5, -1.25, 2.0], [0.0, 0.25, -0.5]]

    def answer(body: dict[str, Any]) -> httpx2.Response:
        assert embedding_inputs_from_openai(body) == ["first", "second"]
        e = Embeddings(vectors, usage=Usage(6))
        return httpx2.Response(
            200, json=openai_embeddings_response(e, model="emb", encoding_format=body.get("encoding_format", "float"))
        )

    gw = Gateway(answer)
    kw: dict[str, Any] = {"encoding_format": encoding_format} if encoding_format else {}
    out = gw.client().embeddings.create(model="emb", input=["first", "second"], **kw)
    assert gw.sent[0]["encoding_format"] == (encoding_format or "base64")  # the SDK's own default
    assert [d.embedding for d in out.data] == vectors
    assert out.usage.prompt_tokens == 6


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [[1, 2], [3]]}, "input"),
        ({"input": [1, 2, 3]}, "input"),
        ({"input": []}, "input"),
        ({}, "input"),
        ({"input": "x", "dimensions": 256}, "dimensions"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_embedding_validation(body: dict[str, Any], param: str) -> None:
    with pytest.raises(WireError) as caught:
        embedding_inputs_from_openai(body)
    assert (caught.value.status, caught.value.param) == (400, param)
    assert param in caught.value.message


def test_models_through_the_sdk() -> None:
    gw = Gateway(lambda _: httpx2.Response(200, json=openai_models([("qwen3", "corral"), ("gpt-4o", "openai")], 7)))
    models = list(gw.client().models.list())
    assert [(m.id, m.owned_by, m.created, m.object) for m in models] == [
        ("qwen3", "corral", 7, "model"),
        ("gpt-4o", "openai", 7, "model"),
    ]
