"""The Responses API side of the gateway, checked with the official ``openai`` SDK on the client end: what
the SDK (and Codex, from its captured requests) sends must translate, and what the gateway writes must be
what the SDK's ``ResponseStream`` and its models accept."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from pydantic import BaseModel

from corral.events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from corral.gateway.responses.output import ResponseMeta, ResponsesEventWriter, response_object
from corral.gateway.responses.request import ToolName, Untranslatable, responses_request
from corral.gateway.responses.routes import RESPONSES
from corral.gateway.wire_errors import WireError
from corral.types import ChatResponse, ImagePart, Message, TextPart, ToolCall, Usage

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
USAGE = Usage(20, 7, 4)


class Gateway:
    """A mock transport that records what the SDK sent and answers with what a test gives."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx2.Response]) -> None:
        self.sent: list[dict[str, Any]] = []
        self._answer = answer

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.sent.append(body)
        return self._answer(body)

    def client(self) -> openai.OpenAI:
        http = httpx2.Client(transport=httpx2.MockTransport(self.handler))
        return openai.OpenAI(api_key="x", base_url="http://gw/v1", max_retries=0, http_client=http)


def sse(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


def whole(resp: ChatResponse, **echo: Any) -> Callable[[dict[str, Any]], httpx2.Response]:
    def answer(body: dict[str, Any]) -> httpx2.Response:
        rr = responses_request(body)
        return httpx2.Response(200, json=response_object(resp, ResponseMeta("m", echo, rr.tools, created_at=1)))

    return answer


def streamed(events: list[StreamEvent], tools: dict[str, ToolName] | None = None) -> bytes:
    w = ResponsesEventWriter(ResponseMeta("m", {}, tools or {}, created_at=1))
    return w.start() + b"".join(w.event(e) for e in events) + w.end()


def frames(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            event, data = block.split("\n", 1)
            payload = json.loads(data.removeprefix("data: "))
            assert event == f"event: {payload['type']}"
            out.append(payload)
    return out


# -- request ---------------------------------------------------------------------------------------------------
def test_string_input_and_instructions() -> None:
    rr = responses_request({"model": "m", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 9})
    assert rr.req.messages == (Message("system", "Be brief."), Message("user", "hi"))
    assert rr.req.max_tokens == 9 and rr.req.model == "m" and not rr.stream


def test_codex_history_becomes_chat_turns() -> None:
    """Codex's shape: developer messages first, two user messages, then a tool turn replayed with
    reasoning, a namespaced call and a custom (freeform) call."""
    body = {
        "model": "local",
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"summary": "auto"},
        "input": [
            {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "A"}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "B"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "short"}],
             "content": [{"type": "reasoning_text", "text": "I should run ls"}], "encrypted_content": None},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "exec_command",
             "arguments": '{"cmd":"ls"}', "status": "completed"},
            {"type": "function_call", "call_id": "c2", "name": "spawn_agent", "namespace": "multi_agent_v1",
             "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "ok"}]},
            {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "c3", "output": "Done"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Listed."}]},
        ],
    }  # fmt: skip
    rr = responses_request(body)
    m = rr.req.messages
    assert m[0] == Message("system", "A\n\nB")
    assert m[1] == Message("user", "<env/>\n\nlist files")  # consecutive user turns joined
    assert m[2].role == "assistant" and m[2].reasoning == "I should run ls"
    assert m[2].tool_calls == (
        ToolCall("c1", "exec_command", '{"cmd":"ls"}'),
        ToolCall("c2", "multi_agent_v1__spawn_agent", "{}"),
    )
    assert m[3] == Message("tool", "a.txt", tool_call_id="c1") and m[4] == Message("tool", "ok", tool_call_id="c2")
    assert m[5].tool_calls == (ToolCall("c3", "apply_patch", '{"input": "*** Begin Patch"}'),)
    assert m[6] == Message("tool", "Done", tool_call_id="c3")
    assert m[7] == Message("assistant", "Listed.")
    assert rr.stream


def test_tools_namespace_custom_and_hosted() -> None:
    body = {
        "model": "m",
        "input": "x",
        "tools": [
            WEATHER,
            {"type": "namespace", "name": "agents", "description": "d",
             "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
            {"type": "custom", "name": "apply_patch", "description": "Patch files",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": {"type": "custom", "name": "apply_patch"},
    }  # fmt: skip
    rr = responses_request(body)
    names = [t["function"]["name"] for t in rr.req.tools]
    assert names == ["get_weather", "agents__spawn", "apply_patch"]
    patch = rr.req.tools[2]["function"]
    assert patch["parameters"]["required"] == ["input"] and "lark grammar" in patch["description"]
    assert rr.tools["agents__spawn"] == ToolName("function", "spawn", "agents")
    assert rr.req.tool_choice == {"type": "function", "function": {"name": "apply_patch"}}
    assert rr.ignored_tools == ("web_search",)


def test_allowed_tools_narrows_the_offer() -> None:
    other = {**WEATHER, "name": "get_time"}
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}
    rr = responses_request({"input": "x", "tools": [WEATHER, other], "tool_choice": choice})
    assert [t["function"]["name"] for t in rr.req.tools] == ["get_time"] and rr.req.tool_choice == "required"


def test_images_text_format_and_effort() -> None:
    body = {
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
        ]}],
        "text": {"format": {"type": "json_schema", "name": "Thing", "strict": True,
                            "schema": {"type": "object", "properties": {"x": {"type": "string"}}}},
                 "verbosity": "low"},
        "reasoning": {"effort": "xhigh"},
    }  # fmt: skip
    rr = responses_request(body)
    assert rr.req.messages[0].content == (TextPart("What is this?"), ImagePart("data:image/png;base64,AAAA", "low"))
    assert rr.req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "Thing", "strict": True, "schema": body["text"]["format"]["schema"]},  # type: ignore[index]
    }
    assert rr.req.reasoning_effort == "high" and rr.req.parse_output is False


def test_tool_output_images_follow_the_tool_messages() -> None:
    body = {
        "input": [
            {"type": "function_call", "call_id": "c", "name": "view_image", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [
                {"type": "input_text", "text": "here"}, {"type": "input_image", "image_url": "https://x/i.png"}]},
        ]
    }  # fmt: skip
    m = responses_request(body).req.messages
    assert m[1] == Message("tool", "here", tool_call_id="c")
    assert m[2] == Message("user", (ImagePart("https://x/i.png"),))


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": 5}, "input", "string or an array"),
        ({}, "input", "required"),
        ({"input": []}, "input", "at least one"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "robot"),
        ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type", "audio"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id", "call_id"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}, "input[0].arguments",
         "string"),
        ({"input": "x", "temperature": 3}, "temperature", "between 0 and 2"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "positive"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "non-empty"),
        ({"input": "x", "tools": [{"type": "robot"}]}, "tools[0].type", "robot"),
        ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name",
         "name one of"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format.schema", "schema"),
        ({"input": "x", "reasoning": {"effort": "max"}}, "reasoning.effort", "max"),
        ({"input": "x", "metadata": {"a": 1}}, "metadata", "string values"),
        ({"input": "x", "stream": "yes"}, "stream", "boolean"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(WireError) as err:
        responses_request(body)
    assert not isinstance(err.value, Untranslatable)
    assert err.value.status == 400 and err.value.param == param and words in err.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x", "previous_response_id": "resp_1"},
        {"input": "x", "conversation": "conv_1"},
        {"input": [{"type": "item_reference", "id": "msg_1"}]},
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
        {"input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}},
        {"input": [{"type": "web_search_call", "id": "ws_1"}]},
    ],
)
def test_what_only_a_responses_backend_can_take_is_untranslatable(body: dict[str, Any]) -> None:
    with pytest.raises(Untranslatable) as err:
        responses_request(body)
    assert err.value.status == 400


def test_an_untranslatable_call_still_routes_and_is_refused_only_when_translated() -> None:
    body = {"model": "gpt-x", "input": "hi", "previous_response_id": "resp_1", "stream": True}
    call = RESPONSES.parse(body, json.dumps(body).encode())
    assert call.model == "gpt-x" and call.stream
    with pytest.raises(Untranslatable, match="previous_response_id needs stored responses"):
        RESPONSES.translated(call, call.req, None)  # type: ignore[arg-type]


def test_what_the_openai_sdk_sends_translates() -> None:
    gw = Gateway(whole(ChatResponse("Hi!", "stop", USAGE)))
    client = gw.client()
    r = client.responses.create(model="m", input="say hi", instructions="be brief", max_output_tokens=16)
    assert r.output_text == "Hi!" and r.status == "completed"
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (20, 7, 27)
    assert r.usage.input_tokens_details.cached_tokens == 4 and r.usage.output_tokens_details.reasoning_tokens == 0
    rr = responses_request(gw.sent[0])
    assert rr.req.messages == (Message("system", "be brief"), Message("user", "say hi"))


# -- whole response --------------------------------------------------------------------------------------------
def test_whole_response_items_in_order_and_echo() -> None:
    tools = {"agents__spawn": ToolName("function", "spawn", "agents"), "apply_patch": ToolName("custom", "apply_patch")}
    resp = ChatResponse(
        "Running it.",
        "tool_calls",
        USAGE,
        reasoning="think",
        tool_calls=(
            ToolCall("c1", "agents__spawn", '{"task":"x"}'),
            ToolCall("c2", "apply_patch", '{"input":"*** Begin Patch"}'),
            ToolCall("", "unknown_tool", "{}"),
        ),
    )
    echo = {"metadata": {"k": "v"}, "instructions": "be brief", "tools": [WEATHER], "temperature": 0.5}
    out = response_object(resp, ResponseMeta("alias", echo, tools, created_at=5))
    assert [o["type"] for o in out["output"]] == ["reasoning", "message", "function_call", "custom_tool_call",
                                                  "function_call"]  # fmt: skip
    reasoning, message, spawn, patch, unknown = out["output"]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "think"}] and reasoning["summary"] == []
    assert message["content"][0]["text"] == "Running it."
    assert (spawn["name"], spawn["namespace"], spawn["call_id"]) == ("spawn", "agents", "c1")
    assert (patch["name"], patch["input"], patch["call_id"]) == ("apply_patch", "*** Begin Patch", "c2")
    assert unknown["name"] == "unknown_tool" and unknown["call_id"].startswith("call_")
    assert out["status"] == "completed" and out["model"] == "alias" and out["store"] is False
    assert out["metadata"] == {"k": "v"} and out["instructions"] == "be brief" and out["temperature"] == 0.5
    assert out["tools"] == [WEATHER] and out["tool_choice"] == "auto" and out["parallel_tool_calls"] is True
    openai.types.responses.Response.model_validate(out)  # the SDK's own model, strictly


def test_length_is_incomplete_with_the_reason() -> None:
    gw = Gateway(whole(ChatResponse("Once upon a", "length", USAGE)))
    r = gw.client().responses.create(model="m", input="tell a story", max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.output[0].status == "incomplete" and r.output_text == "Once upon a"  # type: ignore[union-attr]


def test_structured_output_parses_in_the_sdk() -> None:
    class Person(BaseModel):
        name: str
        age: int

    gw = Gateway(whole(ChatResponse('{"name":"Ada","age":36}', "stop", USAGE)))
    r = gw.client().responses.parse(model="m", input="a person", text_format=Person)
    assert r.output_parsed == Person(name="Ada", age=36)
    assert responses_request(gw.sent[0]).req.response_format["json_schema"]["name"] == "Person"  # type: ignore[index]


def test_function_tools_round_trip_through_the_sdk() -> None:
    call = ToolCall("c1", "get_weather", '{"city":"Paris"}')
    gw = Gateway(whole(ChatResponse("", "tool_calls", USAGE, tool_calls=(call,))))
    client = gw.client()
    r = client.responses.create(model="m", input="weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
    out = r.output[0]
    assert out.type == "function_call" and out.name == "get_weather" and out.arguments == '{"city":"Paris"}'
    assert r.output_text == ""
    follow = [{"role": "user", "content": "weather in Paris?"}, out, {"type": "function_call_output",
              "call_id": out.call_id, "output": "sunny"}]  # fmt: skip
    client.responses.create(model="m", input=follow, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    m = responses_request(gw.sent[1]).req.messages
    assert m[1].tool_calls == (call,)
    assert m[2] == Message("tool", "sunny", tool_call_id="c1")


# -- stream ------------------------------------------------------------------------------------------------------
def test_stream_sequence_is_what_the_sdk_stream_helper_accepts() -> None:
    final = ChatResponse("Hello there", "stop", USAGE, reasoning="hmm")
    raw = streamed([ReasoningDelta("hm"), ReasoningDelta("m"), ContentDelta("Hello"), ContentDelta(" there"),
                    Done(final)])  # fmt: skip
    events = frames(raw)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    gw = Gateway(lambda body: sse(raw))
    with gw.client().responses.stream(model="m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        got = stream.get_final_response()
    assert "".join(deltas) == got.output_text == "Hello there"
    assert got.output[0].type == "reasoning" and got.usage is not None and got.usage.output_tokens == 7


def test_streamed_tool_calls_go_out_whole() -> None:
    tools = {"agents__spawn": ToolName("function", "spawn", "agents"), "apply_patch": ToolName("custom", "apply_patch")}
    spawn, patch = ToolCall("c1", "agents__spawn", '{"task":"x"}'), ToolCall("c2", "apply_patch", '{"input":"P"}')
    raw = streamed(
        [ContentDelta("On it."), ToolCallDelta(0, "c1", "agents__spawn", '{"ta'),
         ToolCallDelta(0, None, None, 'sk":"x"}'), ToolCallEnd(0, spawn),
         Done(ChatResponse("On it.", "tool_calls", USAGE, tool_calls=(spawn, patch)))],
        tools,
    )  # fmt: skip
    events = frames(raw)
    args = [e for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert [a["delta"] for a in args] == ['{"task":"x"}']
    custom = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert custom[0]["input"] == "P"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [d["type"] for d in done] == ["message", "function_call", "custom_tool_call"]
    assert done[1]["namespace"] == "agents" and done[1]["name"] == "spawn"
    gw = Gateway(lambda body: sse(raw))
    with gw.client().responses.stream(model="m", input="hi") as stream:
        got = stream.get_final_response()
    assert [o.type for o in got.output] == ["message", "function_call", "custom_tool_call"]
    assert got.output[1].arguments == '{"task":"x"}'  # type: ignore[union-attr]


def test_a_whole_response_becomes_a_stream_and_an_empty_answer_is_a_message() -> None:
    events = frames(streamed([Done(ChatResponse("", "stop", USAGE))]))
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert final["output"][0]["type"] == "message" and final["output"][0]["content"][0]["text"] == ""


def test_a_cut_stream_ends_incomplete_and_a_failure_ends_failed() -> None:
    events = frames(streamed([ContentDelta("Once"), Done(ChatResponse("Once", "length", USAGE))]))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"
    w = ResponsesEventWriter(ResponseMeta("m", created_at=1))
    raw = w.start() + w.event(ContentDelta("Once")) + w.error(502, "api_error", "upstream stream failed")
    failed = frames(raw)[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": "upstream stream failed"}
    assert failed["response"]["output"][0]["status"] == "incomplete"
    assert failed["response"]["id"] == frames(raw)[0]["response"]["id"]  # the SDK checks the identity


def test_relay_check_reads_a_responses_stream() -> None:
    check = RESPONSES.check
    assert check is not None
    assert check.end.search(b'event: response.completed\ndata: {"type":"response.completed","response":{}}')
    assert check.failure.search(b'event: response.failed\ndata: {"type":"response.failed"}')
    assert not check.failure.search(b'event: response.output_text.delta\ndata: {"delta":"event: error"}')
    assert frames(check.error("m", 502, "api_error", "cut"))[0]["code"] == "server_error"
