"""corral.sse.StreamDecoder: bytes split anywhere in, whole JSON payloads out."""

from __future__ import annotations

import json

import pytest

from corral import ResponseError
from corral.sse import DONE, StreamDecoder


def decode(body: bytes, mode: str = "auto") -> list:
    d = StreamDecoder(mode)  # type: ignore[arg-type]
    return d.feed(body) + d.close()


def decode_pieces(pieces: list[bytes], mode: str = "auto") -> list:
    d = StreamDecoder(mode)  # type: ignore[arg-type]
    out: list = []
    for p in pieces:
        out += d.feed(p)
    return out + d.close()


def chunk(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def sse(*payloads: object, eol: str = "\n") -> bytes:
    parts = []
    for p in payloads:
        data = "[DONE]" if p is DONE else json.dumps(p, ensure_ascii=False)
        parts.append(f"data: {data}{eol}{eol}")
    return "".join(parts).encode()


# A body exercising comments, CRLF, multibyte text, a multi-line data field, an event name and [DONE].
MIXED_BODY = (
    ": ping\r\n"
    "\r\n"
    'data: {"choices":[{"index":0,"delta":{"content":"caf\u00e9 \u65e5\u672c \U0001f600"},"finish_reason":null}]}\r\n'
    "\r\n"
    'data: {"a":\r\n'
    "data: 1}\r\n"
    "\r\n"
    ": keep-alive\r\n"
    "event: error\r\n"
    'data: {"error":{"message":"bad \u00e9"}}\r\n'
    "\r\n"
    "data: [DONE]\r\n"
    "\r\n"
).encode()

MIXED_EXPECTED = [
    chunk("caf\u00e9 \u65e5\u672c \U0001f600"),
    {"a": 1},
    {"error": {"message": "bad \u00e9"}, "__event__": "error"},
    DONE,
]


def test_done_sentinel_ends_openai_stream():
    out = decode(sse(chunk("Hi"), DONE))
    assert out == [chunk("Hi"), DONE]
    assert out[1] is DONE


def test_comment_and_keepalive_lines_are_ignored():
    body = b': ping\n\n: keep-alive\ndata: {"x":1}\n\n:\n\n'
    assert decode(body) == [{"x": 1}]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol):
    body = sse(chunk("a"), chunk("b"), DONE, eol=eol)
    assert decode(body) == [chunk("a"), chunk("b"), DONE]


def test_crlf_split_between_two_feeds_is_one_line_break():
    d = StreamDecoder()
    assert d.feed(b'data: {"a":\r') == []
    # The "\n" completing the CRLF must not count as a blank line (which would dispatch '{"a":' alone).
    assert d.feed(b"\ndata: 1}\r") == []
    assert d.feed(b"\n\r") == [{"a": 1}]
    assert d.feed(b"\n") == []
    assert d.close() == []


def test_empty_feed_between_cr_and_lf_keeps_the_crlf_pair():
    d = StreamDecoder()
    out = d.feed(b'data: {"a":\r')
    out += d.feed(b"")
    out += d.feed(b"\ndata: 1}\r\n\r\n")
    assert out == [{"a": 1}]


@pytest.mark.parametrize("mode", ["auto", "sse"])
def test_leading_utf8_bom_is_stripped(mode):
    assert decode(b'\xef\xbb\xbfdata: {"a":1}\n\n', mode=mode) == [{"a": 1}]


def test_whole_body_reference():
    assert decode(MIXED_BODY) == MIXED_EXPECTED


def test_one_byte_at_a_time_gives_same_payloads():
    pieces = [MIXED_BODY[i : i + 1] for i in range(len(MIXED_BODY))]
    assert decode_pieces(pieces) == MIXED_EXPECTED


def test_every_two_way_split_gives_same_payloads():
    for i in range(len(MIXED_BODY) + 1):
        got = decode_pieces([MIXED_BODY[:i], MIXED_BODY[i:]])
        assert got == MIXED_EXPECTED, f"split at {i}: {MIXED_BODY[:i]!r} | {MIXED_BODY[i:]!r}"


@pytest.mark.parametrize("step", [2, 3, 5, 7, 13])
def test_fixed_size_reads_give_same_payloads(step):
    pieces = [MIXED_BODY[i : i + step] for i in range(0, len(MIXED_BODY), step)]
    assert decode_pieces(pieces) == MIXED_EXPECTED


@pytest.mark.parametrize("text", ["\u00e9", "\u65e5\u672c", "\U0001f600", "na\u00efve \u2014 \U0001f44d\U0001f3fd"])
def test_utf8_character_split_inside_its_bytes(text):
    body = sse(chunk(text))
    raw = text.encode()
    start = body.index(raw)
    for cut in range(start + 1, start + len(raw)):
        assert decode_pieces([body[:cut], body[cut:]]) == [chunk(text)], f"cut at byte {cut}"


def test_multiline_data_fields_are_joined_with_newline():
    # JSON allows a newline between tokens; the two data lines must be joined by "\n", not "".
    body = b'data: {"a":\ndata: "x"}\n\n'
    assert decode(body) == [{"a": "x"}]
    with pytest.raises(ResponseError) as info:
        decode(b'data: {"s":"a\ndata: b"}\n\n')  # a raw newline inside a JSON string: proves the "\n" join
    assert "\\n" in str(info.value)


def test_data_without_space_after_colon():
    assert decode(b'data:{"a":1}\n\n') == [{"a": 1}]


def test_event_error_adds_event_name():
    body = b'event: error\ndata: {"error":{"code":500,"message":"boom"}}\n\n'
    assert decode(body) == [{"error": {"code": 500, "message": "boom"}, "__event__": "error"}]


def test_event_name_applies_to_one_event_only():
    body = b'event: error\ndata: {"a":1}\n\ndata: {"b":2}\n\n'
    assert decode(body) == [{"a": 1, "__event__": "error"}, {"b": 2}]


def test_message_event_adds_no_event_key():
    assert decode(b'event: message\ndata: {"a":1}\n\n') == [{"a": 1}]


def test_ndjson_is_auto_detected():
    body = b'{"a":1}\n\n{"b":"\xc3\xa9"}\n{"c":3}'
    d = StreamDecoder()
    out = d.feed(body) + d.close()
    assert out == [{"a": 1}, {"b": "\u00e9"}, {"c": 3}]
    assert d.mode == "ndjson"


def test_sse_is_auto_detected_from_a_leading_comment():
    d = StreamDecoder()
    d.feed(b": hello\n")
    assert d.mode == "sse"


def test_ndjson_mode_explicit_split_anywhere():
    body = b'{"a":"\xe6\x97\xa5"}\r\n{"b":2}\r\n'
    for i in range(len(body) + 1):
        assert decode_pieces([body[:i], body[i:]], mode="ndjson") == [{"a": "\u65e5"}, {"b": 2}]


def test_malformed_json_chunk_raises_with_the_text():
    with pytest.raises(ResponseError) as info:
        decode(b"data: {not json at all}\n\n")
    assert "{not json at all}" in str(info.value)
    assert info.value.raw == "{not json at all}"


def test_malformed_ndjson_line_raises_with_the_text():
    with pytest.raises(ResponseError) as info:
        decode(b'{"a":1}\n{"b": oops}\n', mode="ndjson")
    assert '{"b": oops}' in str(info.value)


def test_non_object_json_chunk_is_an_error():
    with pytest.raises(ResponseError):
        decode(b"data: [1, 2]\n\n")


def test_last_event_without_trailing_blank_line_is_delivered_on_close():
    d = StreamDecoder()
    assert d.feed(b'data: {"a":1}\n\ndata: {"last":true}\n') == [{"a": 1}]
    assert d.close() == [{"last": True}]


def test_last_line_without_any_newline_is_delivered_on_close():
    d = StreamDecoder()
    assert d.feed(b"data: [DONE]") == []
    assert d.close() == [DONE]


def test_invalid_utf8_raises_response_error():
    with pytest.raises(ResponseError, match="UTF-8"):
        StreamDecoder().feed(b'data: {"a":"\xff\xfe"}\n\n')


def test_stream_ending_inside_a_utf8_character_raises():
    d = StreamDecoder()
    d.feed(b'data: {"a":"\xe6\x97')
    with pytest.raises(ResponseError, match="UTF-8"):
        d.close()


def test_empty_body_gives_nothing():
    assert decode(b"") == []
    assert decode(b"\n\n\r\n") == []
