"""The Anthropic side of the gateway, checked with the official ``anthropic`` SDK on the client end: what
the SDK (as Claude Code would) sends must parse, and what the gateway writes must be what the SDK's
stream accumulator and models accept."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message as SDKMessage

from corral.errors import ServerError
from corral.events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from corral.gateway.anthropic.wire import (
    AnthropicEventWriter,
    anthropic_response,
    chat_request_from_anthropic,
    count_tokens_request,
    stop_reason,
    tool_input,
)
from corral.gateway.wire_errors import WireError
from corral.providers.anthropic.assembler import MessageAssembler
from corral.providers.anthropic.stream import AnthropicStreamState
from corral.sse import StreamDecoder
from corral.types import ChatResponse, ImagePart, Message, TextPart, ToolCall, Usage

READ_TOOL = {
    "name": "read_file",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
CALL = ToolCall("toolu_1", "read_file", '{"path": "a.py"}')


class Gateway:
    """A mock transport that records what the SDK sent and answers with what a test gives."""

    def __init__(self, answer: Callable[[dict[str, Any]], httpx2.Response]) -> None:
        self.sent: list[dict[str, Any]] = []
        self._answer = answer

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.sent.append(body)
        return self._answer(body)

    def client(self) -> anthropic.Anthropic:
        http = httpx2.Client(transport=httpx2.MockTransport(self.handler))
        return anthropic.Anthropic(api_key="x", base_url="http://gw", max_retries=0, http_client=http)


def sse(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})


def write(events: list[StreamEvent], *, ping: bool = False) -> bytes:
    w = AnthropicEventWriter("local-model", "msg_abc", input_tokens=30)
    out = w.start() + (w.ping() if ping else b"")
    return out + b"".join(w.event(e) for e in events)


def frames(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in raw.decode().split("\n\n")[:-1]:
        event_line, data_line = frame.split("\n")
        out.append((event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return out


def agent_turn() -> tuple[list[StreamEvent], ChatResponse]:
    second = ToolCall("toolu_2", "read_file", "{not json")
    final = ChatResponse(
        content="Reading both files.",
        finish_reason="tool_calls",
        usage=Usage(40, 12, 10),
        reasoning="The user wants a.py and b.py.",
        tool_calls=(CALL, second),
    )
    events: list[StreamEvent] = [
        ReasoningDelta("The user wants "),
        ReasoningDelta("a.py and b.py."),
        ContentDelta("Reading "),
        ContentDelta("both files."),
        ToolCallDelta(0, "toolu_1", "read_file", '{"path": '),
        ToolCallDelta(0, None, None, '"a.py"}'),
        ToolCallEnd(0, CALL),
        ToolCallDelta(1, "toolu_2", "read_file", "{not json"),
        ToolCallEnd(1, second),
        Done(final),
    ]
    return events, final


# -- requests ---------------------------------------------------------------------------------------------------
def test_claude_code_style_request_becomes_the_right_corral_messages() -> None:
    reply = anthropic_response(ChatResponse("done", "stop", Usage(5, 1)), model="local-model")
    gw = Gateway(lambda _: httpx2.Response(200, json=reply))
    gw.client().messages.create(  # type: ignore[call-overload]
        model="local-model",
        max_tokens=1024,
        system=[
            {"type": "text", "text": "You are a coding agent."},
            {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": "Fix the bug in a.py"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Read it first.", "signature": "sig"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.py"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {"path": "b.py"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "print('hi')"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "No such file"}],
                    },
                    {"type": "text", "text": "<system-reminder>be brief</system-reminder>"},
                    {"type": "text", "text": "Go on."},
                ],
            },
        ],
        tools=[READ_TOOL, {"name": "noop", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any"},
        stop_sequences=["</done>"],
        metadata={"user_id": "u1"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        output_config={"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        extra_body={"temperature": 0.5, "top_k": 40},  # older clients still send sampling fields
    )
    req = chat_request_from_anthropic(gw.sent[0])
    m = req.messages
    assert [x.role for x in m] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert m[0].content == "You are a coding agent.\n\nBe careful."
    assert m[2].content == "Let me look." and m[2].reasoning == "Read it first."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in m[2].tool_calls] == [
        ("toolu_1", "read_file", {"path": "a.py"}),
        ("toolu_2", "read_file", {"path": "b.py"}),
    ]
    assert (m[3].tool_call_id, m[3].content) == ("toolu_1", "print('hi')")
    assert (m[4].tool_call_id, m[4].content) == ("toolu_2", "Error: No such file")
    assert m[5].content == "<system-reminder>be brief</system-reminder>\n\nGo on."
    assert req.tools[0] == {
        "type": "function",
        "function": {"name": "read_file", "description": "Read a file", "parameters": READ_TOOL["input_schema"]},
    }
    assert req.tools[1] == {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
    assert (req.tool_choice, req.model, req.max_tokens, req.temperature, req.stop) == (
        "required", "local-model", 1024, 0.5, ("</done>",),
    )  # fmt: skip
    assert req.extra_body == {"top_k": 40}
    assert (req.thinking, req.thinking_budget) == (True, 2048)
    assert req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}},
    }


def test_images_and_tool_result_images() -> None:
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [
                        {"type": "text", "text": "screenshot:"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    ]},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                    {"type": "text", "text": "What is shown?"},
                ],
            }
        ],
    }  # fmt: skip
    m = chat_request_from_anthropic(body).messages
    assert m[0] == Message.tool("t1", "screenshot:")
    assert m[1] == Message.user(
        [ImagePart("https://x.test/a.jpg"), TextPart("What is shown?"), ImagePart("data:image/png;base64,iVBOR")]
    )


@pytest.mark.parametrize(
    ("choice", "want"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "read_file"}, {"type": "function", "function": {"name": "read_file"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], want: Any) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [READ_TOOL]}
    assert chat_request_from_anthropic({**body, "tool_choice": choice}).tool_choice == want


def test_count_tokens_needs_no_max_tokens() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "system": "s"}
    assert [x.role for x in count_tokens_request(body).messages] == ["system", "user"]
    with pytest.raises(WireError) as caught:
        chat_request_from_anthropic(body)
    assert caught.value.param == "max_tokens"


BASE: dict[str, Any] = {"model": "m", "max_tokens": 5}
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 5, "messages": USER}, "model"),
        ({"model": "m", "messages": USER}, "max_tokens"),
        ({**BASE, "max_tokens": 0, "messages": USER}, "max_tokens"),
        ({**BASE}, "messages"),
        ({**BASE, "messages": []}, "messages"),
        ({**BASE, "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({**BASE, "messages": [{"role": "system", "content": "x"}]}, "messages"),  # nothing but system
        ({**BASE, "messages": [{"role": "user"}]}, "messages.0.content"),
        ({**BASE, "messages": [{"role": "user", "content": 7}]}, "messages.0.content"),
        (
            {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "document"}]}]},
            "messages.0.content.1.type",
        ),
        (
            {**BASE, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "messages.0.content.0.tool_use_id",
        ),
        (
            {
                **BASE,
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ],
            },
            "messages.0.content.0.source.type",
        ),
        (
            {
                **BASE,
                "messages": [
                    *USER,
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]},
                ],
            },
            "messages.1.content.0.input",
        ),
        ({**BASE, "messages": USER, "system": [{"type": "image"}]}, "system.0.type"),
        (
            {**BASE, "messages": USER, "tools": [READ_TOOL, {"type": "web_search_20250305", "name": "web_search"}]},
            "tools.1",
        ),
        ({**BASE, "messages": USER, "tools": [{"name": "f"}]}, "tools.0.input_schema"),
        (
            {**BASE, "messages": USER, "tools": [READ_TOOL], "tool_choice": {"type": "tool", "name": "nope"}},
            "tool_choice.name",
        ),
        ({**BASE, "messages": USER, "tool_choice": {"type": "any"}}, "tool_choice"),
        ({**BASE, "messages": USER, "temperature": 1.5}, "temperature"),
        ({**BASE, "messages": USER, "top_p": -0.1}, "top_p"),
        ({**BASE, "messages": USER, "top_k": -1}, "top_k"),
        ({**BASE, "messages": USER, "stop_sequences": "END"}, "stop_sequences"),
        ({**BASE, "messages": USER, "stream": "yes"}, "stream"),
        ({**BASE, "messages": USER, "thinking": True}, "thinking"),
        ({**BASE, "messages": USER, "output_config": {"format": {"type": "json_object"}}}, "output_config.format"),
    ],
)
def test_validation_errors_name_their_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(WireError) as caught:
        chat_request_from_anthropic(body)
    err = caught.value
    assert (err.status, err.kind, err.param) == (400, "invalid_request_error", param)
    assert err.message.startswith(f"{param}: ")
    assert err.anthropic() == {"type": "error", "error": {"type": "invalid_request_error", "message": err.message}}


def test_server_tools_are_refused_in_words() -> None:
    body = {**BASE, "messages": USER, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    with pytest.raises(WireError, match=r"web_search_20250305.*not supported by this gateway"):
        chat_request_from_anthropic(body)


def test_the_sdk_shows_a_validation_error() -> None:
    gw = Gateway(
        lambda body: httpx2.Response(400, json=WireError(400, "max_tokens: must be a positive integer").anthropic())
    )
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: must be a positive integer"):
        gw.client().messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}])


# -- whole responses --------------------------------------------------------------------------------------------
def test_response_with_reasoning_text_and_tool_call_is_a_valid_message() -> None:
    resp = ChatResponse(
        "Reading.", "tool_calls", Usage(40, 12, 10), id="chatcmpl-1", reasoning="plan", tool_calls=(CALL,)
    )
    body = anthropic_response(resp, model="local-model")
    msg = SDKMessage.model_validate(body)  # the SDK's own (pydantic) model of a message
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].thinking == "plan"  # type: ignore[union-attr]
    assert msg.content[1].text == "Reading."  # type: ignore[union-attr]
    tool = msg.content[2]
    assert (tool.id, tool.name, tool.input) == ("toolu_1", "read_file", {"path": "a.py"})  # type: ignore[union-attr]
    assert (msg.stop_reason, msg.model, msg.role) == ("tool_use", "local-model", "assistant")
    assert msg.id.startswith("msg_")
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (30, 12, 10)


def test_the_sdk_reads_a_whole_response() -> None:
    resp = ChatResponse("Hello!", "length", Usage(5, 2))
    gw = Gateway(lambda _: httpx2.Response(200, json=anthropic_response(resp, model="m")))
    msg = gw.client().messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert [(b.type, b.text) for b in msg.content] == [("text", "Hello!")]  # type: ignore[union-attr]
    assert msg.stop_reason == "max_tokens"


@pytest.mark.parametrize(
    ("arguments", "want"),
    [
        ('{"path": "a.py"}', {"path": "a.py"}),
        ("", {}),
        ("{not json", {"_invalid_arguments": "{not json"}),
        ('["a"]', {"_invalid_arguments": '["a"]'}),
    ],
)
def test_tool_input(arguments: str, want: dict[str, Any]) -> None:
    assert tool_input(arguments) == want


@pytest.mark.parametrize(
    ("finish", "calls", "want"),
    [
        ("stop", (), "end_turn"),
        ("length", (), "max_tokens"),
        ("content_filter", (), "refusal"),
        ("tool_calls", (CALL,), "tool_use"),
        ("stop", (CALL,), "tool_use"),
        ("tool_calls", (), "end_turn"),
        ("pause_turn", (), "pause_turn"),
        ("eos", (), "end_turn"),
    ],
)
def test_stop_reason(finish: str, calls: tuple[ToolCall, ...], want: str) -> None:
    assert stop_reason(ChatResponse("x", finish, Usage(), tool_calls=calls)) == want


# -- streams ----------------------------------------------------------------------------------------------------
def test_sdk_accumulates_the_stream() -> None:
    events, _ = agent_turn()
    gw = Gateway(lambda _: sse(write(events, ping=True)))
    with gw.client().messages.stream(
        model="local-model", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        texts = list(s.text_stream)
        msg = s.get_final_message()
    assert "".join(texts) == "Reading both files."
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "The user wants a.py and b.py."  # type: ignore[union-attr]
    assert [(b.id, b.input) for b in msg.content[2:]] == [  # type: ignore[union-attr]
        ("toolu_1", {"path": "a.py"}),
        ("toolu_2", {"_invalid_arguments": "{not json"}),
    ]
    assert (msg.id, msg.stop_reason) == ("msg_abc", "tool_use")
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (30, 12, 10)


def test_corral_reads_the_stream_back() -> None:
    events, final = agent_turn()
    decoder, state = StreamDecoder("sse"), AnthropicStreamState(MessageAssembler("gateway"))
    for payload in decoder.feed(write(events)) + decoder.close():
        state.feed(payload)
    got = state.finish()
    assert (got.content, got.reasoning, got.finish_reason, got.usage) == (
        final.content, final.reasoning, "tool_calls", final.usage,
    )  # fmt: skip
    assert [(c.id, c.name, tool_input(c.arguments)) for c in got.tool_calls] == [
        ("toolu_1", "read_file", {"path": "a.py"}),
        ("toolu_2", "read_file", {"_invalid_arguments": "{not json"}),
    ]


def test_blocks_open_and_close_as_the_kind_changes() -> None:
    events: list[StreamEvent] = [
        ContentDelta("a"),
        ReasoningDelta("r"),
        ContentDelta("b"),
        Done(ChatResponse("ab", "stop", Usage(3, 2), reasoning="r")),
    ]
    got = frames(write(events))
    kinds = [e for e, _ in got]
    assert kinds == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    # A thinking block ends with its signature, as Anthropic's do (the SDKs read it from signature_delta).
    assert got[6][1]["delta"] == {"type": "signature_delta", "signature": "corral"}
    starts = [d for e, d in got if e == "content_block_start"]
    assert [(d["index"], d["content_block"]["type"]) for d in starts] == [(0, "text"), (1, "thinking"), (2, "text")]
    assert all(d["type"] == e for e, d in got)
    assert got[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_finish_sends_what_was_never_streamed_and_nothing_twice() -> None:
    w = AnthropicEventWriter("m", "msg_1", input_tokens=3)
    raw = w.event(ToolCallEnd(0, CALL))
    second = ToolCall("toolu_2", "read_file", '{"path": "b.py"}')
    resp = ChatResponse("text only at the end", "tool_calls", Usage(3, 4), reasoning="why", tool_calls=(CALL, second))
    raw += w.finish(resp)
    assert w.finish(resp) == b"" and w.event(ContentDelta("late")) == b""
    blocks = [d["content_block"] for e, d in frames(raw) if e == "content_block_start"]
    assert [(b["type"], b.get("id")) for b in blocks] == [
        ("tool_use", "toolu_1"),
        ("thinking", None),
        ("text", None),
        ("tool_use", "toolu_2"),
    ]


def test_error_event_after_the_stream_started() -> None:
    w = AnthropicEventWriter("m", "msg_1")
    raw = w.event(ContentDelta("Hel")) + w.error(529, "overloaded_error", "upstream overloaded")
    assert frames(raw)[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "upstream overloaded"}},
    )
    gw = Gateway(lambda _: sse(raw))
    stream = gw.client().messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError, match="upstream overloaded"), stream as s:
        s.get_final_message()
    decoder, state = StreamDecoder("sse"), AnthropicStreamState(MessageAssembler("gateway"))
    with pytest.raises(ServerError, match="upstream overloaded"):
        for payload in decoder.feed(raw):
            state.feed(payload)


def test_ping_frame() -> None:
    assert AnthropicEventWriter("m", "msg_1").ping() == b'event: ping\ndata: {"type":"ping"}\n\n'
