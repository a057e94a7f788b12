"""Request bodies the gateway refuses before anything else reads them (issue 12 #7 and the low items):
each a 400 naming the problem, never a 500 or a traceback."""

from __future__ import annotations

import json

import pytest

from corral.gateway.body import MAX_DEPTH, parse_json
from corral.gateway.wire_errors import WireError


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),  # past Python's recursion limit
        (b'{"a":' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}", "nested too deeply"),  # under it
        (b'{"model": "\\ud800", "messages": "x"}', "lone UTF-16 surrogate"),
        (b'{"messages": [{"role": "user", "content": "a\\uDFFFb"}]}', "lone UTF-16 surrogate"),
        (b'{"model": "\xed\xa0\x80"}', "lone UTF-16 surrogate"),  # the same as raw (invalid) UTF-8 bytes
        (b'{"max_tokens": 10, "max_tokens": 100000}', "repeats the key 'max_tokens'"),
        (b'{"a": {"b": 1, "b": 2}}', "repeats the key 'b'"),
        (b"", "empty"),
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_refused_with_a_400_naming_the_problem(raw: bytes, says: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_json(raw)
    assert caught.value.status == 400 and says in caught.value.message


def test_what_real_clients_send_is_accepted() -> None:
    deep_schema: dict = {"type": "object"}
    for _ in range(20):  # a nested tool schema, deeper than any seen in the wild
        deep_schema = {"type": "object", "properties": {"x": deep_schema}}
    body = {"messages": [{"role": "user", "content": "emoji 😀 and é"}], "tools": [deep_schema]}
    raw = json.dumps(body).encode()  # ensure_ascii: the emoji travels as a surrogate *pair*, which is fine
    assert parse_json(raw) == body
