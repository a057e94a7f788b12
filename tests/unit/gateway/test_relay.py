"""The relay's byte-level edits of an upstream's answer: the model's name as the client asked for it."""

from __future__ import annotations

import json

from corral.gateway.relay import rename_model


def test_every_model_key_is_renamed_and_nothing_inside_strings() -> None:
    upstream = {
        "model": "/home/me/.cache/models/gemma-3-270m-Q4_K_M.gguf",  # a path the client must not see
        "nested": {"model" : "x\\\"y"},
        "text": 'a quoted "model": "kept" in a string',
        'a key "model': "kept too",
    }  # fmt: skip
    renamed = json.loads(rename_model(json.dumps(upstream).encode(), "my-model"))
    assert renamed["model"] == "my-model" and renamed["nested"]["model"] == "my-model"
    assert renamed["text"] == upstream["text"] and renamed['a key "model'] == "kept too"


def test_a_name_with_quotes_and_non_ascii_stays_valid_json() -> None:
    raw = b'{"model":"up","choices":[]}'
    out = rename_model(raw, 'é"\\\n名')
    assert json.loads(out)["model"] == 'é"\\\n名'


def test_a_megabytes_long_model_value_is_replaced_whole() -> None:
    # The fuzz battery's case: a 4.7 MB model name echoed back by an upstream.
    raw = b'{"id":"1","model":"' + "é".encode() * 2_000_000 + b'","usage":{}}'
    assert json.loads(rename_model(raw, "m")) == {"id": "1", "model": "m", "usage": {}}
