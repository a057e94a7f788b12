"""The provider contract: the same application code runs on every provider, switched by configuration only.

``run_app`` / ``run_app_async`` are the application: a chat with a system prompt, a stream, a tool
round trip (question, the assistant's earlier call in OpenAI's dict format, the tool's result) and a
structured (pydantic) answer, chat and streamed. The tests change nothing but ``default_provider``:
llamacpp is the real llama.cpp server (tool-aware jinja template); openai, anthropic, ollama and
llama-swap are the canned APIs of conftest.py, which check every request they receive.

The small gemma model never calls tools itself, and llama-server's tool-call parser rejects its free
text under tool_choice "auto" (500); tool_choice="none" still sends the definitions, the earlier call
and its result (see tests/live/test_routing_live.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from corral import AsyncClient, ChatResponse, Client, ContentDelta, Done, ReasoningDelta, ToolCallDelta, ToolCallEnd

from .conftest import CANNED, PERSON, ROUND_TRIP, WEATHER_TOOL, FakeAPIs
from .conftest import PROVIDERS as RECORDED

#: llamacpp is the real server here; the others are canned
PROVIDERS = [pytest.param("llamacpp", marks=pytest.mark.live), *CANNED]


class Person(BaseModel):
    name: str
    age: int


GREETING = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello in five words."},
]
DESCRIBE = [{"role": "user", "content": "Describe a person called Ada who is 36 years old, as JSON."}]
TEXT = {"max_tokens": 16, "temperature": 0}
TOOLS = {"tools": [WEATHER_TOOL], "tool_choice": "none", "max_tokens": 12, "temperature": 0}
JSON = {"response_format": Person, "max_tokens": 300, "temperature": 0}


# -- the application ----------------------------------------------------------------------------------------


def run_app(client: Client) -> dict[str, Any]:
    out: dict[str, Any] = {"chat": client.chat(GREETING, **TEXT)}
    with client.stream(GREETING, **TEXT) as s:
        out["events"] = list(s)
        out["final"] = s.final()
    out["answer"] = client.chat(ROUND_TRIP, **TOOLS)
    out["person"] = client.chat(DESCRIBE, **JSON)
    with client.stream(DESCRIBE, **JSON) as s:
        out["person_events"] = list(s)
        out["person_streamed"] = s.final()
    return out


async def run_app_async(client: AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {"chat": await client.chat(GREETING, **TEXT)}
    async with client.stream(GREETING, **TEXT) as s:
        out["events"] = [e async for e in s]
        out["final"] = await s.final()
    out["answer"] = await client.chat(ROUND_TRIP, **TOOLS)
    out["person"] = await client.chat(DESCRIBE, **JSON)
    async with client.stream(DESCRIBE, **JSON) as s:
        out["person_events"] = [e async for e in s]
        out["person_streamed"] = await s.final()
    return out


# -- what every provider must give it ---------------------------------------------------------------------------


def check_text(r: ChatResponse, provider: str) -> None:
    assert isinstance(r.content, str) and r.content.strip(), r
    assert r.finish_reason in ("stop", "length"), r.finish_reason
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
    assert r.tool_calls == () and r.reasoning is None, r
    assert r.provider == provider


def check_stream(events: list[Any], final: ChatResponse) -> None:
    assert events and isinstance(events[-1], Done), events[-3:]
    assert [e for e in events if isinstance(e, Done)] == [Done(final)]
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == final.content
    # no reasoning (llama-swap's loading messages included) and no tool events
    assert not [e for e in events if isinstance(e, ReasoningDelta | ToolCallDelta | ToolCallEnd)]


def check_results(results: dict[str, Any], provider: str) -> None:
    check_text(results["chat"], provider)
    check_text(results["final"], provider)
    check_stream(results["events"], results["final"])
    check_text(results["answer"], provider)
    for key in ("person", "person_streamed"):
        r = results[key]
        assert isinstance(r.parsed, Person), r
        assert r.parsed == Person.model_validate_json(r.content)
        assert r.finish_reason == "stop" and r.provider == provider
    check_stream(results["person_events"], results["person_streamed"])


# -- the contract -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_same_application_code_on_every_provider(name: str, contract_config: dict[str, Any], fake_apis: FakeAPIs):
    config = contract_config
    config["default_provider"] = name
    with Client(config=config, max_retries=0) as client:
        results = run_app(client)
    check_results(results, name)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_same_application_code_on_every_provider_async(
    name: str, contract_config: dict[str, Any], fake_apis: FakeAPIs
):
    config = contract_config
    config["default_provider"] = name
    async with AsyncClient(config=config, max_retries=0) as client:
        results = await run_app_async(client)
    check_results(results, name)


@pytest.mark.parametrize("name", RECORDED)  # llamacpp: the recorded llama-server on its fake host
def test_canned_apis_saw_each_request_in_their_own_dialect(
    name: str, contract_config: dict[str, Any], fake_apis: FakeAPIs
):
    """What run_app sent, as each API read it: the same asks, whatever the wire format."""
    contract_config["default_provider"] = name
    with Client(config=contract_config, max_retries=0) as client:
        run_app(client)
    seen = [
        (a.stream, a.system, a.user_texts, a.tool_choice, a.schema is not None, a.history_calls, a.results)
        for a in fake_apis.asks_for(name)
    ]
    greeting = (GREETING[0]["content"], [GREETING[1]["content"]])
    paris = [("call_1", "get_weather", {"city": "Paris"})]
    # Ollama has no tool_choice: "none" is kept by not offering the tools at all.
    choice = None if name == "ollama" else "none"
    assert seen == [
        (False, *greeting, None, False, [], []),
        (True, *greeting, None, False, [], []),
        (False, None, [ROUND_TRIP[0]["content"]], choice, False, paris, [("call_1", "18 C and sunny")]),
        (False, None, [DESCRIBE[0]["content"]], None, True, [], []),
        (True, None, [DESCRIBE[0]["content"]], None, True, [], []),
    ]
    assert [(a.max_tokens, a.temperature) for a in fake_apis.asks_for(name)] == [(16, 0), (16, 0), (12, 0)] + [
        (300, 0)
    ] * 2
    if name != "ollama":
        assert fake_apis.asks_for(name)[2].tools == [
            ("get_weather", "Current weather in a city", WEATHER_TOOL["function"]["parameters"])
        ]


#: valid JSON, split anywhere, without the spaces Python's json.dumps puts after ":" and ","
COMPACT_PERSON = ('{"name":"Ada",', '"age":36}')


@pytest.mark.parametrize(
    "name",
    RECORDED,
)
def test_streamed_structured_output_text_is_the_final_content(
    name: str, contract_config: dict[str, Any], fake_apis: FakeAPIs
) -> None:
    fake_apis.person_pieces = COMPACT_PERSON
    contract_config["default_provider"] = name
    with Client(config=contract_config, max_retries=0) as client, client.stream(DESCRIBE, **JSON) as s:
        events = list(s)
    final = s.final()
    assert final.parsed == Person(**PERSON)
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == final.content
