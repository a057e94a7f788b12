"""Separating ``<think>…</think>`` reasoning from answer text, incrementally.

Models that reason inline (DeepSeek-R1, Qwen3 without a reasoning parser) put
their thoughts between think tags in the content. The tags may be split across
stream chunks ("<thi" + "nk>"), so text that could be the start of a tag is held
back until the next chunk decides it.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ThinkSplitter", "split_think"]

_OPEN = "<think>"
_CLOSE = "</think>"
Kind = Literal["content", "reasoning"]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    __slots__ = ("_after_close", "_held", "_inside")

    def __init__(self) -> None:
        self._inside = False
        self._held = ""
        self._after_close = False

    def feed(self, text: str) -> list[tuple[Kind, str]]:
        out: list[tuple[Kind, str]] = []
        buf = self._held + text
        self._held = ""
        while buf:
            tag = _CLOSE if self._inside else _OPEN
            at = buf.find(tag)
            if at >= 0:
                self._emit(out, buf[:at])
                buf = buf[at + len(tag) :]
                self._inside = not self._inside
                self._after_close = not self._inside
                continue
            keep = _partial_suffix(buf, tag)
            self._emit(out, buf[: len(buf) - keep])
            self._held = buf[len(buf) - keep :]
            break
        return out

    def flush(self) -> list[tuple[Kind, str]]:
        out: list[tuple[Kind, str]] = []
        held, self._held = self._held, ""
        self._emit(out, held)
        return out

    def _emit(self, out: list[tuple[Kind, str]], text: str) -> None:
        if not text:
            return
        kind: Kind = "reasoning" if self._inside else "content"
        if kind == "content" and self._after_close:
            # Whitespace between </think> and the answer is formatting, not content.
            text = text.lstrip()
            if not text:
                return
            self._after_close = False
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))


def split_think(text: str) -> tuple[str, str | None]:
    """Whole-text form: (content, reasoning or None)."""
    if "<think>" not in text:
        return text, None
    splitter = ThinkSplitter()
    parts = splitter.feed(text) + splitter.flush()
    content = "".join(t for k, t in parts if k == "content")
    reasoning = "".join(t for k, t in parts if k == "reasoning")
    return content, (reasoning or None)
