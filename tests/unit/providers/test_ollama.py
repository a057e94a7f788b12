"""The Ollama provider against respx mocks of its native API (shapes from ollama's docs/api.md)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

import corral
from corral import (
    ConfigurationError,
    ContentDelta,
    Done,
    ModelNotFound,
    ReasoningDelta,
    ResponseError,
    ServerError,
    ServerUnreachable,
    StructuredOutputError,
    ToolCall,
    ToolCallEnd,
    UnsupportedCapability,
    Usage,
)
from corral.providers.ollama import OllamaProvider

BASE = "http://127.0.0.1:11434"
CHAT = f"{BASE}/api/chat"
DSN = "ollama://127.0.0.1:11434"

STATS = {
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}


def chunk(content: str = "", *, thinking: str | None = None, tool_calls: list[Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00", "message": message, "done": False}


def final(content: str = "", *, reason: str | None = "stop", **message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "llama3.2",
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": True,
        **STATS,
    }
    if reason is not None:
        out["done_reason"] = reason
    return out


def ndjson(objects: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()


def streamed(body: bytes, *, step: int = 7) -> httpx.Response:
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    return httpx.Response(200, content=iter(pieces), headers={"content-type": "application/x-ndjson"})


def sent(route: respx.Route) -> dict[str, Any]:
    return json.loads(route.calls.last.request.content)


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a given city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def router():
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


@pytest.fixture
def client():
    c = corral.Client(DSN, model="llama3.2", max_retries=0)
    yield c
    c.close()


# -- chat ---------------------------------------------------------------------------------------------


def test_chat_request_body_and_response(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("Hello! How are you today?")))
    resp = client.chat("why is the sky blue?", max_tokens=50, temperature=0.2, top_p=0.9, seed=42, stop="\n\n")
    assert sent(route) == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "why is the sky blue?"}],
        "stream": False,
        "options": {"num_predict": 50, "temperature": 0.2, "top_p": 0.9, "seed": 42, "stop": ["\n\n"]},
    }
    assert "authorization" not in route.calls.last.request.headers
    assert resp.content == "Hello! How are you today?"
    assert resp.finish_reason == "stop"
    assert resp.model == "llama3.2"
    assert resp.provider == "ollama"
    assert resp.reasoning is None
    assert resp.usage == Usage(prompt_tokens=26, completion_tokens=298)


def test_usage_and_timings_from_nanosecond_durations(client, router):
    router.post(CHAT).mock(return_value=httpx.Response(200, json=final("Hi")))
    t = client.chat("hi").timings
    assert t is not None
    assert (t.prompt_tokens, t.predicted_tokens) == (26, 298)
    assert t.prompt_ms == pytest.approx(383.809)
    assert t.predicted_ms == pytest.approx(4799.921)
    assert t.prompt_per_second == pytest.approx(26 / 0.383809)
    assert t.predicted_per_second == pytest.approx(298 / 4.799921)


def test_length_done_reason_and_missing_done_reason(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("cut", reason="length")))
    assert client.chat("hi").finish_reason == "length"
    route.mock(return_value=httpx.Response(200, json=final("ok", reason=None)))  # older servers omit it
    assert client.chat("hi").finish_reason == "stop"


def test_thinking_field_and_think_tags_become_reasoning(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("Blue.", thinking="Rayleigh.")))
    resp = client.chat("sky?", extra_body={"think": True})
    assert sent(route)["think"] is True
    assert (resp.content, resp.reasoning) == ("Blue.", "Rayleigh.")
    route.mock(return_value=httpx.Response(200, json=final("<think>Rayleigh.</think>\n\nBlue.")))
    resp = client.chat("sky?")
    assert (resp.content, resp.reasoning) == ("Blue.", "Rayleigh.")


def test_keep_alive_and_extra_options():
    with respx.mock(assert_all_mocked=True) as router, corral.Client(f"{DSN}?keep_alive=10m", model="m") as c:
        route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("x")))
        c.chat("hi", temperature=0.5, extra_body={"options": {"num_ctx": 8192}})
        body = sent(route)
        assert body["keep_alive"] == "10m"
        assert body["options"] == {"temperature": 0.5, "num_ctx": 8192}
    with respx.mock(assert_all_mocked=True) as router, corral.Client(f"{DSN}?keep_alive=-1", model="m") as c:
        route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("x")))
        c.chat("hi")
        assert sent(route)["keep_alive"] == -1  # a number: Ollama's duration parser rejects "-1"
        assert "options" not in sent(route)


def test_chat_without_model_is_a_configuration_error(router):
    route = router.post(CHAT)
    with corral.Client(DSN) as c, pytest.raises(ConfigurationError, match="model"):
        c.chat("hi")
    assert not route.called


# -- streaming ----------------------------------------------------------------------------------------

STREAM = [
    chunk(thinking="Greet "),
    chunk(thinking="back."),
    chunk("Hel"),
    chunk("lo \u00e9\U0001f600"),
    final(""),
]


@pytest.mark.parametrize("step", [1, 3, 7, 4096])
def test_stream_ndjson_split_anywhere_equals_chat(client, router, step):
    route = router.post(CHAT).mock(side_effect=lambda request: streamed(ndjson(STREAM), step=step))
    with client.stream("hi") as s:
        events = list(s)
        streamed_final = s.final()
    assert sent(route)["stream"] is True
    assert events[:4] == [
        ReasoningDelta("Greet "),
        ReasoningDelta("back."),
        ContentDelta("Hel"),
        ContentDelta("lo \u00e9\U0001f600"),
    ]
    assert len(events) == 5
    assert isinstance(events[-1], Done)
    assert events[-1].response == streamed_final

    route.mock(return_value=httpx.Response(200, json=final("Hello \u00e9\U0001f600", thinking="Greet back.")))
    whole = client.chat("hi")
    assert sent(route)["stream"] is False
    assert streamed_final == whole
    assert whole.usage == Usage(26, 298)
    assert whole.timings is not None


def test_stream_think_tags_split_across_chunks(client, router):
    body = ndjson([chunk("<thi"), chunk("nk>pondering</th"), chunk("ink>Answer"), final()])
    router.post(CHAT).mock(side_effect=lambda request: streamed(body, step=5))
    resp = client.stream("q").final()
    assert (resp.content, resp.reasoning) == ("Answer", "pondering")


def test_stream_error_line_raises_server_error_after_content(client, router):
    body = ndjson([chunk("Hel"), {"error": "an error was encountered while running the model"}])
    router.post(CHAT).mock(side_effect=lambda request: streamed(body))
    seen = []
    with pytest.raises(ServerError) as info, client.stream("hi") as s:
        for event in s:
            seen.append(event)
    assert seen == [ContentDelta("Hel")]
    assert info.value.status == 500
    assert info.value.message == "an error was encountered while running the model"


def test_stream_without_done_line_raises(client, router):
    router.post(CHAT).mock(side_effect=lambda request: streamed(ndjson([chunk("Hel"), chunk("lo")])))
    with pytest.raises(ResponseError, match="done"):
        client.stream("hi").final()


# -- tools --------------------------------------------------------------------------------------------


def test_tool_calls_parsed_with_generated_ids(client, router):
    answer = final(tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}])
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=answer))
    resp = client.chat("what is the weather in tokyo?", tools=[WEATHER_TOOL])
    assert sent(route)["tools"] == [WEATHER_TOOL]
    (call,) = resp.tool_calls
    # Ollama sends no ids: corral makes unique ones (a positional "call_0" would repeat every turn).
    assert call.id.startswith("call_") and len(call.id) > 10
    assert (call.name, call.arguments) == ("get_weather", '{"city": "Tokyo"}')
    assert call.parsed_arguments() == {"city": "Tokyo"}
    assert resp.finish_reason == "tool_calls"


def test_tool_history_translated_to_ollama_shapes(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("11 degrees in Toronto.")))
    history = [
        {"role": "user", "content": "what is the weather in Toronto?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Toronto"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "11 degrees celsius"},
    ]
    client.chat(history, tools=[WEATHER_TOOL])
    assert sent(route)["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Toronto"}}, "id": "call_7"}],
        },
        {"role": "tool", "content": "11 degrees celsius", "tool_name": "get_weather", "tool_call_id": "call_7"},
    ]


def test_tool_call_round_trip_through_response_message(client, router):
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final(tool_calls=calls)))
    first = client.chat("weather?", tools=[WEATHER_TOOL])
    route.mock(return_value=httpx.Response(200, json=final("Sunny.")))
    convo = ["weather?", first.message, corral.Message.tool(first.tool_calls[0].id, "sunny")]
    client.chat(convo, tools=[WEATHER_TOOL])
    msgs = sent(route)["messages"]
    made_up = first.tool_calls[0].id
    assert msgs[1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}, "id": made_up}
    ]
    assert msgs[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": made_up}


def test_streamed_tool_calls_each_get_an_index_and_id(client, router):
    body = ndjson(
        [
            chunk(tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]),
            chunk(tool_calls=[{"id": "abc", "function": {"name": "get_time", "arguments": {}}}]),
            final(),
        ]
    )
    router.post(CHAT).mock(side_effect=lambda request: streamed(body, step=11))
    time_tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    with client.stream("weather and time?", tools=[WEATHER_TOOL, time_tool]) as s:
        events = list(s)
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    made_up = ends[0].call.id
    assert made_up.startswith("call_") and made_up != "abc"
    assert ends == [
        ToolCallEnd(0, ToolCall(made_up, "get_weather", '{"city": "Tokyo"}')),
        ToolCallEnd(1, ToolCall("abc", "get_time", "{}")),
    ]
    assert events[-1].response.finish_reason == "tool_calls"
    assert events[-1].response.tool_calls == tuple(e.call for e in ends)


def test_tool_choice(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("ok")))
    client.chat("hi", tools=[WEATHER_TOOL], tool_choice="none")
    assert "tools" not in sent(route)
    with pytest.raises(UnsupportedCapability):
        client.chat("hi", tools=[WEATHER_TOOL], tool_choice="required")
    assert route.call_count == 1


def test_assistant_arguments_must_be_a_json_object(client, router):
    route = router.post(CHAT)
    bad = corral.Message.assistant(tool_calls=[ToolCall("c1", "f", "[1, 2]")])
    with pytest.raises(ConfigurationError, match="JSON object"):
        client.chat(["hi", bad, corral.Message.tool("c1", "x")])
    assert not route.called


# -- structured output --------------------------------------------------------------------------------


class Person(BaseModel):
    age: int
    available: bool


def test_json_object_format(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final('{"a": 1}')))
    resp = client.chat("json please", response_format={"type": "json_object"})
    assert sent(route)["format"] == "json"
    assert resp.parsed == {"a": 1}


def test_json_schema_format_parsed_into_pydantic(client, router):
    answer = final('{"age": 22, "available": false}')
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=answer))
    resp = client.chat("Ollama is 22 years old and busy saving the world.", response_format=Person)
    assert sent(route)["format"] == Person.model_json_schema()
    assert resp.parsed == Person(age=22, available=False)


def test_bare_schema_and_invalid_output(client, router):
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final('{"age": 22}')))
    assert client.chat("x", response_format=schema).parsed == {"age": 22}
    assert sent(route)["format"] == schema
    route.mock(return_value=httpx.Response(200, json=final('{"age": ')))
    with pytest.raises(StructuredOutputError):
        client.chat("x", response_format=schema)


# -- images -------------------------------------------------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def test_data_url_images_become_base64_list(client, router):
    route = router.post(CHAT).mock(return_value=httpx.Response(200, json=final("A pig.")))
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is in this image?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ],
    }
    client.chat([message])
    assert sent(route)["messages"] == [{"role": "user", "content": "what is in this image?", "images": [PNG]}]


def test_http_image_url_is_refused_before_sending(client, router):
    route = router.post(CHAT)
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/pig.png"}}]}
    with pytest.raises(ConfigurationError, match="inline"):
        client.chat([message])
    assert not route.called


# -- embeddings, models, health -------------------------------------------------------------------------


def test_embeddings(client, router):
    answer = {
        "model": "all-minilm",
        "embeddings": [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]],
        "total_duration": 20494584,
        "load_duration": 18598416,
        "prompt_eval_count": 16,
    }
    route = router.post(f"{BASE}/api/embed").mock(return_value=httpx.Response(200, json=answer))
    emb = client.embed(["Why is the sky blue?", "Why is the grass green?"], model="all-minilm")
    assert sent(route) == {"model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"]}
    assert emb.vectors == [[0.010071029, -0.0017594862], [-0.0098027075, 0.06042469]]
    assert emb.model == "all-minilm"
    assert emb.usage == Usage(prompt_tokens=16)
    assert emb.provider == "ollama"


TAGS = {
    "models": [
        {
            "name": "deepseek-r1:latest",
            "model": "deepseek-r1:latest",
            "modified_at": "2025-05-10T08:06:48.639712648-07:00",
            "size": 4683075271,
            "digest": "0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163",
            "details": {"format": "gguf", "family": "qwen2", "parameter_size": "7.6B", "quantization_level": "Q4_K_M"},
        },
        {
            "name": "llama3.2:latest",
            "model": "llama3.2:latest",
            "size": 2019393189,
            "details": {"family": "llama", "parameter_size": "3.2B"},
        },
    ]
}


def test_models_from_tags(client, router):
    router.get(f"{BASE}/api/tags").mock(return_value=httpx.Response(200, json=TAGS))
    models = client.models()
    assert [m.id for m in models] == ["deepseek-r1:latest", "llama3.2:latest"]
    assert models[0].meta["details"]["parameter_size"] == "7.6B"
    assert models[1].meta["size"] == 2019393189
    assert {m.provider for m in models} == {"ollama"}


def test_health(client, router):
    route = router.get(f"{BASE}/api/version").mock(return_value=httpx.Response(200, json={"version": "0.5.1"}))
    health = client.health()
    assert health.ok
    assert health.detail == "Ollama 0.5.1"
    route.mock(return_value=httpx.Response(500, json={"error": "boom"}))
    health = client.health()
    assert health.status == "error"
    assert "boom" in health.detail


# -- errors -------------------------------------------------------------------------------------------

NOT_FOUND = {"error": 'model "x" not found, try pulling it first'}


def test_model_not_found_404(client, router):
    router.post(CHAT).mock(return_value=httpx.Response(404, json=NOT_FOUND))
    # The body is only {"error": "<text>"}, but /api/chat names a model: a 404 there is that model.
    with pytest.raises(ModelNotFound) as info:
        client.chat("hi", model="x")
    assert info.value.status == 404
    assert info.value.message == 'model "x" not found, try pulling it first'
    with pytest.raises(ModelNotFound) as info2, client.stream("hi", model="x") as s:
        list(s)
    assert info2.value.status == 404


def test_unreachable_message(client, router):
    router.post(CHAT).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(ServerUnreachable, match=re.escape("Ollama not running at http://127.0.0.1:11434")):
        client.chat("hi")


def test_base_url_suffixes_are_the_root():
    for url in ("http://h:11434", "http://h:11434/", "http://h:11434/api", "http://h:11434/v1"):
        p = OllamaProvider(corral.ProviderConfig("o", "ollama", url))
        assert p.base_url == "http://h:11434"


# -- async --------------------------------------------------------------------------------------------


async def test_async_chat_and_stream():
    async def pieces(body: bytes):
        for i in range(0, len(body), 5):
            yield body[i : i + 5]

    with respx.mock(assert_all_mocked=True) as router:
        route = router.post(CHAT).mock(side_effect=lambda request: httpx.Response(200, content=pieces(ndjson(STREAM))))
        async with corral.AsyncClient(DSN, model="llama3.2") as c:
            async with c.stream("hi") as s:
                events = [e async for e in s]
                streamed_final = await s.final()
            route.mock(return_value=httpx.Response(200, json=final("Hello \u00e9\U0001f600", thinking="Greet back.")))
            whole = await c.chat("hi")
    assert [e for e in events if isinstance(e, ContentDelta)] == [
        ContentDelta("Hel"),
        ContentDelta("lo \u00e9\U0001f600"),
    ]
    assert streamed_final == whole
    assert whole.reasoning == "Greet back."
