"""/v1/responses on backends that do not speak it, with the real clients: the openai SDK (whole,
streamed, tools, text.format), the OpenAI Agents SDK and LangChain, against scripted Anthropic,
OpenAI-chat-only and Ollama backends; and the pass-through to a backend that has the route (OpenAI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from .canned import Canned, Reply, json_reply, sse_reply
from .conftest import GATEWAY_KEY, RunningGateway, gateway_config
from .scripted import Call, Scripted, Text

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
BACKENDS = ["claude-m", "chat-m", "ollama-m"]


class Person(BaseModel):
    name: str
    age: int


def native_answer(body: dict[str, Any]) -> Reply:
    """OpenAI's own /v1/responses, canned: a whole response, or its event stream."""
    item = {"id": "msg_n", "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": "native hi", "annotations": []}]}  # fmt: skip
    resp = {"id": "resp_n", "object": "response", "created_at": 1, "status": "completed", "model": body["model"],
            "output": [item], "tool_choice": "auto", "tools": [], "parallel_tool_calls": True,
            "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}  # fmt: skip
    if not body.get("stream"):
        return json_reply(resp)
    events = [
        {"type": "response.created", "response": {**resp, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {"type": "response.content_part.added", "output_index": 0, "content_index": 0, "item_id": "msg_n",
         "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "item_id": "msg_n",
         "delta": "native hi"},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": resp},
    ]  # fmt: skip
    frames = [f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n".encode()
              for i, e in enumerate(events)]  # fmt: skip
    return sse_reply(frames)


@pytest.fixture(scope="module")
def backend() -> Iterator[Scripted]:
    up = Scripted([Text("Hello from the backend.")])
    yield up
    up.close()


@pytest.fixture(scope="module")
def native() -> Iterator[Canned]:
    up = Canned({"/v1/responses": native_answer})
    yield up
    up.close()


@pytest.fixture(scope="module")
def gw(backend: Scripted, native: Canned) -> Iterator[RunningGateway]:
    config = gateway_config(
        {
            "claude": {"type": "anthropic", "base_url": backend.url, "api_key": "sk-ant-canary-0001"},
            "chatonly": {"type": "openai", "base_url": f"{backend.url}/v1", "api_key": "k", "max_retries": 0},
            "chatonly2": {"type": "openai", "base_url": f"{backend.url}/v1", "api_key": "k", "max_retries": 0},
            "ollama": {"type": "ollama", "base_url": backend.url},
            "openai": {"type": "openai", "base_url": f"{native.url}/v1", "api_key": "k", "max_retries": 0},
            "told": {"type": "openai", "base_url": f"{backend.url}/v1", "api_key": "k", "responses": "translate"},
        },
        gateway={"api_keys": [GATEWAY_KEY]},
        models={
            "claude-m": {"provider": "claude", "upstream": "claude-real"},
            "chat-m": {"provider": "chatonly"},
            "chat-fresh": {"provider": "chatonly2"},
            "ollama-m": {"provider": "ollama"},
            "native-m": {"provider": "openai", "upstream": "gpt-real"},
            "told-m": {"provider": "told"},
        },
    )
    gateway = RunningGateway(config)
    yield gateway
    gateway.stop()


@pytest.fixture
def script(backend: Scripted) -> Iterator[Scripted]:
    backend.turns, backend.served = [Text("Hello from the backend.")], 0
    backend.server.requests.clear()
    yield backend


def oai(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=GATEWAY_KEY, max_retries=0)


def chat_path(model: str) -> str:
    return {"claude-m": "/v1/messages", "chat-m": "/v1/chat/completions", "ollama-m": "/api/chat"}[model]


@pytest.mark.parametrize("model", BACKENDS)
def test_whole_and_streamed_text(gw: RunningGateway, script: Scripted, model: str) -> None:
    client = oai(gw)
    r = client.responses.create(model=model, input="say hello", instructions="Be brief.", max_output_tokens=50)
    assert r.output_text == "Hello from the backend." and r.status == "completed" and r.model == model
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (11, 5)
    with client.responses.stream(model=model, input="say hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the backend."
    sent = script.bodies(chat_path(model))[0]
    assert "Be brief." in json.dumps(sent) and "say hello" in json.dumps(sent)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", BACKENDS)
def test_a_tool_turn_and_its_result(gw: RunningGateway, script: Scripted, model: str, stream: bool) -> None:
    script.turns = [Call("get_weather", {"city": "Paris"}), Text("It is sunny in Paris.")]
    client = oai(gw)
    tools: Any = [WEATHER]
    if stream:
        with client.responses.stream(model=model, input="weather in Paris?", tools=tools) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(model=model, input="weather in Paris?", tools=tools)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Paris"}
    follow: Any = [{"role": "user", "content": "weather in Paris?"}, calls[0],
                   {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 C, sunny"}]  # fmt: skip
    second = client.responses.create(model=model, input=follow, tools=tools)
    assert second.output_text == "It is sunny in Paris."
    sent = json.dumps(script.bodies(chat_path(model))[1])
    assert "18 C, sunny" in sent and "get_weather" in sent  # the call and its result reached the backend


@pytest.mark.parametrize("model", BACKENDS)
def test_text_format_is_structured_output(gw: RunningGateway, script: Scripted, model: str) -> None:
    script.turns = [Text('{"name": "Ada", "age": 36}')]
    r = oai(gw).responses.parse(model=model, input="a person", text_format=Person)
    assert r.output_parsed == Person(name="Ada", age=36)
    sent = json.dumps(script.bodies(chat_path(model))[0])
    assert '"age"' in sent and '"integer"' in sent  # the schema went to the backend in its own terms


def test_a_chat_only_host_is_asked_for_the_route_once(gw: RunningGateway, script: Scripted) -> None:
    client = oai(gw)
    for _ in range(3):
        assert client.responses.create(model="chat-fresh", input="hi").output_text == "Hello from the backend."
    paths = [p for p, _, _ in script.server.requests]
    assert paths.count("/v1/responses") == 1 and paths.count("/v1/chat/completions") == 3


def test_a_provider_told_to_translate_is_never_asked_for_the_route(gw: RunningGateway, script: Scripted) -> None:
    assert oai(gw).responses.create(model="told-m", input="hi").output_text == "Hello from the backend."
    assert [p for p, _, _ in script.server.requests] == ["/v1/chat/completions"]


def test_hosted_tools_are_left_out_and_named(gw: RunningGateway, script: Scripted) -> None:
    body = {"model": "chat-m", "input": "hi", "tools": [WEATHER, {"type": "web_search", "external_web_access": False}]}
    r = httpx.post(f"{gw.url}/v1/responses", json=body, headers={"authorization": f"Bearer {GATEWAY_KEY}"}, timeout=30)
    assert r.status_code == 200 and r.headers["x-corral-tools-ignored"] == "web_search"
    tools = script.bodies("/v1/chat/completions")[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather"]


def test_stateful_requests_are_refused_clearly_when_translated(gw: RunningGateway, script: Scripted) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai(gw).responses.create(model="claude-m", input="and then?", previous_response_id="resp_1")
    assert "previous_response_id" in str(err.value) and "whole conversation" in str(err.value)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert not script.server.requests  # refused before any backend call


def test_stored_responses_are_not_kept(gw: RunningGateway) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        oai(gw).responses.retrieve("resp_123")
    assert "keeps no responses" in str(err.value)


def test_pass_through_to_a_responses_backend(gw: RunningGateway, native: Canned) -> None:
    client = oai(gw)
    r = client.responses.create(model="native-m", input="hi", previous_response_id="resp_0")
    assert r.output_text == "native hi" and r.model == "native-m"  # named as the client asked
    sent = native.last("/v1/responses")
    assert sent["model"] == "gpt-real" and sent["previous_response_id"] == "resp_0"  # as sent, model renamed
    with client.responses.stream(model="native-m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "native hi" and final.model == "native-m"
    # The relayed stream's usage (inside response.completed) is counted like any other.
    metrics = httpx.get(f"{gw.url}/metrics", headers={"authorization": f"Bearer {GATEWAY_KEY}"}).text
    counted = [line for line in metrics.splitlines() if line.startswith("corral_tokens_total") and "native-m" in line]
    assert any('kind="completion"' in line and line.endswith(" 4.0") for line in counted), counted


def test_openai_agents_sdk_runs_a_tool_agent(gw: RunningGateway, script: Scripted) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    script.turns = [Call("get_weather", {"city": "Paris"}), Text("It is sunny in Paris.")]
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        asked.append(city)
        return f"18 C and sunny in {city}"

    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=GATEWAY_KEY, max_retries=0)
    model = OpenAIResponsesModel(model="chat-m", openai_client=client)
    agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=model)
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert result.final_output == "It is sunny in Paris." and asked == ["Paris"]
    second = json.dumps(script.bodies("/v1/chat/completions")[1])
    assert "18 C and sunny in Paris" in second and "Use the tool." in second


def test_langchain_responses_api_tool_call(gw: RunningGateway, script: Scripted) -> None:
    from langchain_openai import ChatOpenAI

    script.turns = [Call("get_weather", {"city": "Paris"})]
    llm = ChatOpenAI(model="claude-m", base_url=f"{gw.url}/v1", api_key=GATEWAY_KEY, use_responses_api=True,
                     max_retries=0)  # type: ignore[call-arg]  # fmt: skip
    msg = llm.bind_tools([WEATHER]).invoke("weather in Paris?")
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("get_weather", {"city": "Paris"})]
