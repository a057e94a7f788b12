"""corral.reasoning: <think>…</think> separated from the answer, also when tags are split across chunks."""

from __future__ import annotations

import pytest

from corral.reasoning import ThinkSplitter, split_think


def run(pieces: list[str]) -> tuple[str, str]:
    """Feed pieces, flush; return (content, reasoning) joined."""
    s = ThinkSplitter()
    parts = []
    for p in pieces:
        parts += s.feed(p)
    parts += s.flush()
    assert all(kind in ("content", "reasoning") and text for kind, text in parts)
    content = "".join(t for k, t in parts if k == "content")
    reasoning = "".join(t for k, t in parts if k == "reasoning")
    return content, reasoning


def test_split_think_basic():
    assert split_think("<think>a</think>b") == ("b", "a")


def test_splitter_basic_in_one_feed():
    s = ThinkSplitter()
    assert s.feed("<think>a</think>b") + s.flush() == [("reasoning", "a"), ("content", "b")]


def test_whitespace_after_close_tag_is_not_content():
    assert split_think("<think>\nplan\n</think>\n\nanswer") == ("answer", "\nplan\n")


def test_empty_think_block_gives_no_reasoning():
    assert split_think("<think></think>answer") == ("answer", None)


TEXT = "<think>plan</think>answer"


@pytest.mark.parametrize("i", range(len(TEXT) + 1))
def test_two_pieces_at_every_split_index(i):
    assert run([TEXT[:i], TEXT[i:]]) == ("answer", "plan")


def test_char_by_char():
    assert run(list(TEXT)) == ("answer", "plan")


def test_char_by_char_with_content_before_and_multiple_blocks():
    text = "pre <think>one</think>mid<think>two</think>post"
    assert run(list(text)) == ("pre midpost", "onetwo")
    assert run([text]) == run(list(text))


def test_partial_tag_is_held_back_not_emitted_early():
    s = ThinkSplitter()
    assert s.feed("hello <thi") == [("content", "hello ")]
    assert s.feed("nk>secret") == [("reasoning", "secret")]


@pytest.mark.parametrize(
    "text",
    ["a < b", "x <t y", "1 <th", "ends with <", "<thinking>not a tag</thinking>", "<b>bold</b>", "</think> stray"],
)
def test_tag_lookalikes_stay_content(text):
    assert run([text]) == (text, "")
    assert run(list(text)) == (text, "")


def test_tag_prefix_at_very_end_is_content_after_flush():
    s = ThinkSplitter()
    assert s.feed("answer <th") == [("content", "answer ")]
    assert s.flush() == [("content", "<th")]


def test_unclosed_think_is_reasoning_after_flush():
    assert run(["<think>still thinking </th"]) == ("", "still thinking </th")


@pytest.mark.parametrize("text", ["plain answer", "  leading spaces kept\n", "\n\nx", "a <b> c", ""])
def test_no_tags_is_all_content_unchanged(text):
    assert split_think(text) == (text, None)
    assert run([text]) == (text, "")
    assert run(list(text)) == (text, "")
