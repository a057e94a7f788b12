"""The anthropic provider through the public clients, against respx mocks of api.anthropic.com.

Bodies follow the Messages API's documented shapes (messages, streaming events, error objects).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

import corral
from corral import (
    Authentication,
    BadRequest,
    ConfigurationError,
    ContentDelta,
    Done,
    Message,
    ModelNotFound,
    RateLimited,
    ReasoningDelta,
    ResponseError,
    ServerError,
    StructuredOutputError,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    UnsupportedCapability,
    Usage,
)

BASE = "https://api.anthropic.com"
MESSAGES = f"{BASE}/v1/messages"
MODELS = f"{BASE}/v1/models"
KEY = "sk-ant-api03-very-secret-key-0123456789"

USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 100,
    "output_tokens": 9,
}
EXPECTED_USAGE = Usage(prompt_tokens=12 + 5 + 100, completion_tokens=9, cached_tokens=100)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **extra: Any) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": "claude-x-20250101",
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": USAGE,
        **extra,
    }


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def tool_use(call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": args}


def error_body(kind: str, msg: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": msg}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


# -- stream building ------------------------------------------------------------------------------------


def sse(payloads: list[dict[str, Any]]) -> bytes:
    return "".join(f"event: {p['type']}\ndata: {json.dumps(p)}\n\n" for p in payloads).encode()


def msg_start() -> dict[str, Any]:
    usage = {k: v for k, v in USAGE.items() if k != "output_tokens"} | {"output_tokens": 1}
    return {"type": "message_start", "message": message([], stop_reason=None, usage=usage)}  # type: ignore[arg-type]


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, d: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def text_delta(index: int, t: str) -> dict[str, Any]:
    return delta(index, {"type": "text_delta", "text": t})


def json_delta(index: int, partial: str) -> dict[str, Any]:
    return delta(index, {"type": "input_json_delta", "partial_json": partial})


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def msg_delta(stop_reason: str) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": 9},
    }


MSG_STOP = {"type": "message_stop"}
PING = {"type": "ping"}


def tool_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    return block_start(index, {"type": "tool_use", "id": call_id, "name": name, "input": {}})


def streamed(body: bytes, step: int = 11) -> httpx.Response:
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    return httpx.Response(200, content=iter(pieces), headers={"content-type": "text/event-stream"})


TEXT_STREAM = [
    msg_start(),
    block_start(0, text("")),
    PING,
    text_delta(0, "Hel"),
    text_delta(0, "lo \u00e9"),
    block_stop(0),
    msg_delta("end_turn"),
    MSG_STOP,
]

# The same reply, streamed and whole: thinking, text and two tool calls.
FULL_STREAM = [
    msg_start(),
    block_start(0, {"type": "thinking", "thinking": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Two cities, "}),
    delta(0, {"type": "thinking_delta", "thinking": "two calls."}),
    delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}),
    block_stop(0),
    block_start(1, text("")),
    text_delta(1, "Let me check."),
    block_stop(1),
    tool_start(2, "toolu_01", "get_weather"),
    json_delta(2, ""),
    json_delta(2, '{"ci'),
    json_delta(2, 'ty": "Par'),
    json_delta(2, 'is"}'),
    block_stop(2),
    tool_start(3, "toolu_02", "get_weather"),
    json_delta(3, '{"city":"Z\u00fcrich"}'),
    block_stop(3),
    msg_delta("tool_use"),
    MSG_STOP,
]
FULL_MESSAGE = message(
    [
        {"type": "thinking", "thinking": "Two cities, two calls.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
        text("Let me check."),
        tool_use("toolu_01", "get_weather", {"city": "Paris"}),
        tool_use("toolu_02", "get_weather", {"city": "Z\u00fcrich"}),
    ],
    stop_reason="tool_use",
)


@pytest.fixture
def router():
    with respx.mock(assert_all_mocked=True, assert_all_called=True) as mock:
        yield mock


@pytest.fixture
def client():
    c = corral.Client(provider="anthropic", api_key=KEY, model="claude-x", max_retries=0)
    yield c
    c.close()


def sent(route: respx.Route) -> dict[str, Any]:
    return json.loads(route.calls.last.request.content)


# -- request shape --------------------------------------------------------------------------------------


def test_chat_text_request_headers_and_response(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("Hello!")])))
    resp = client.chat("hi")
    request = route.calls.last.request
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert sent(route) == {
        "model": "claude-x",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }
    assert resp.content == "Hello!"
    assert resp.finish_reason == "stop"
    assert resp.usage == EXPECTED_USAGE
    assert (resp.id, resp.model, resp.provider) == ("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-x-20250101", "anthropic")
    assert resp.reasoning is None
    assert resp.tool_calls == ()


def test_dsn_client_and_custom_base_url(router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("a")])))
    with corral.Client("anthropic://k@", model="claude-x") as c:
        assert c.chat("hi").content == "a"
    assert route.calls.last.request.headers["x-api-key"] == "k"
    proxy = router.post("https://gw.example/anthropic/v1/messages").mock(
        return_value=httpx.Response(200, json=message([text("b")]))
    )
    with corral.Client(provider="anthropic", base_url="https://gw.example/anthropic", api_key="k", model="m") as c:
        assert c.chat("hi").content == "b"
    assert proxy.called


def test_system_messages_go_to_top_level_system(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("ok")])))
    client.chat(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "again"},
        ]
    )
    body = sent(route)
    assert body["system"] == "You are terse.\n\nAnswer in French."
    # the two user turns around the system message are merged: the API requires alternation
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}
    ]


def test_sampling_parameters_and_extra_body(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("ok")])))
    thinking = {"type": "enabled", "budget_tokens": 2048}
    client.chat(
        "hi",
        model="claude-other",
        max_tokens=300,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        seed=7,
        extra_body={"thinking": thinking, "top_k": 40},
    )
    body = sent(route)
    assert body["model"] == "claude-other"
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (300, 0.5, 0.9)
    assert body["stop_sequences"] == ["END"]
    assert body["thinking"] == thinking
    assert body["top_k"] == 40
    assert "seed" not in body and "stop" not in body


def test_max_tokens_option_from_config(router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("ok")])))
    config = {"providers": {"claude": {"type": "anthropic", "api_key": "k", "model": "claude-x", "max_tokens": 1000}}}
    with corral.Client("claude", config=config) as c:
        c.chat("hi")
    assert sent(route)["max_tokens"] == 1000


def test_missing_model_is_a_configuration_error(router):
    with corral.Client(provider="anthropic", api_key=KEY) as c, pytest.raises(ConfigurationError) as info:
        c.chat("hi")
    assert "anthropic needs a model" in str(info.value)
    assert KEY not in str(info.value)


def test_image_parts(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("a cat")])))
    client.chat(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    )
    assert sent(route)["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_unusable_image_url_is_a_configuration_error(client):
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///tmp/cat.png"}}]}]
    with pytest.raises(ConfigurationError, match=r"messages\[0\]\.content\[0\]"):
        client.chat(bad)


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_definitions_and_tool_choice(client, router, choice, wire):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("ok")])))
    bare = {"type": "function", "function": {"name": "now"}}
    client.chat("weather?", tools=[WEATHER_TOOL, bare], tool_choice=choice)
    body = sent(route)
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == wire


def test_tool_round_trip_request_merges_turns(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("Sunny, cold.")])))
    calls = [
        ToolCall("toolu_01", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_02", "get_weather", '{"city": "Rome"}'),
    ]
    client.chat(
        [
            Message.system("Be brief."),
            Message.user("Weather in Paris and Rome?"),
            Message.assistant("Let me check.", calls),
            Message.tool("toolu_01", "12C, sunny"),
            Message.tool("toolu_02", "3C, snow"),
            Message.user("Summarise."),
        ],
        tools=[WEATHER_TOOL],
    )
    body = sent(route)
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "12C, sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "3C, snow"},
                {"type": "text", "text": "Summarise."},
            ],
        },
    ]


def test_tool_results_come_first_in_a_merged_user_turn(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("ok")])))
    client.chat(
        [
            Message.user("Weather?"),
            Message.assistant(None, [ToolCall("toolu_01", "get_weather", "")]),
            Message.user("Use Celsius."),
            Message.tool("toolu_01", "12C"),
        ]
    )
    turns = sent(route)["messages"]
    assert turns[1]["content"] == [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "12C"},
        {"type": "text", "text": "Use Celsius."},
    ]


def test_invalid_tool_call_arguments_name_the_message(client):
    bad = [Message.user("hi"), Message.assistant(None, [ToolCall("t1", "f", '{"a": ')])]
    with pytest.raises(ConfigurationError, match=r"messages\[1\]\.tool_calls\[0\].*not valid JSON"):
        client.chat(bad)


def test_tool_message_without_tool_call_id_is_a_configuration_error(client):
    with pytest.raises(ConfigurationError, match=r"messages\[1\]: a tool message needs tool_call_id"):
        client.chat([{"role": "user", "content": "hi"}, {"role": "tool", "content": "12C"}])


# -- whole responses ------------------------------------------------------------------------------------


def test_response_tool_use_becomes_tool_calls_and_round_trips(client, router):
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=FULL_MESSAGE))
    resp = client.chat("Weather in Paris and Zürich?", tools=[WEATHER_TOOL])
    assert resp.finish_reason == "tool_calls"
    assert resp.content == "Let me check."
    assert resp.reasoning == "Two cities, two calls."
    assert resp.tool_calls == (
        ToolCall("toolu_01", "get_weather", '{"city": "Paris"}'),
        ToolCall("toolu_02", "get_weather", '{"city": "Zürich"}'),
    )
    assert resp.tool_calls[1].parsed_arguments() == {"city": "Zürich"}
    # the reply goes back as the assistant turn, its calls as tool_use blocks with the same input
    client.chat(["Weather?", resp.message, Message.tool("toolu_01", "sunny"), Message.tool("toolu_02", "rain")])
    turns = sent(route)["messages"]
    assert [b["type"] for b in turns[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert turns[1]["content"][2]["input"] == {"city": "Zürich"}
    assert [b["tool_use_id"] for b in turns[2]["content"]] == ["toolu_01", "toolu_02"]


def test_redacted_thinking_is_ignored(client, router):
    blocks = [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}, text("42")]
    router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message(blocks)))
    resp = client.chat("?")
    assert (resp.content, resp.reasoning) == ("42", None)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "content_filter")],
)
def test_stop_reason_mapping(client, router, stop_reason, finish):
    router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("x")], stop_reason=stop_reason)))
    assert client.chat("hi").finish_reason == finish


def test_response_without_stop_reason_is_a_response_error(client, router):
    router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([text("x")], stop_reason=None)))
    with pytest.raises(ResponseError, match="stop_reason"):
        client.chat("hi")


# -- streaming ------------------------------------------------------------------------------------------


def test_streamed_text(client, router):
    route = router.post(MESSAGES).mock(side_effect=lambda request: streamed(sse(TEXT_STREAM)))
    with client.stream("hi") as s:
        events = list(s)
    body = sent(route)
    assert body["stream"] is True
    assert route.calls.last.request.headers["x-api-key"] == KEY
    assert events[:-1] == [ContentDelta("Hel"), ContentDelta("lo \u00e9")]
    assert isinstance(events[-1], Done)
    final = events[-1].response
    assert final.content == "Hello \u00e9"
    assert final.finish_reason == "stop"
    assert final.usage == EXPECTED_USAGE  # input counts from message_start, output from message_delta
    assert final.id == "msg_01XFDUDYJgAACzvnptvVoYEL"


def test_streamed_thinking_and_tool_calls(client, router):
    router.post(MESSAGES).mock(side_effect=lambda request: streamed(sse(FULL_STREAM), step=5))
    with client.stream("Weather in Paris and Zürich?", tools=[WEATHER_TOOL]) as s:
        events = list(s)
    paris = ToolCall("toolu_01", "get_weather", '{"city": "Paris"}')
    zurich = ToolCall("toolu_02", "get_weather", '{"city": "Zürich"}')
    assert events[:-1] == [
        ReasoningDelta("Two cities, "),
        ReasoningDelta("two calls."),
        ContentDelta("Let me check."),
        ToolCallDelta(0, "toolu_01", "get_weather", ""),  # index: the call's ordinal, not the block index (2)
        ToolCallDelta(0, None, None, '{"ci'),
        ToolCallDelta(0, None, None, 'ty": "Par'),
        ToolCallDelta(0, None, None, 'is"}'),
        ToolCallEnd(0, paris),
        ToolCallDelta(1, "toolu_02", "get_weather", ""),
        ToolCallDelta(1, None, None, '{"city":"Z\u00fcrich"}'),
        ToolCallEnd(1, zurich),
    ]
    final = events[-1].response
    assert final.tool_calls == (paris, zurich)
    assert final.finish_reason == "tool_calls"
    assert final.reasoning == "Two cities, two calls."


def test_stream_final_equals_chat(client, router):
    route = router.post(MESSAGES).mock(side_effect=lambda request: streamed(sse(FULL_STREAM)))
    final = client.stream("w?", tools=[WEATHER_TOOL]).final()
    route.mock(return_value=httpx.Response(200, json=FULL_MESSAGE))
    whole = client.chat("w?", tools=[WEATHER_TOOL])
    assert "stream" not in sent(route)
    assert final == whole
    assert final.usage == EXPECTED_USAGE


def test_stream_cut_before_message_stop_raises_response_error(client, router):
    cut = TEXT_STREAM[:5]  # text arrived, then the connection ended
    router.post(MESSAGES).mock(side_effect=lambda request: streamed(sse(cut)))
    seen = []
    with pytest.raises(ResponseError, match="stop reason"), client.stream("hi") as s:
        for event in s:
            seen.append(event)
    assert seen == [ContentDelta("Hel"), ContentDelta("lo \u00e9")]


def test_stream_cut_between_message_delta_and_message_stop(client, router):
    router.post(MESSAGES).mock(side_effect=lambda request: streamed(sse(TEXT_STREAM[:-1])))
    with pytest.raises(ResponseError, match="message_stop"):
        client.stream("hi").final()


@pytest.mark.parametrize(
    ("kind", "exc_type", "status"),
    [
        ("overloaded_error", ServerError, 529),
        ("api_error", ServerError, 500),
        ("rate_limit_error", RateLimited, 429),
        ("invalid_request_error", BadRequest, 400),
    ],
)
def test_error_event_inside_200_stream(client, router, kind, exc_type, status):
    body = (
        sse(TEXT_STREAM[:4]) + b"event: error\ndata: " + json.dumps(error_body(kind, "Overloaded")).encode() + b"\n\n"
    )
    router.post(MESSAGES).mock(side_effect=lambda request: streamed(body))
    seen = []
    with pytest.raises(exc_type) as info, client.stream("hi") as s:
        for event in s:
            seen.append(event)
    assert seen == [ContentDelta("Hel")]
    assert type(info.value) is exc_type
    assert info.value.status == status
    assert info.value.message == "Overloaded"
    assert info.value.error_type == kind
    assert info.value.provider == "anthropic"


# -- structured output ----------------------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    temp: int


def test_pydantic_structured_output_via_forced_tool(client, router):
    out = tool_use("toolu_09", "json_output", {"city": "Paris", "temp": 21})
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([out], stop_reason="tool_use")))
    resp = client.chat("Weather in Paris as JSON", response_format=Weather)
    body = sent(route)
    assert body["tools"] == [
        {
            "name": "json_output",
            "description": "Give the final answer as JSON matching this schema.",
            "input_schema": Weather.model_json_schema(),
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "json_output"}
    assert "response_format" not in body
    assert resp.parsed == Weather(city="Paris", temp=21)
    assert json.loads(resp.content) == {"city": "Paris", "temp": 21}
    assert resp.tool_calls == ()  # the synthetic tool is not reported as a call
    assert resp.finish_reason == "stop"


def test_streamed_structured_output_is_content(client, router):
    payloads = [
        msg_start(),
        tool_start(0, "toolu_09", "json_output"),
        json_delta(0, '{"city": '),
        json_delta(0, '"Paris", "temp": 21}'),
        block_stop(0),
        msg_delta("tool_use"),
        MSG_STOP,
    ]
    route = router.post(MESSAGES).mock(side_effect=lambda request: streamed(sse(payloads)))
    with client.stream("Weather in Paris as JSON", response_format=Weather) as s:
        events = list(s)
    assert sent(route)["tool_choice"] == {"type": "tool", "name": "json_output"}
    assert events[:-1] == [ContentDelta('{"city": '), ContentDelta('"Paris", "temp": 21}')]
    final = events[-1].response
    assert final.parsed == Weather(city="Paris", temp=21)
    assert final.tool_calls == ()
    out = tool_use("toolu_09", "json_output", {"city": "Paris", "temp": 21})
    route.mock(return_value=httpx.Response(200, json=message([out], stop_reason="tool_use")))
    assert client.chat("Weather in Paris as JSON", response_format=Weather) == final


def test_json_object_format_and_tools_together(client, router):
    out = tool_use("toolu_09", "json_output", {"answer": 4})
    route = router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([out], stop_reason="tool_use")))
    resp = client.chat("2+2 as JSON", response_format={"type": "json_object"}, tools=[WEATHER_TOOL])
    body = sent(route)
    assert [t["name"] for t in body["tools"]] == ["get_weather", "json_output"]
    assert body["tools"][1]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "any"}  # a real tool or the JSON answer
    assert resp.parsed == {"answer": 4}


def test_structured_output_with_thinking_falls_back_to_text(client, router):
    route = router.post(MESSAGES).mock(
        return_value=httpx.Response(200, json=message([text('{"city":"Oslo","temp":-3}')]))
    )
    resp = client.chat(
        "JSON please", response_format=Weather, extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}}
    )
    assert sent(route)["tool_choice"] == {"type": "auto"}  # the API refuses forced tool use while thinking
    assert resp.parsed == Weather(city="Oslo", temp=-3)


def test_structured_output_that_does_not_validate(client, router):
    out = tool_use("toolu_09", "json_output", {"city": "Paris"})
    router.post(MESSAGES).mock(return_value=httpx.Response(200, json=message([out], stop_reason="tool_use")))
    with pytest.raises(StructuredOutputError, match="Weather"):
        client.chat("JSON", response_format=Weather)


# -- HTTP errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "msg", "exc_type"),
    [
        (401, "authentication_error", "invalid x-api-key", Authentication),
        (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
            Authentication,
        ),
        (404, "not_found_error", "model: claude-x", ModelNotFound),
        (400, "invalid_request_error", "messages: roles must alternate", BadRequest),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", BadRequest),
        (500, "api_error", "Internal server error", ServerError),
        (529, "overloaded_error", "Overloaded", ServerError),
    ],
)
def test_http_error_bodies(client, router, status, kind, msg, exc_type):
    router.post(MESSAGES).mock(return_value=httpx.Response(status, json=error_body(kind, msg)))
    with pytest.raises(exc_type) as info:
        client.chat("hi")
    err = info.value
    assert type(err) is exc_type
    assert (err.status, err.message, err.error_type) == (status, msg, kind)
    assert err.retryable == (status >= 500)
    with pytest.raises(exc_type) as streamed_info, client.stream("hi") as s:
        list(s)
    assert streamed_info.value.message == msg


def test_overloaded_529_is_retried(router):
    overloaded = httpx.Response(529, json=error_body("overloaded_error", "Overloaded"))
    route = router.post(MESSAGES).mock(side_effect=[overloaded, httpx.Response(200, json=message([text("ok")]))])
    with corral.Client(provider="anthropic", api_key=KEY, model="claude-x", max_retries=1) as c:
        assert c.chat("hi").content == "ok"
    assert route.call_count == 2


def test_rate_limit_with_retry_after(client, router):
    router.post(MESSAGES).mock(
        return_value=httpx.Response(
            429,
            json=error_body("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
            headers={"retry-after": "13", "anthropic-ratelimit-requests-remaining": "0"},
        )
    )
    with pytest.raises(RateLimited) as info:
        client.chat("hi")
    assert info.value.retry_after == 13.0
    assert info.value.retryable
    assert "per-minute rate limit" in str(info.value)


def test_api_key_never_appears_in_errors(client, router):
    router.post(MESSAGES).mock(
        return_value=httpx.Response(401, json=error_body("authentication_error", "invalid x-api-key"))
    )
    errors: list[BaseException] = []
    for attempt in (lambda: client.chat("hi"), lambda: client.stream("hi").final()):
        with pytest.raises(Authentication) as info:
            attempt()
        errors.append(info.value)
    for err in errors:
        assert KEY not in str(err)
        assert KEY not in repr(err)
        assert KEY not in repr(err.body)
    assert KEY not in repr(client.config)


# -- other routes ---------------------------------------------------------------------------------------


def test_models(client, router):
    listing = {
        "data": [
            {
                "type": "model",
                "id": "claude-sonnet-4-20250514",
                "display_name": "Claude Sonnet 4",
                "created_at": "2025-05-22T00:00:00Z",
            },
            {"type": "model", "id": "claude-x", "display_name": "X", "created_at": "2025-02-19T00:00:00Z"},
        ],
        "has_more": False,
        "first_id": "claude-sonnet-4-20250514",
        "last_id": "claude-x",
    }
    route = router.get(MODELS).mock(return_value=httpx.Response(200, json=listing))
    models = client.models()
    assert route.calls.last.request.headers["x-api-key"] == KEY
    assert [m.id for m in models] == ["claude-sonnet-4-20250514", "claude-x"]
    assert models[0].created == 1747872000
    assert models[0].meta["display_name"] == "Claude Sonnet 4"
    assert models[0].provider == "anthropic"


def test_health(client, router):
    route = router.get(MODELS).mock(return_value=httpx.Response(200, json={"data": [], "has_more": False}))
    assert client.health().status == "ok"
    route.mock(return_value=httpx.Response(401, json=error_body("authentication_error", "invalid x-api-key")))
    health = client.health()
    assert (health.status, health.detail) == ("error", "HTTP 401")


def test_unsupported_operations_send_nothing(client):
    with pytest.raises(UnsupportedCapability, match="embeddings"):
        client.embed("hi")
    with pytest.raises(UnsupportedCapability, match="text completion"):
        client.complete("hi")
    with pytest.raises(UnsupportedCapability, match="GBNF grammar"):
        client.chat("hi", grammar="root ::= [a-z]+")


# -- async ----------------------------------------------------------------------------------------------


async def test_async_chat_and_stream():
    async def pieces(body: bytes):
        for i in range(0, len(body), 9):
            yield body[i : i + 9]

    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(MESSAGES).mock(return_value=httpx.Response(200, json=FULL_MESSAGE))
        async with corral.AsyncClient(provider="anthropic", api_key=KEY, model="claude-x") as c:
            whole = await c.chat("w?", tools=[WEATHER_TOOL])
            assert route.calls.last.request.headers["x-api-key"] == KEY
            route.mock(side_effect=lambda request: httpx.Response(200, content=pieces(sse(FULL_STREAM))))
            async with c.stream("w?", tools=[WEATHER_TOOL]) as s:
                events = [e async for e in s]
                final = await s.final()
    assert sent(route)["stream"] is True
    assert whole.tool_calls[0] == ToolCall("toolu_01", "get_weather", '{"city": "Paris"}')
    assert [e for e in events if isinstance(e, ToolCallEnd)] == [
        ToolCallEnd(0, whole.tool_calls[0]),
        ToolCallEnd(1, whole.tool_calls[1]),
    ]
    assert final == whole
