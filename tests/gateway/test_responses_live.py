"""/v1/responses with the real clients (the openai SDK, LangChain) against `corral serve` over the real
llama.cpp server: translated onto its chat route (see gateway/responses/routes.py for why llama-server's
own /v1/responses is not used)."""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from .conftest import GATEWAY_KEY, RunningGateway

pytestmark = pytest.mark.live

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class Verdict(BaseModel):
    answer: Literal["yes", "no"]


@pytest.fixture
def oai(live_gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0)


def test_whole_response(oai: openai.OpenAI) -> None:
    r = oai.responses.create(
        model="gpt-4o-mini", input="Say hi.", instructions="Answer briefly.", max_output_tokens=8, temperature=0
    )
    assert r.object == "response" and r.model == "gpt-4o-mini" and r.output_text
    assert r.usage is not None and r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 8
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if r.status == "incomplete":  # the model ran into max_output_tokens
        assert r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens"
        assert r.usage.output_tokens == 8
    else:
        assert r.status == "completed" and r.incomplete_details is None


def test_streamed_text_equals_the_final_output_text(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="local-model", input="Count: one two", max_output_tokens=12,
                                       temperature=0, stream=True))  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response  # type: ignore[union-attr]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0


def test_stream_helper_with_text_format(oai: openai.OpenAI) -> None:
    """The grammar from the schema ends the answer, so the stream completes and the SDK parses it."""
    with oai.responses.stream(model="local-model", input="Is the sky blue? Answer in JSON.", text_format=Verdict,
                              max_output_tokens=40, temperature=0) as stream:  # fmt: skip
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and "".join(deltas) == final.output_text
    assert final.output_parsed is not None and final.output_parsed.answer in ("yes", "no")


def test_tools_reach_the_model(oai: openai.OpenAI) -> None:
    """The small model cannot be made to call a tool (the scripted backends test calls); here the tools must
    reach llama.cpp's template, whole and streamed, and any call it makes must come back well formed."""
    tools: Any = [WEATHER]
    bare = oai.responses.create(model="tools-model", input="Weather in Paris?", max_output_tokens=4, temperature=0)
    r = oai.responses.create(model="tools-model", input="Weather in Paris?", tools=tools, max_output_tokens=4,
                             temperature=0)  # fmt: skip
    assert r.usage is not None and bare.usage is not None
    assert r.usage.input_tokens > bare.usage.input_tokens + 20  # the tool's schema is in the prompt
    events = list(oai.responses.create(model="tools-model", input="Weather in Paris?", tools=tools, stream=True,
                                       max_output_tokens=4, temperature=0))  # fmt: skip
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.input_tokens == r.usage.input_tokens
    for out in (*r.output, *final.output):
        assert out.type in ("message", "function_call")
        if out.type == "function_call":
            assert out.name == "get_weather" and isinstance(json.loads(out.arguments), dict)


def test_tool_result_round_trip(oai: openai.OpenAI) -> None:
    history: Any = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 C and sunny"},
    ]
    r = oai.responses.create(model="tools-model", input=history, tools=[WEATHER], tool_choice="none",  # type: ignore[list-item]
                             max_output_tokens=12, temperature=0)  # fmt: skip
    assert r.output_text and all(o.type == "message" for o in r.output)
    assert r.usage is not None and r.usage.input_tokens > 60  # the tool schema and history reached the model


def test_errors_keep_their_meaning(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        oai.responses.create(model="local-model", input=5)  # type: ignore[arg-type]
    assert bad.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as nf:
        oai.responses.create(model="no-such-model", input="x")
    assert "no-such-model" in str(nf.value)
    with pytest.raises(openai.BadRequestError) as ctx:  # llama-server's own refusal: the prompt is too long
        oai.responses.create(model="local-model", input="word " * 1500)
    assert "context" in str(ctx.value)


def test_langchain_responses_api(live_gateway: RunningGateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="local-model", base_url=f"{live_gateway.url}/v1", api_key=GATEWAY_KEY,  # type: ignore[arg-type]
                     use_responses_api=True, max_tokens=8, temperature=0, max_retries=0)  # fmt: skip
    msg = llm.invoke("Say hi.")
    assert msg.text and msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] > 0
    chunks = list(llm.stream("Say hi."))
    assert "".join(c.text for c in chunks)
