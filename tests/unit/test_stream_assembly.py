"""ChunkAssembler fed llama-server-shaped chunks, and the whole streaming driver against respx mocks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

import corral
from corral import (
    ContentDelta,
    ContextLengthExceeded,
    Done,
    ModelLoading,
    ReasoningDelta,
    ResponseError,
    ServerError,
    StructuredOutputError,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    Usage,
)
from corral.providers.openai_compat.stream import ChunkAssembler
from corral.structured import normalize_response_format

URL = "http://127.0.0.1:8080/v1/chat/completions"

USAGE = {
    "completion_tokens": 3,
    "prompt_tokens": 25,
    "total_tokens": 28,
    "prompt_tokens_details": {"cached_tokens": 20},
}
TIMINGS = {
    "cache_n": 20,
    "prompt_n": 5,
    "prompt_ms": 29.0,
    "prompt_per_token_ms": 5.8,
    "prompt_per_second": 171.8,
    "predicted_n": 3,
    "predicted_ms": 26.0,
    "predicted_per_token_ms": 13.0,
    "predicted_per_second": 76.6,
}


def delta_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "created": 1,
        "id": "chatcmpl-x",
        "model": "m",
        "object": "chat.completion.chunk",
    }


def content(text: str) -> dict[str, Any]:
    return delta_chunk({"content": text})


def stop(reason: str = "stop") -> dict[str, Any]:
    return delta_chunk({}, reason)


def usage_chunk(*, usage: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "choices": [],
        "created": 1,
        "id": "chatcmpl-x",
        "model": "m",
        "object": "chat.completion.chunk",
        "timings": TIMINGS,
    }
    if usage:
        out["usage"] = USAGE
    return out


def tool_delta(index: int, args: str, *, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    tc: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        tc["id"] = call_id
        tc["type"] = "function"
    if name:
        tc["function"]["name"] = name
    return delta_chunk({"tool_calls": [tc]})


def feed_all(asm: ChunkAssembler, payloads: list[dict[str, Any]]) -> list[Any]:
    events: list[Any] = []
    for p in payloads:
        events += asm.feed(p)
    return events


def sse_body(payloads: list[dict[str, Any]], *, done: bool = True) -> bytes:
    text = "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)
    if done:
        text += "data: [DONE]\n\n"
    return text.encode()


# -- ChunkAssembler ----------------------------------------------------------------------------------


def test_content_deltas_assemble_to_content():
    asm = ChunkAssembler("llamacpp")
    events = feed_all(asm, [delta_chunk({"role": "assistant", "content": None}), content("Hel"), content("lo"), stop()])
    assert events == [ContentDelta("Hel"), ContentDelta("lo")]
    resp = asm.finish()
    assert resp.content == "Hello"
    assert resp.finish_reason == "stop"
    assert resp.id == "chatcmpl-x"
    assert resp.model == "m"
    assert resp.provider == "llamacpp"
    assert resp.reasoning is None
    assert resp.tool_calls == ()


def test_reasoning_content_deltas():
    asm = ChunkAssembler("llamacpp")
    events = feed_all(
        asm,
        [
            delta_chunk({"reasoning_content": "Let me "}),
            delta_chunk({"reasoning_content": "think."}),
            content("42"),
            stop(),
        ],
    )
    assert events == [ReasoningDelta("Let me "), ReasoningDelta("think."), ContentDelta("42")]
    resp = asm.finish()
    assert resp.reasoning == "Let me think."
    assert resp.content == "42"
    assert resp.message.reasoning == "Let me think."


def test_think_tags_split_across_content_chunks_become_reasoning():
    asm = ChunkAssembler("llamacpp")
    pieces = ["<thi", "nk>plan ", "it</th", "ink>\n\nans", "wer"]
    events = feed_all(asm, [content(p) for p in pieces] + [stop()])
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "plan it"
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == "answer"
    assert not any("<" in e.text for e in events)
    resp = asm.finish()
    assert (resp.content, resp.reasoning) == ("answer", "plan it")


def test_held_back_tag_prefix_is_flushed_at_finish():
    asm = ChunkAssembler("llamacpp")
    events = feed_all(asm, [content("1 <"), delta_chunk({"content": " 2 <th"}, "stop")])
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == "1 < 2 <th"
    assert asm.finish().content == "1 < 2 <th"


def test_tool_call_arguments_split_across_chunks():
    asm = ChunkAssembler("llamacpp")
    events = feed_all(
        asm,
        [
            tool_delta(0, '{"ci', call_id="call_1", name="get_weather"),
            tool_delta(0, 'ty":"Paris"}'),
        ],
    )
    assert events == [
        ToolCallDelta(0, "call_1", "get_weather", '{"ci'),
        ToolCallDelta(0, None, None, 'ty":"Paris"}'),
    ]
    end = asm.feed(stop("tool_calls"))
    call = ToolCall("call_1", "get_weather", '{"city":"Paris"}')
    assert end == [ToolCallEnd(0, call)]
    resp = asm.finish()
    assert resp.finish_reason == "tool_calls"
    assert resp.tool_calls == (call,)
    assert resp.tool_calls[0].parsed_arguments() == {"city": "Paris"}
    assert resp.message.tool_calls == (call,)


def test_two_parallel_tool_calls_end_in_index_order():
    asm = ChunkAssembler("llamacpp")
    feed_all(
        asm,
        [
            tool_delta(0, '{"a":', call_id="c0", name="f"),
            tool_delta(1, '{"b":', call_id="c1", name="g"),
            tool_delta(0, "1}"),
            tool_delta(1, "2}"),
        ],
    )
    end = asm.feed(stop("tool_calls"))
    assert end == [ToolCallEnd(0, ToolCall("c0", "f", '{"a":1}')), ToolCallEnd(1, ToolCall("c1", "g", '{"b":2}'))]


def test_unrepairable_tool_arguments_become_text_not_a_call():
    """A call whose arguments cannot be made a JSON object is never handed over as callable."""
    asm = ChunkAssembler("llamacpp")
    events = feed_all(
        asm,
        [tool_delta(0, '{"city": Par', call_id="call_1", name="get_weather"), tool_delta(0, "is"), stop("tool_calls")],
    )
    resp = asm.finish()
    assert resp.tool_calls == () and resp.finish_reason == "stop"
    assert "get_weather" in resp.content and '{"city": Paris' in resp.content
    assert not any(isinstance(e, ToolCallEnd) for e in events)
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == resp.content


def test_mechanically_broken_arguments_are_repaired():
    fenced = '```json\n{"city": "Paris",}\n```'
    asm = ChunkAssembler("llamacpp")
    feed_all(asm, [tool_delta(0, fenced, call_id="call_1", name="get_weather"), stop("tool_calls")])
    (call,) = asm.finish().tool_calls
    assert call.parsed_arguments() == {"city": "Paris"}


def test_a_call_cut_at_max_tokens_is_not_callable():
    # llama.cpp closes a cut call's JSON itself: it parses, but it is not what the model meant.
    asm = ChunkAssembler("llamacpp")
    feed_all(asm, [tool_delta(0, '{"city": "Pa"}', call_id="call_1", name="get_weather"), stop("length")])
    resp = asm.finish()
    assert resp.tool_calls == () and resp.finish_reason == "length" and "cut off" in resp.content


def test_arguments_are_checked_against_the_tool_schema():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": schema}}]
    for args, ok in (('{"city": "Rome"}', True), ('{"town": "Rome"}', False), ('{"city": 3}', False)):
        asm = ChunkAssembler("llamacpp", tools=tools)
        feed_all(asm, [tool_delta(0, args, call_id="c", name="get_weather"), stop("tool_calls")])
        resp = asm.finish()
        assert bool(resp.tool_calls) is ok, (args, resp.content)
        if not ok:
            assert "schema" in resp.content
    asm = ChunkAssembler("llamacpp", tools=tools)
    feed_all(asm, [tool_delta(0, "{}", call_id="c", name="rm_rf"), stop("tool_calls")])
    assert asm.finish().tool_calls == ()  # not a tool that was offered


def test_usage_chunk_with_cached_tokens():
    asm = ChunkAssembler("llamacpp")
    feed_all(asm, [content("Hi"), stop(), usage_chunk()])
    resp = asm.finish()
    assert resp.usage == Usage(prompt_tokens=25, completion_tokens=3, cached_tokens=20)
    assert resp.usage.total_tokens == 28
    assert resp.timings is not None
    assert resp.timings.predicted_per_second == pytest.approx(76.6)


def test_usage_derived_from_timings_without_usage_chunk():
    asm = ChunkAssembler("llamacpp")
    feed_all(asm, [content("Hi"), stop(), usage_chunk(usage=False)])
    assert asm.finish().usage == Usage(prompt_tokens=5 + 20, completion_tokens=3, cached_tokens=20)


def test_no_usage_at_all_is_zero():
    asm = ChunkAssembler("llamacpp")
    feed_all(asm, [content("Hi"), stop()])
    assert asm.finish().usage == Usage(0, 0, 0)


def test_stream_without_finish_reason_raises():
    asm = ChunkAssembler("llamacpp")
    feed_all(asm, [content("Hel"), content("lo")])
    with pytest.raises(ResponseError, match="finish reason"):
        asm.finish()


@pytest.mark.parametrize(
    ("error", "exc_type"),
    [
        (
            {"code": 400, "message": "request exceeds context", "type": "exceed_context_size_error"},
            ContextLengthExceeded,
        ),
        ({"code": 503, "message": "Loading model", "type": "unavailable_error"}, ModelLoading),
        ({"code": 500, "message": "boom", "type": "server_error"}, ServerError),
    ],
)
def test_error_payload_inside_stream(error, exc_type):
    asm = ChunkAssembler("llamacpp")
    asm.feed(content("partial"))
    with pytest.raises(exc_type) as info:
        asm.feed({"error": error})
    assert type(info.value) is exc_type
    assert info.value.status == error["code"]
    assert info.value.message == error["message"]


def test_error_event_without_error_key_raises():
    asm = ChunkAssembler("llamacpp")
    with pytest.raises(corral.ProviderError):
        asm.feed({"message": "stream failed", "__event__": "error"})


SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_json_schema_output_is_parsed():
    wire, output_type = normalize_response_format(SCHEMA_FORMAT)
    asm = ChunkAssembler("llamacpp", response_format=wire, output_type=output_type)
    feed_all(asm, [content('{"city":'), content(' "Paris", "t": 21}'), stop()])
    resp = asm.finish()
    assert resp.parsed == {"city": "Paris", "t": 21}
    assert resp.content == '{"city": "Paris", "t": 21}'


class Weather(BaseModel):
    city: str
    temp: int


def test_pydantic_output_type_is_parsed_into_the_model():
    wire, output_type = normalize_response_format(Weather)
    asm = ChunkAssembler("llamacpp", response_format=wire, output_type=output_type)
    feed_all(asm, [content('{"city":"Paris",'), content('"temp":21}'), stop()])
    parsed = asm.finish().parsed
    assert isinstance(parsed, Weather)
    assert parsed == Weather(city="Paris", temp=21)


@pytest.mark.parametrize("fmt", [SCHEMA_FORMAT, Weather, {"type": "json_object"}], ids=["schema", "pydantic", "object"])
def test_invalid_json_output_raises_structured_output_error(fmt):
    wire, output_type = normalize_response_format(fmt)
    asm = ChunkAssembler("llamacpp", response_format=wire, output_type=output_type)
    text = '{"city": "Paris", oops'
    feed_all(asm, [content(text), stop()])
    with pytest.raises(StructuredOutputError) as info:
        asm.finish()
    assert info.value.raw == text


def test_missing_required_key_raises_structured_output_error():
    wire, _ = normalize_response_format(SCHEMA_FORMAT)
    asm = ChunkAssembler("llamacpp", response_format=wire)
    feed_all(asm, [content('{"town": "Paris"}'), stop()])
    with pytest.raises(StructuredOutputError, match="city"):
        asm.finish()


# -- through the driver ------------------------------------------------------------------------------

STREAM_PAYLOADS = [
    delta_chunk({"role": "assistant", "content": None}),
    delta_chunk({"reasoning_content": "Greet "}),
    delta_chunk({"reasoning_content": "back."}),
    content("Hel"),
    content("lo \u00e9\U0001f600"),
    stop(),
    usage_chunk(),
]

NON_STREAMED = {
    "choices": [
        {
            "finish_reason": "stop",
            "index": 0,
            "message": {"role": "assistant", "content": "Hello \u00e9\U0001f600", "reasoning_content": "Greet back."},
        }
    ],
    "created": 1,
    "id": "chatcmpl-x",
    "model": "m",
    "object": "chat.completion",
    "usage": USAGE,
    "timings": TIMINGS,
}


def streamed(body: bytes, *, step: int = 7, status: int = 200) -> httpx.Response:
    """A response whose body arrives in small pieces (splitting lines and UTF-8 characters)."""
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    return httpx.Response(status, content=iter(pieces), headers={"content-type": "text/event-stream"})


@pytest.fixture
def router():
    with respx.mock(assert_all_mocked=True, assert_all_called=True) as mock:
        yield mock


@pytest.fixture
def client():
    c = corral.Client("llamacpp://127.0.0.1:8080")
    yield c
    c.close()


def test_stream_events_and_final_equal_chat(client, router):
    route = router.post(URL).mock(side_effect=lambda request: streamed(sse_body(STREAM_PAYLOADS)))
    with client.stream("hi") as s:
        events = list(s)
        final = s.final()
    assert json.loads(route.calls.last.request.content)["stream"] is True
    assert events[:4] == [
        ReasoningDelta("Greet "),
        ReasoningDelta("back."),
        ContentDelta("Hel"),
        ContentDelta("lo \u00e9\U0001f600"),
    ]
    assert isinstance(events[-1], Done)
    assert sum(isinstance(e, Done) for e in events) == 1
    assert events[-1].response == final

    route.mock(return_value=httpx.Response(200, json=NON_STREAMED))
    whole = client.chat("hi")
    assert "stream" not in json.loads(route.calls.last.request.content)
    assert final.content == whole.content == "Hello \u00e9\U0001f600"
    assert final.reasoning == whole.reasoning == "Greet back."
    assert final.finish_reason == whole.finish_reason == "stop"
    assert final.usage == whole.usage == Usage(25, 3, 20)
    assert final == whole


def test_final_without_iterating(client, router):
    router.post(URL).mock(side_effect=lambda request: streamed(sse_body(STREAM_PAYLOADS)))
    assert client.stream("hi").final().content == "Hello \u00e9\U0001f600"


def test_tool_call_stream_through_driver(client, router):
    payloads = [
        tool_delta(0, '{"ci', call_id="call_1", name="get_weather"),
        tool_delta(0, 'ty":"Paris"}'),
        stop("tool_calls"),
    ]
    router.post(URL).mock(side_effect=lambda request: streamed(sse_body(payloads), step=3))
    # Tools on llama.cpp need a tool-aware chat template: the client reads that from /props once.
    caps = {"chat_template_caps": {"supports_tools": True}, "modalities": {"vision": False}}
    props = router.get("http://127.0.0.1:8080/props").mock(return_value=httpx.Response(200, json=caps))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with client.stream("weather?", tools=tools) as s:
        events = list(s)
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert ends == [ToolCallEnd(0, ToolCall("call_1", "get_weather", '{"city":"Paris"}'))]
    assert events[-1].response.tool_calls == (ends[0].call,)
    assert props.call_count == 1


def test_ndjson_body_parses(client, router):
    body = "".join(json.dumps(p) + "\n" for p in STREAM_PAYLOADS).encode()
    router.post(URL).mock(side_effect=lambda request: streamed(body))
    final = client.stream("hi").final()
    assert final.content == "Hello \u00e9\U0001f600"
    assert final.reasoning == "Greet back."
    assert final.usage == Usage(25, 3, 20)


def test_body_cut_before_finish_reason_raises_from_iteration(client, router):
    body = sse_body([content("Hel"), content("lo")], done=False)
    router.post(URL).mock(side_effect=lambda request: streamed(body))
    seen = []
    with pytest.raises(ResponseError, match="finish reason"), client.stream("hi") as s:
        for event in s:
            seen.append(event)
    assert seen == [ContentDelta("Hel"), ContentDelta("lo")]


def test_http_500_raises_server_error(client, router):
    router.post(URL).mock(return_value=httpx.Response(500, json={"error": "boom"}))
    with pytest.raises(ServerError) as info, client.stream("hi") as s:
        list(s)
    assert info.value.message == "boom"
    assert info.value.status == 500
    with pytest.raises(ServerError) as info2:
        client.chat("hi")
    assert info2.value.message == "boom"


def test_error_event_inside_200_stream_raises_from_iteration(client, router):
    body = sse_body([content("Hel")], done=False) + (
        b'event: error\ndata: {"error":{"code":400,"message":"too long","type":"exceed_context_size_error"}}\n\n'
    )
    router.post(URL).mock(side_effect=lambda request: streamed(body))
    with pytest.raises(ContextLengthExceeded, match="too long"):
        client.stream("hi").final()


async def test_async_stream_final_equals_chat():
    async def aiter_pieces(body: bytes):
        for i in range(0, len(body), 5):
            yield body[i : i + 5]

    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(URL).mock(
            side_effect=lambda request: httpx.Response(200, content=aiter_pieces(sse_body(STREAM_PAYLOADS)))
        )
        async with corral.AsyncClient("llamacpp://127.0.0.1:8080") as c:
            async with c.stream("hi") as s:
                events = [e async for e in s]
                final = await s.final()
            route.mock(return_value=httpx.Response(200, json=NON_STREAMED))
            whole = await c.chat("hi")
    assert [e for e in events if isinstance(e, ContentDelta)] == [
        ContentDelta("Hel"),
        ContentDelta("lo \u00e9\U0001f600"),
    ]
    assert final == whole


# A gzip-compressing server or proxy must not break streaming: httpx advertises gzip, so decode it.


def gzipped(body: bytes) -> httpx.Response:
    import gzip

    return httpx.Response(
        200, content=gzip.compress(body), headers={"content-type": "text/event-stream", "content-encoding": "gzip"}
    )


def test_gzip_encoded_non_streamed_chat_is_decoded(client, router):
    import gzip

    router.post(URL).mock(
        return_value=httpx.Response(
            200, content=gzip.compress(json.dumps(NON_STREAMED).encode()), headers={"content-encoding": "gzip"}
        )
    )
    assert client.chat("hi").content == "Hello \u00e9\U0001f600"


def test_gzip_encoded_stream_is_decoded(client, router):
    route = router.post(URL).mock(side_effect=lambda request: gzipped(sse_body(STREAM_PAYLOADS)))
    final = client.stream("hi").final()
    assert "gzip" in route.calls.last.request.headers.get("accept-encoding", "")
    assert final.content == "Hello \u00e9\U0001f600"


async def test_async_gzip_encoded_stream_is_decoded():
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(URL).mock(side_effect=lambda request: gzipped(sse_body(STREAM_PAYLOADS)))
        async with corral.AsyncClient("llamacpp://127.0.0.1:8080") as c:
            final = await c.stream("hi").final()
    assert final.content == "Hello \u00e9\U0001f600"


def _whole_tool_response(arguments: str) -> dict:
    """llama-server's non-streamed answer when its parser found a tool call (documented shape)."""
    return {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "get_weather", "arguments": arguments}, "id": "x1"}
                    ],
                },
            }
        ],
        "created": 1,
        "model": "m",
        "object": "chat.completion",
        "usage": {"completion_tokens": 12, "prompt_tokens": 40, "total_tokens": 52},
        "id": "chatcmpl-x",
    }


@pytest.mark.parametrize(
    ("arguments", "valid"), [('{"city":"Paris"}', True), ('{"city": Par', False)], ids=["json", "malformed"]
)
def test_whole_tool_call_response_through_driver(client, router, arguments, valid):
    caps = {"chat_template_caps": {"supports_tools": True}}
    router.get("http://127.0.0.1:8080/props").mock(return_value=httpx.Response(200, json=caps))
    router.post(URL).mock(return_value=httpx.Response(200, json=_whole_tool_response(arguments)))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r = client.chat("weather?", tools=tools)
    if valid:
        assert r.finish_reason == "tool_calls" and r.content == ""
        assert r.tool_calls == (ToolCall("x1", "get_weather", arguments),)
        assert r.tool_calls[0].parsed_arguments() == {"city": "Paris"}
    else:
        assert r.tool_calls == () and r.finish_reason == "stop" and arguments in r.content
