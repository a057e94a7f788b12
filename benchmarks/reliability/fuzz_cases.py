"""Hypothesis strategies for requests to every gateway route, with the values that broke gateways
before: lone surrogates (as JSON escapes, and as raw bytes that are not UTF-8), deep nesting, huge
strings, CR/LF in model names, wrong types per field, 250k tiny messages, duplicate keys, non-JSON,
UTF-16 bodies, wrong content types and methods.

Each request belongs to one *family* (:data:`FAMILIES`), so a run can aim at one kind of nastiness
and a finding says which kind found it. Large values are built from a drawn size (``"A" * n``), not
drawn character by character, so they cost Hypothesis nothing.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

__all__ = ["FAMILIES", "FORGED", "ROUTES", "FuzzRequest", "Route", "requests"]

FORGED = "2099-01-01 00:00:00,000 corral.gateway FORGED"  # a log line a CR/LF model name tries to forge


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # with {model} and {path} placeholders
    body: str  # which template body (see _template); "" for none


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/chat/completions", "chat"),
    Route("POST", "/v1/completions", "completion"),
    Route("POST", "/v1/embeddings", "embeddings"),
    Route("POST", "/v1/rerank", "rerank"),
    Route("GET", "/v1/models", ""),
    Route("GET", "/v1/models/{model}", ""),
    Route("POST", "/v1/messages", "messages"),
    Route("POST", "/v1/messages/count_tokens", "count_tokens"),
    Route("POST", "/v1/responses", "responses"),
    Route("POST", "/api/chat", "ollama_chat"),
    Route("POST", "/api/generate", "ollama_generate"),
    Route("POST", "/api/embed", "ollama_embed"),
    Route("POST", "/api/embeddings", "ollama_embeddings"),
    Route("GET", "/api/tags", ""),
    Route("GET", "/api/ps", ""),
    Route("POST", "/api/show", "ollama_show"),
    Route("GET", "/api/version", ""),
    Route("GET", "/running", ""),
    Route("POST", "/api/models/unload", ""),
    Route("POST", "/models/{model}/load", ""),
    Route("POST", "/upstream/{model}/{path}", "upstream"),
    Route("GET", "/upstream/{model}/{path}", ""),
    Route("GET", "/metrics", ""),
    Route("GET", "/health", ""),
    Route("GET", "/dashboard/api/state", ""),
    Route("POST", "/dashboard/api/chat", "dashboard_chat"),
)

FAMILIES = (
    "valid", "wrong-types", "surrogates", "surrogate-bytes", "huge-strings", "huge-names", "crlf", "nesting",
    "many-messages", "duplicate-keys", "non-json", "utf16", "content-types", "methods", "auth", "random-json",
    "unicode",
)  # fmt: skip
# How often each family comes up in a mixed run (the expensive ones rarely).
WEIGHTS = {
    "valid": 6, "wrong-types": 10, "surrogates": 4, "surrogate-bytes": 3, "huge-strings": 3, "huge-names": 2,
    "crlf": 4, "nesting": 3, "many-messages": 1, "duplicate-keys": 4, "non-json": 6, "utf16": 3, "content-types": 4,
    "methods": 4, "auth": 4, "random-json": 8, "unicode": 6,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FuzzRequest:
    family: str
    gateway: str  # which gateway of the run ("routed" or "open")
    method: str
    route: str  # the template, for counting
    path: str  # quoted, ready to send
    headers: dict[str, str]
    body: bytes | None
    stream: bool

    def repro(self) -> str:
        body = "" if self.body is None else f" body[{len(self.body)} B]={_excerpt(self.body)}"
        ctype = self.headers.get("Content-Type")
        extra = f" content-type={ctype!r}" if ctype and ctype != "application/json" else ""
        auth = "" if "Authorization" in self.headers else " (no key)"
        return f"{self.method} {self.path[:200]}{extra}{auth}{body} [gateway={self.gateway}]"


def _excerpt(raw: bytes, limit: int = 160) -> str:
    if len(raw) <= limit:
        return repr(raw)
    return repr(raw[: limit // 2]) + f"...({len(raw) - limit} B)..." + repr(raw[-limit // 2 :])


# -- values -------------------------------------------------------------------------------------------------
GOOD_MODELS = {"routed": ("gpt", "gpt-4o-mini", "claude", "llama", "local"), "open": ("m", "claude-x", "gpt-y")}
SURROGATES = ("\ud800", "a\udfffb", "\udc00\ud800", "x\ud83d")
ODD_NAMES = ("", " ", "../../etc/passwd", "m/../../x", "%2e%2e%2f", "\x00", "model with spaces", "😀" * 8,
             "<script>alert(1)</script>", "{model}", "a" * 300, "nope", "m\tx", "ünïcødé", "$(id)", "`id`",
             "m;ls")  # fmt: skip
WRONG = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.booleans(), st.none(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.text(max_size=20), st.just([]), st.just({}), st.just(""), st.just(-1), st.just(10**30),
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

FIELDS: dict[str, tuple[tuple[str | int, ...], ...]] = {
    "chat": (
        ("model",),
        ("messages",),
        ("messages", 0),
        ("messages", 0, "role"),
        ("messages", 0, "content"),
        ("messages", 0, "content", 0),
        ("messages", 0, "content", 0, "type"),
        ("messages", 0, "name"),
        ("messages", 0, "tool_calls"),
        ("max_tokens",),
        ("max_completion_tokens",),
        ("temperature",),
        ("top_p",),
        ("stream",),
        ("stream_options",),
        ("stream_options", "include_usage"),
        ("tools",),
        ("tools", 0, "function"),
        ("tools", 0, "function", "parameters"),
        ("tool_choice",),
        ("response_format",),
        ("response_format", "type"),
        ("response_format", "json_schema"),
        ("stop",),
        ("seed",),
        ("n",),
        ("logprobs",),
        ("user",),
        ("reasoning_effort",),
    ),
    "messages": (
        ("model",),
        ("max_tokens",),
        ("messages",),
        ("messages", 0),
        ("messages", 0, "role"),
        ("messages", 0, "content"),
        ("messages", 0, "content", 0),
        ("messages", 0, "content", 0, "type"),
        ("system",),
        ("stream",),
        ("tools",),
        ("tools", 0, "input_schema"),
        ("tool_choice",),
        ("temperature",),
        ("stop_sequences",),
        ("metadata",),
        ("thinking",),
    ),
    "completion": (("model",), ("prompt",), ("max_tokens",), ("stream",), ("temperature",), ("stop",), ("echo",)),
    "embeddings": (("model",), ("input",), ("input", 0), ("encoding_format",), ("dimensions",)),
    "rerank": (("model",), ("query",), ("documents",), ("documents", 0), ("top_n",), ("return_documents",)),
    "count_tokens": (("model",), ("messages",), ("system",), ("tools",)),
    "responses": (("model",), ("input",), ("instructions",), ("stream",), ("tools",), ("max_output_tokens",)),
    "ollama_chat": (("model",), ("messages",), ("messages", 0, "content"), ("stream",), ("options",), ("format",)),
    "ollama_generate": (("model",), ("prompt",), ("stream",), ("options",), ("system",), ("raw",)),
    "ollama_embed": (("model",), ("input",)),
    "ollama_embeddings": (("model",), ("prompt",)),
    "ollama_show": (("model",), ("name",), ("verbose",)),
    "dashboard_chat": (("model",), ("messages",), ("provider",), ("stream",), ("max_tokens",)),
    "upstream": (("prompt",), ("n_predict",), ("model",)),
}
STRING_FIELDS = {"chat": (("model",), ("messages", 0, "content"), ("messages", 0, "role"), ("user",)),
                 "messages": (("model",), ("messages", 0, "content"), ("system",)),
                 "dashboard_chat": (("model",), ("messages", 0, "content"), ("provider",))}  # fmt: skip


def _template(kind: str, model: str, stream: bool) -> dict[str, Any]:
    msgs = [{"role": "user", "content": "hi"}]
    if kind == "chat":
        return {"model": model, "messages": msgs, "max_tokens": 8, "stream": stream}
    if kind == "messages":
        return {"model": model, "max_tokens": 8, "messages": msgs, "stream": stream}
    if kind == "dashboard_chat":
        return {"model": model, "messages": msgs, "max_tokens": 8}
    if kind == "completion":
        return {"model": model, "prompt": "hi", "max_tokens": 8}
    if kind == "embeddings":
        return {"model": model, "input": "hi"}
    if kind == "rerank":
        return {"model": model, "query": "q", "documents": ["a", "b"]}
    if kind == "count_tokens":
        return {"model": model, "messages": msgs}
    if kind == "responses":
        return {"model": model, "input": "hi", "stream": stream}
    if kind == "ollama_chat":
        return {"model": model, "messages": msgs, "stream": stream}
    if kind == "ollama_generate":
        return {"model": model, "prompt": "hi", "stream": stream}
    if kind in ("ollama_embed", "ollama_embeddings"):
        return {"model": model, "input": "hi", "prompt": "hi"}
    if kind == "ollama_show":
        return {"model": model}
    if kind == "upstream":
        return {"prompt": "hi", "n_predict": 4}
    return {}


def set_path(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """``body`` with the value at ``path`` replaced (missing containers made on the way)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(body) if isinstance(body, list) else []
        while len(items) <= head:
            items.append({})
        items[head] = set_path(items[head], rest, value)
        return items
    out = dict(body) if isinstance(body, dict) else {}
    out[head] = set_path(out.get(head), rest, value)
    return out


@cache
def many_messages(n: int = 250_000) -> bytes:
    """A legal, 8 MB chat body: ``n`` one-character messages."""
    one = b'{"role":"user","content":"x"},'
    return b'{"model":"MODEL","max_tokens":1,"messages":[' + one * (n - 1) + one[:-1] + b"]}"


def _encode(body: Any, how: str) -> bytes:
    if how == "utf8-raw":  # lone surrogates as raw (invalid) UTF-8 bytes
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    text = json.dumps(body)
    if how == "utf16":
        return text.encode("utf-16")
    if how == "utf16-le":
        return text.encode("utf-16-le")
    if how == "utf32":
        return text.encode("utf-32")
    return text.encode()


# -- requests -----------------------------------------------------------------------------------------------
@st.composite
def requests(draw: st.DrawFn, families: tuple[str, ...] = FAMILIES, gateways: tuple[str, ...] = ("routed", "open"),
             key: str = "", routes: tuple[Route, ...] = ROUTES) -> FuzzRequest:  # fmt: skip
    if len(families) == 1:
        family = families[0]
    else:
        family = draw(st.sampled_from([f for f in families for _ in range(WEIGHTS.get(f, 1))]))
    gateway = draw(st.sampled_from(gateways))
    route = draw(st.sampled_from(routes))
    stream = draw(st.booleans())
    model = draw(_model(family, gateway, "{model}" in route.template))
    method = route.method
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body: Any = _template(route.body, model, stream) if route.body else None
    raw: bytes | None = None
    how = "ascii"
    if family == "wrong-types" and route.body:
        body = set_path(body, draw(st.sampled_from(FIELDS[route.body])), draw(WRONG))
    elif family == "random-json" and route.body:
        if draw(st.booleans()):
            body = draw(JSON)
        else:
            body = set_path(body, draw(st.sampled_from(FIELDS[route.body])), draw(JSON))
    elif family in ("surrogates", "surrogate-bytes", "unicode", "huge-strings", "crlf") and route.body:
        fields = STRING_FIELDS.get(route.body, FIELDS[route.body][:1])
        body = set_path(body, draw(st.sampled_from(fields)), model if family != "huge-strings" else draw(_huge()))
        if family == "surrogate-bytes":
            how = "utf8-raw"  # ED A0 80: not UTF-8, though json.loads(bytes) reads it (surrogatepass)
    elif family == "nesting":
        depth = draw(st.sampled_from((200, 1_000, 5_000, 100_000)))
        nest = draw(st.sampled_from(("list", "dict")))
        inner = "[" * depth + "]" * depth if nest == "list" else '{"a":' * depth + "1" + "}" * depth
        where = draw(st.sampled_from(("messages", "body", "content", "tools")))
        if where == "body":
            raw = inner.encode()
        else:
            template = json.dumps(_template(route.body or "chat", model, stream)) if route.body else '{"model": "m"}'
            field_name = "messages" if where == "content" else where
            raw = (template[:-1] + f', "{field_name}": ' + inner + "}").encode()
    elif family == "many-messages":
        raw = many_messages().replace(b"MODEL", json.dumps(model)[1:-1].encode(), 1)
    elif family == "duplicate-keys" and route.body:
        first = json.dumps(_template(route.body, draw(st.sampled_from(GOOD_MODELS[gateway])), stream))
        dup_key = draw(st.sampled_from([p[0] for p in FIELDS[route.body] if len(p) == 1]))
        dup_value = draw(st.one_of(WRONG, st.sampled_from(SURROGATES + ODD_NAMES)))
        placement = draw(st.booleans())  # before or after the real one
        pair = f"{json.dumps(dup_key)}: {json.dumps(dup_value)}"
        raw = (("{" + pair + ", " + first[1:]) if placement else (first[:-1] + ", " + pair + "}")).encode()
    elif family == "non-json":
        raw = draw(st.one_of(
            st.sampled_from((b"", b" ", b"null", b"[]", b"1", b'"s"', b"NaN", b'{"model": NaN}', b"{", b'{"a":1}x',
                             b"\xef\xbb\xbf{}", b"\xff\xfe\x00", b"model=gpt&messages=x", b"<xml/>", b"\x00" * 16)),
            st.binary(max_size=64),
        ))  # fmt: skip
    elif family == "utf16" and route.body:
        how = draw(st.sampled_from(("utf16", "utf16-le", "utf32")))
    elif family == "content-types":
        headers["Content-Type"] = draw(st.sampled_from((
            "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "",
            "application/json; charset=utf-16", "application/xml", "application/json, text/plain", "*/*",
        )))  # fmt: skip
    elif family == "methods":
        method = draw(st.sampled_from([m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS") if m != method]))
    elif family == "auth":
        headers = draw(st.sampled_from((
            {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {key}x"}, {"x-api-key": key},
            {"Authorization": f"bearer {key}"}, {"Authorization": f"Basic {key}"}, {"Authorization": "Bearer"},
            {"x-api-key": "wrong", "Authorization": f"Bearer {key}"}, {"Authorization": f"Bearer  {key}"},
            {"x-api-key": key.upper()},
        )))  # fmt: skip
    if raw is None and body is not None:
        raw = _encode(body, how)
    if raw is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    # A URL is kept under uvicorn's request-line limit: the huge names go in bodies.
    in_path = urllib.parse.quote(model[:2000].encode("utf-8", "surrogatepass"), safe="")
    path = route.template.replace("{model}", in_path)
    path = path.replace("{path}", draw(st.sampled_from(("props", "health", "completion", "slots", "v1/models",
                                                        "..%2F..%2Fetc%2Fpasswd", "metrics"))))  # fmt: skip
    if method == "GET" and family == "random-json" and draw(st.booleans()):
        path += "?" + urllib.parse.urlencode({"model": model.encode("utf-8", "surrogatepass"), "x": "1" * 10})
    streams = stream and route.body in ("chat", "messages", "responses", "ollama_chat", "ollama_generate")
    sent = raw if method != "GET" else None
    return FuzzRequest(family, gateway, method, route.template, path, headers, sent, streams)


def _model(family: str, gateway: str, in_path: bool) -> st.SearchStrategy[str]:
    names = GOOD_MODELS[gateway]
    if in_path and gateway == "routed":
        names = ("local",) * len(names) + names  # the manager's routes: mostly the managed model
    good = st.sampled_from(names)
    if family in ("surrogates", "surrogate-bytes"):
        return st.sampled_from(SURROGATES)
    if family == "crlf":
        return st.sampled_from((f"gpt\r\n{FORGED} status=200", f"x\n{FORGED}", f"\r{FORGED}", "a\u2028b\u0085c"))
    if family == "huge-names":
        return st.integers(10_000, 200_000).map(lambda n: "M" * n)
    if family == "unicode":
        return st.text(min_size=1, max_size=40)
    if family in ("valid", "auth", "utf16", "content-types", "methods"):
        return good
    return st.one_of(good, good, st.sampled_from(ODD_NAMES))


def _huge() -> st.SearchStrategy[str]:
    """100 KB to 2 MB of text, some of it outside ASCII."""
    return st.tuples(st.integers(100_000, 2_000_000), st.sampled_from(("A", "é", "😀", "\\", '"'))).map(
        lambda t: t[1] * (t[0] // len(t[1].encode()))
    )
