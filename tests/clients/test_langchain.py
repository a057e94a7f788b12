"""LangChain's ChatOpenAI and ChatAnthropic, unchanged, against `corral serve` on the real llama.cpp
server: invoke, stream (with usage), structured output (llama.cpp's grammar keeps even the small model's
JSON valid). Tool calls on a scripted backend: the small model cannot call tools."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from ..gateway.conftest import GATEWAY_KEY, RunningGateway, gateway_config
from ..gateway.scripted import Call, Scripted, Text

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def openai_chat(gw: RunningGateway, model: str = "local-model", **kw: object) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=f"{gw.url}/v1", api_key=GATEWAY_KEY, max_retries=0,  # type: ignore[arg-type]
                      temperature=0, **kw)  # fmt: skip


def anthropic_chat(gw: RunningGateway, **kw: object) -> ChatAnthropic:
    return ChatAnthropic(model="claude-sonnet-4-5", base_url=gw.url, api_key=GATEWAY_KEY, max_retries=0,  # type: ignore[call-arg,arg-type]
                         temperature=0, **kw)  # fmt: skip


# -- ChatOpenAI on the real llama.cpp server -------------------------------------------------------------------
@pytest.mark.live
def test_chat_openai_invoke(live_gateway: RunningGateway) -> None:
    answer = openai_chat(live_gateway, max_tokens=8).invoke("Say hi.")
    assert isinstance(answer.content, str) and answer.content.strip()
    assert answer.response_metadata["model_name"] == "local-model"  # the name asked for, not a GGUF path
    assert answer.usage_metadata and answer.usage_metadata["input_tokens"] > 0
    assert answer.usage_metadata["output_tokens"] > 0


@pytest.mark.live
def test_chat_openai_stream_with_usage(live_gateway: RunningGateway) -> None:
    chunks = list(openai_chat(live_gateway, max_tokens=8, stream_usage=True).stream("Count: one, two,"))
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = chunks[0]
    for c in chunks[1:]:
        whole += c
    assert isinstance(whole.content, str) and whole.content.strip()
    assert (
        whole.usage_metadata and whole.usage_metadata["input_tokens"] > 0 and whole.usage_metadata["output_tokens"] > 0
    )


class Weather(BaseModel):
    sky: Literal["sunny", "cloudy", "rainy"]
    degrees: int = Field(ge=-50, le=50)  # a bounded number: the small model would otherwise write digits on


@pytest.mark.live
def test_chat_openai_with_structured_output(live_gateway: RunningGateway) -> None:
    # json_schema, LangChain's default method: llama.cpp turns the schema into a grammar.
    structured = openai_chat(live_gateway, max_tokens=60).with_structured_output(Weather, include_raw=True)
    out = structured.invoke("Describe the weather in Paris as JSON.")
    assert out["parsing_error"] is None, out  # type: ignore[index]
    assert isinstance(out["parsed"], Weather)  # type: ignore[index]
    assert out["raw"].response_metadata["finish_reason"] == "stop"  # type: ignore[index]


# -- ChatOpenAI's bind_tools on a scripted backend ---------------------------------------------------------------
@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}, 21 degrees."


@pytest.fixture
def scripted_gateway() -> Iterator[tuple[RunningGateway, Scripted]]:
    up = Scripted([Call("get_weather", {"city": "Paris"}), Text("It is sunny in Paris.")])
    provider = {"type": "openai", "base_url": f"{up.url}/v1", "api_key": "k", "max_retries": 0}
    gw = RunningGateway(gateway_config({"up": provider}, gateway={"api_keys": [GATEWAY_KEY]},
                                       models={"agent": {"provider": "up"}}))  # fmt: skip
    yield gw, up
    gw.stop()
    up.close()


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_chat_openai_bind_tools_round_trip(scripted_gateway: tuple[RunningGateway, Scripted], stream: bool) -> None:
    gw, up = scripted_gateway
    llm = openai_chat(gw, model="agent").bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    if stream:
        first = None
        for c in llm.stream([question]):
            first = c if first is None else first + c
    else:
        first = llm.invoke([question])
    assert first is not None
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [("get_weather", {"city": "Paris"})]
    call = first.tool_calls[0]
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    final = llm.invoke([question, first, result])
    assert final.content == "It is sunny in Paris."
    offered, answered = up.bodies("/v1/chat/completions")[:2]
    assert offered["tools"][0]["function"]["name"] == "get_weather"
    assert "Sunny in Paris, 21 degrees." in json.dumps(answered["messages"])  # the tool's result went back


# -- ChatAnthropic on the real llama.cpp server ------------------------------------------------------------------
@pytest.mark.live
def test_chat_anthropic_invoke(live_gateway: RunningGateway) -> None:
    answer = anthropic_chat(live_gateway, max_tokens=8).invoke("Say hi.")
    assert answer.text.strip()
    assert answer.response_metadata["model_name"] == "claude-sonnet-4-5"
    assert answer.usage_metadata and answer.usage_metadata["input_tokens"] > 0


@pytest.mark.live
def test_chat_anthropic_stream_reports_input_tokens(live_gateway: RunningGateway) -> None:
    chunks = list(anthropic_chat(live_gateway, max_tokens=8).stream("Count: one, two,"))
    whole = chunks[0]
    for c in chunks[1:]:
        whole += c
    assert whole.text.strip()
    # message_start carries the prompt's size (llama.cpp's per-token timings): not 0.
    assert whole.usage_metadata and whole.usage_metadata["input_tokens"] > 0
    assert whole.usage_metadata["output_tokens"] > 0
