"""Incremental decoding of streamed bodies: Server-Sent Events and NDJSON.

Bytes go in as they arrive (split anywhere, even inside a UTF-8 character or a
CRLF pair); whole JSON payloads come out. No I/O here.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ResponseError

__all__ = ["DONE", "ServerSentEvent", "StreamDecoder"]

DONE: Any = object()  # sentinel payload for the OpenAI-style "data: [DONE]"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str


class _LineSplitter:
    """Split text into lines on LF, CRLF or CR, also when the pair is split across feeds."""

    __slots__ = ("_buf", "_pending_cr")

    def __init__(self) -> None:
        self._buf = ""
        self._pending_cr = False

    def feed(self, text: str) -> list[str]:
        if not text:
            return []
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        buf = self._buf + text
        if "\r" in buf:
            if buf.endswith("\r"):
                self._pending_cr = True
            buf = buf.replace("\r\n", "\n").replace("\r", "\n")
        lines = buf.split("\n")
        self._buf = lines.pop()
        return lines

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, ""
        return [rest] if rest else []


class StreamDecoder:
    """Turn a streamed body into JSON payloads.

    ``mode`` is "sse", "ndjson", or "auto" (decided from the first non-blank line:
    SSE field lines start with ``data:``, ``event:``, ``id:``, ``retry:`` or ``:``).
    ``feed`` returns decoded payloads: dicts, or :data:`DONE`. SSE events carry
    their event name in the ``"__event__"`` key when it is not "message".
    """

    __slots__ = ("_data", "_decoder", "_event", "_lines", "_started", "mode")

    def __init__(self, mode: Literal["sse", "ndjson", "auto"] = "auto") -> None:
        self.mode = mode
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._lines = _LineSplitter()
        self._event = ""
        self._data: list[str] = []
        self._started = False

    def feed(self, chunk: bytes) -> list[Any]:
        try:
            text = self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise ResponseError(f"stream is not valid UTF-8: {exc}", raw=repr(chunk[:200])) from exc
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the first line (SSE spec)
        return self._handle(self._lines.feed(text))

    def close(self) -> list[Any]:
        """End of body: flush what is buffered (a last line without newline, a pending event)."""
        try:
            tail = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise ResponseError("stream ended inside a UTF-8 character") from exc
        lines = self._lines.feed(tail) + self._lines.flush()
        out = self._handle(lines)
        if self.mode == "sse" and self._data:
            out.extend(self._dispatch())
        return out

    def _handle(self, lines: list[str]) -> list[Any]:
        out: list[Any] = []
        for line in lines:
            if self.mode == "auto":
                stripped = line.strip()
                if not stripped:
                    continue
                self.mode = "sse" if stripped.startswith(("data:", "event:", "id:", "retry:", ":")) else "ndjson"
            if self.mode == "ndjson":
                if line.strip():
                    out.append(_parse_json(line.strip()))
            else:
                self._sse_line(line, out)
        return out

    def _sse_line(self, line: str, out: list[Any]) -> None:
        if not line:
            if self._data:
                out.extend(self._dispatch())
            else:
                self._event = ""
            return
        if line.startswith(":"):
            return  # comment / keep-alive
        if line.startswith("{") and not self._data:
            # Not SSE, but proxies (llama-swap after its loading messages) write a bare JSON error
            # into an already-started event stream; dropping it would hide why the stream ended.
            try:
                value = json.loads(line)
            except ValueError:
                return  # per the SSE spec an unknown field line is ignored
            if isinstance(value, dict):
                out.append(value)
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # "id" and "retry" carry nothing corral needs; unknown fields are ignored per the SSE spec.

    def _dispatch(self) -> list[Any]:
        data = "\n".join(self._data)
        event = self._event
        self._data = []
        self._event = ""
        if data.strip() == "[DONE]":
            return [DONE]
        payload = _parse_json(data)
        if event and event != "message" and isinstance(payload, dict):
            payload.setdefault("__event__", event)
        return [payload]


def _parse_json(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        shown = text if len(text) <= 500 else text[:500] + "…"
        raise ResponseError(f"malformed stream chunk: {shown!r}", raw=text) from exc
    if not isinstance(value, dict):
        raise ResponseError(f"stream chunk is not a JSON object: {text[:500]!r}", raw=text)
    return value
