"""Tool calls translate both ways, identically on every provider.

The canned model calls ``get_weather(city="Paris")``: as OpenAI ``tool_calls`` (whole, or streamed as
``function.arguments`` fragments), as an Anthropic ``tool_use`` block (whole, or ``input_json_delta``
fragments), as an Ollama call with object arguments (sent whole, also when streamed), through
llama-swap, and as a recorded llama-server answer. Every provider must give the application the same
ToolCall, the same stream events, and, when the application runs the tool and sends the call and its
result back, the provider's own request shapes (checked by the canned APIs in conftest.py).
"""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import pytest

from corral import (
    AsyncClient,
    ChatResponse,
    Client,
    ContentDelta,
    Done,
    Message,
    ReasoningDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
)

from .conftest import ANSWER, ISSUED_IDS, PARIS, PROVIDERS, TOOL_RESULT, WEATHER_TOOL, FakeAPIs

QUESTION = "What is the weather in Paris?"


def get_weather(call: ToolCall) -> str:
    assert call.name == "get_weather"
    return TOOL_RESULT if call.parsed_arguments() == PARIS else "no idea"


def ask(client: Client, messages: list[Any], stream: bool) -> tuple[ChatResponse, list[Any]]:
    if not stream:
        return client.chat(messages, tools=[WEATHER_TOOL]), []
    with client.stream(messages, tools=[WEATHER_TOOL]) as s:
        events = list(s)
    return s.final(), events


async def ask_async(client: AsyncClient, messages: list[Any], stream: bool) -> tuple[ChatResponse, list[Any]]:
    if not stream:
        return await client.chat(messages, tools=[WEATHER_TOOL]), []
    async with client.stream(messages, tools=[WEATHER_TOOL]) as s:
        events = [e async for e in s]
    return await s.final(), events


def follow_up(messages: list[Any], reply: ChatResponse) -> list[Any]:
    """The agent loop: the model's calls go back as an assistant message, each result as a tool message."""
    return [
        *messages,
        Message.assistant(reply.content or None, reply.tool_calls),
        *(Message.tool(call.id, get_weather(call)) for call in reply.tool_calls),
    ]


def summary(r: ChatResponse) -> dict[str, Any]:
    """A response with tool-call ids left out and argument JSON decoded (its spacing may differ)."""
    return {
        "content": r.content,
        "finish_reason": r.finish_reason,
        "calls": [(c.name, json.loads(c.arguments)) for c in r.tool_calls],
        "reasoning": r.reasoning,
        "parsed": r.parsed,
    }


CALLED = {
    "content": "",
    "finish_reason": "tool_calls",
    "calls": [("get_weather", PARIS)],
    "reasoning": None,
    "parsed": None,
}
ANSWERED = {"content": "".join(ANSWER), "finish_reason": "stop", "calls": [], "reasoning": None, "parsed": None}
TOOL_DEFINITION = ("get_weather", "Current weather in a city", WEATHER_TOOL["function"]["parameters"])


def check_call(name: str, first: ChatResponse, events: list[Any], stream: bool) -> ToolCall:
    assert summary(first) == CALLED
    (call,) = first.tool_calls
    assert call == ToolCall(call.id, "get_weather", call.arguments) and call.id
    if ISSUED_IDS[name] is not None:  # the API's own id is kept (Ollama's answers carry none)
        assert call.id == ISSUED_IDS[name]
    if not stream:
        return call
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert {d.index for d in deltas} == {0}
    assert [d.name for d in deltas if d.name] == ["get_weather"]
    # the API's id arrives with the call's first delta; an id corral makes up (Ollama) only at its end
    assert [d.id for d in deltas if d.id] == ([] if ISSUED_IDS[name] is None else [call.id])
    fragments = [d.arguments for d in deltas if d.arguments]
    # OpenAI, llama-swap and llama-server stream function.arguments in pieces, Anthropic input_json_delta
    # pieces; Ollama sends every call whole.
    assert len(fragments) == (1 if name == "ollama" else 3), fragments
    assert json.loads("".join(fragments)) == PARIS
    assert ends == [ToolCallEnd(0, call)]
    assert events.index(ends[0]) > max(events.index(d) for d in deltas)
    assert events[-1] == Done(first) and events.count(Done(first)) == 1
    assert not [e for e in events if isinstance(e, ContentDelta | ReasoningDelta)]
    return call


def check_requests(fake: FakeAPIs, name: str, call: ToolCall) -> None:
    first, second = fake.asks_for(name)
    # OpenAI-format definitions arrived in the API's shape (Anthropic input_schema, Ollama/OpenAI function)
    assert first.tools == second.tools == [TOOL_DEFINITION]
    assert (first.history_calls, first.results) == ([], [])
    # the call the app got back went out again as the API's own assistant call, its result paired to it
    assert second.history_calls == [(call.id, "get_weather", PARIS)]
    assert second.results == [(call.id, TOOL_RESULT)]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("name", PROVIDERS)
def test_tool_call_round_trip(name: str, stream: bool, contract_config: dict[str, Any], fake_apis: FakeAPIs):
    contract_config["default_provider"] = name
    with Client(config=contract_config, max_retries=0) as client:
        messages: list[Any] = [Message.user(QUESTION)]
        first, events = ask(client, messages, stream)
        second, _ = ask(client, follow_up(messages, first), stream)
    call = check_call(name, first, events, stream)
    assert summary(second) == ANSWERED
    check_requests(fake_apis, name, call)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("name", PROVIDERS)
async def test_tool_call_round_trip_async(
    name: str, stream: bool, contract_config: dict[str, Any], fake_apis: FakeAPIs
):
    contract_config["default_provider"] = name
    async with AsyncClient(config=contract_config, max_retries=0) as client:
        messages: list[Any] = [Message.user(QUESTION)]
        first, events = await ask_async(client, messages, stream)
        second, _ = await ask_async(client, follow_up(messages, first), stream)
    call = check_call(name, first, events, stream)
    assert summary(second) == ANSWERED
    check_requests(fake_apis, name, call)


@pytest.mark.parametrize(("origin", "target"), [pytest.param(*p, id="->".join(p)) for p in permutations(PROVIDERS, 2)])
def test_a_call_from_one_provider_continues_on_another(
    origin: str, target: str, contract_config: dict[str, Any], fake_apis: FakeAPIs
):
    """An Anthropic tool_use answered on OpenAI, an OpenAI call answered on Anthropic, an id-less Ollama
    call answered on Anthropic (whose ids must match ^[a-zA-Z0-9_-]+$), … every ordered pair."""
    messages: list[Any] = [Message.user(QUESTION)]
    with Client(origin, config=contract_config, max_retries=0) as first_client:
        first, _ = ask(first_client, messages, stream=True)
    with Client(target, config=contract_config, max_retries=0) as second_client:
        second, _ = ask(second_client, follow_up(messages, first), stream=False)
    assert summary(first) == CALLED and summary(second) == ANSWERED
    (call,) = first.tool_calls
    (ask_target,) = [a for a in fake_apis.asks_for(target) if a.results]
    assert ask_target.history_calls == [(call.id, "get_weather", PARIS)]
    assert ask_target.results == [(call.id, TOOL_RESULT)]


def test_made_up_tool_call_ids_are_unique_within_a_conversation(
    contract_config: dict[str, Any], fake_apis: FakeAPIs
) -> None:
    """Two turns of the agent loop on Ollama, then the conversation continues on Anthropic."""
    messages: list[Any] = [Message.user(QUESTION)]
    with Client("ollama", config=contract_config, max_retries=0) as ollama:
        first, _ = ask(ollama, messages, stream=False)
        messages = [*follow_up(messages, first), Message.user("And tomorrow?")]
        second, _ = ask(ollama, messages, stream=False)
        messages = follow_up(messages, second)
    ids = [c.id for r in (first, second) for c in r.tool_calls]
    assert len(ids) == 2 and len(set(ids)) == 2, f"tool-call ids repeat within one conversation: {ids}"
    with Client("anthropic", config=contract_config, max_retries=0) as claude:
        assert summary(ask(claude, messages, stream=False)[0]) == ANSWERED
