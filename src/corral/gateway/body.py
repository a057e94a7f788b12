"""Reading a request body: the size limit (413 before parsing), JSON that is an object, and a bound
on nesting, so that no body can make a later step recurse past Python's stack (a 500)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .wire_errors import WireError

__all__ = ["MAX_DEPTH", "OFF_LOOP_BYTES", "parse_json", "read_body"]

#: deepest nesting of arrays and objects accepted; a JSON schema in a tool is a dozen levels at most
MAX_DEPTH = 100
#: bodies larger than this are parsed and validated in a worker thread, off the event loop
OFF_LOOP_BYTES = 1 << 20


async def read_body(request: Request, limit: int) -> bytes:
    """The body's bytes, refused with 413 once it passes ``limit`` (by its Content-Length, or as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise WireError(413, f"request body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WireError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying why not."""
    if not raw.strip():
        raise WireError(400, "request body is empty; expected a JSON object")
    try:
        body = json.loads(raw, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        # Refused, not resolved: the gateway would check the last value while a backend given the
        # same bytes may read the first.
        raise WireError(400, f"request body repeats the key {exc.key!r} in one object") from None
    except RecursionError:
        raise WireError(400, f"request body is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except ValueError as exc:
        raise WireError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WireError(400, "request body must be a JSON object")
    # Only a body with more brackets than the limit can be nested past it (bytes.count is C-fast).
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise WireError(400, f"request body is nested too deeply (more than {MAX_DEPTH} levels)")
    # JSON can spell a lone UTF-16 surrogate ("\ud800"), which is no Unicode text: it could not be
    # sent upstream, logged or shown. Only a body with such an escape needs the check.
    # (Or as raw bytes ED A0..BF: json.loads decodes bytes with "surrogatepass".)
    if (b"\\ud" in raw or b"\\uD" in raw or b"\xed" in raw) and _has_lone_surrogate(body):
        raise WireError(400, "request body holds a lone UTF-16 surrogate (like \\ud800): not valid Unicode text")
    return body


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key[:100]
        super().__init__(key)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


def _has_lone_surrogate(body: Any) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _depth(value: Any) -> int:
    """Nesting depth of arrays and objects, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > MAX_DEPTH:
                return deepest
        items = node.values() if isinstance(node, dict) else node
        for child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, level + 1))
    return deepest
