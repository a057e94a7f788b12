"""Issue 10's items on the real llama.cpp server, through the official SDKs: logprobs, the stop
sequence that ended an answer, JSON cut at max_tokens, streamed and several-choice completions,
count_tokens with tools, model lookups, and model names as the client asked."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from .conftest import RunningGateway

pytestmark = [pytest.mark.live, pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")]


HI = [{"role": "user", "content": "Write a sentence about the sea."}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_logprobs_are_relayed(oai: openai.OpenAI, stream: bool) -> None:
    if stream:
        chunks = list(oai.chat.completions.create(model="local-model", messages=HI, max_tokens=4, temperature=0,
                                                  logprobs=True, top_logprobs=2, stream=True))  # type: ignore[arg-type]  # fmt: skip
        tokens = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    else:
        r = oai.chat.completions.create(model="local-model", messages=HI, max_tokens=4, temperature=0,  # type: ignore[arg-type]
                                        logprobs=True, top_logprobs=2)  # fmt: skip
        assert r.choices[0].logprobs is not None
        tokens = r.choices[0].logprobs.content or []
    assert len(tokens) >= 1
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_reports_the_stop_sequence_that_matched(claude: anthropic.Anthropic, stream: bool) -> None:
    # "e" is in nearly every English word: the answer stops at it almost at once.
    args: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 40, "extra_body": {"temperature": 0},
                            "stop_sequences": ["zzzq", "e"], "messages": HI}  # fmt: skip
    if stream:
        with claude.messages.stream(**args) as s:
            message = s.get_final_message()
    else:
        message = claude.messages.create(**args)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "e")


def test_json_cut_at_max_tokens_is_200_with_finish_reason_length(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}}
    r = oai.chat.completions.create(model="local-model", messages=HI, max_tokens=4, response_format=fmt)
    assert r.choices[0].finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(r.choices[0].message.content or "")  # cut: relayed as written, not a 502


def test_streamed_and_several_choice_completions(oai: openai.OpenAI) -> None:
    parts = list(oai.completions.create(model="local-model", prompt="The sea is", max_tokens=5, stream=True))
    assert "".join(p.choices[0].text for p in parts if p.choices) and {p.model for p in parts} == {"local-model"}
    assert any(p.choices and p.choices[0].finish_reason for p in parts)
    two = oai.completions.create(model="local-model", prompt="The sea is", max_tokens=3, n=2, temperature=1.0)
    assert [c.index for c in two.choices] == [0, 1] and two.model == "local-model"
    chat = oai.chat.completions.create(model="local-model", messages=HI, max_tokens=3, n=2, temperature=1.0)
    assert len(chat.choices) == 2


def test_a_whole_completion_comes_back_assembled(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="local-model", prompt="The sea is", max_tokens=5, temperature=0)
    assert r.choices[0].text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.completion_tokens >= 1 and r.model == "local-model"


def test_count_tokens_counts_the_tools_and_the_system_prompt(
    claude: anthropic.Anthropic, templated_server: Any, live_gateway: RunningGateway
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tool = {"name": "get_weather", "description": "Current weather in a city.", "input_schema": schema}
    messages: Any = [{"role": "user", "content": "hi"}]
    plain = claude.messages.count_tokens(model="tools-model", messages=messages).input_tokens
    with_system = claude.messages.count_tokens(model="tools-model", messages=messages, system="You are terse.")
    with_tools = claude.messages.count_tokens(model="tools-model", messages=messages, tools=[tool])  # type: ignore[list-item]
    assert with_system.input_tokens > plain and with_tools.input_tokens > plain + 20
    # What llama.cpp itself counts for the same conversation and tools.
    openai_tool = {"type": "function", "function": {"name": tool["name"], "description": tool["description"],
                                                     "parameters": tool["input_schema"]}}  # fmt: skip
    prompt = httpx.post(f"{templated_server.url}/apply-template",
                        json={"messages": messages, "tools": [openai_tool]}).json()["prompt"]  # fmt: skip
    tokens = httpx.post(f"{templated_server.url}/tokenize", json={"content": prompt, "add_special": True}).json()
    assert abs(with_tools.input_tokens - len(tokens["tokens"])) <= max(1, len(tokens["tokens"]) // 50)


def test_streamed_pass_through_names_the_model_as_asked(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=3, stream=True))
    assert {c.model for c in chunks} == {"gpt-4o-mini"}  # not llama-server's GGUF path


def test_model_lookups_in_both_shapes(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    assert oai.models.retrieve("local-model").id == "local-model"
    assert claude.models.retrieve("claude-sonnet-4-5").display_name == "claude-sonnet-4-5"
    assert "local-model" in {m.id for m in claude.models.list()}
