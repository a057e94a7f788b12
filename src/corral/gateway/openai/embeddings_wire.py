"""/v1/embeddings, /v1/rerank and /v1/models on the server side. No I/O."""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

from ...types import Embeddings, Reranking
from ..wire_errors import WireError
from .fields import bad, is_int, json_object, need, positive_int, typed

__all__ = [
    "anthropic_models",
    "embedding_inputs_from_openai",
    "openai_embeddings_response",
    "openai_models",
    "rerank_request_from_wire",
    "rerank_response",
]


# -- /v1/embeddings and /v1/models ---------------------------------------------------------------------------
def embedding_inputs_from_openai(body: Any) -> list[str]:
    """The texts to embed. Also checks ``encoding_format`` ('float' or 'base64': pass it on to
    openai_embeddings_response) and refuses ``dimensions``, which corral cannot pass on."""
    b = json_object(body)
    typed(b, "model", str, "a string")
    fmt = b.get("encoding_format")
    message = f"encoding_format must be 'float' or 'base64', got {fmt!r}"
    need(fmt in (None, "float", "base64"), message, "encoding_format")
    need(b.get("dimensions") is None, "dimensions is not supported by this gateway", "dimensions")
    value = b.get("input")
    items = [value] if isinstance(value, str) else value if isinstance(value, list) and value else []
    if items and all(isinstance(x, str) for x in items):
        return list(items)
    tokens = bool(items) and all(is_int(x) or isinstance(x, list) for x in items)
    need(not tokens, "input as token arrays is not supported by this gateway; send strings", "input")
    problem = "is required" if value is None else "must be a string or a non-empty array of strings"
    raise WireError(400, f"input {problem}", param="input")


def rerank_request_from_wire(body: Any) -> tuple[str, list[str], int | None, bool]:
    """A /v1/rerank body (llama.cpp's, Jina's and Cohere's shape): query, documents, top_n,
    return_documents. Documents may be strings or ``{"text": ...}`` objects."""
    b = json_object(body)
    typed(b, "model", str, "a string")
    query = b.get("query")
    need(isinstance(query, str), "query is required and must be a string", "query")
    docs = b.get("documents")
    if not isinstance(docs, list) or not docs:
        raise bad("documents is required: a non-empty array of strings", "documents")
    texts: list[str] = []
    for i, d in enumerate(docs):
        text = d.get("text") if isinstance(d, Mapping) else d
        if not isinstance(text, str):
            raise bad(f"documents[{i}] must be a string or an object with a text string", "documents")
        texts.append(text)
    flag = b.get("return_documents", False)
    need(isinstance(flag, bool), "return_documents must be a boolean", "return_documents")
    return str(query), texts, positive_int(b, "top_n"), bool(flag)


def rerank_response(r: Reranking, *, model: str, return_documents: bool) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for item in r.results:
        entry: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
        if return_documents:
            entry["document"] = {"text": item.document}
        results.append(entry)
    usage = {"prompt_tokens": r.usage.prompt_tokens, "total_tokens": r.usage.prompt_tokens}
    return {"object": "list", "model": model, "usage": usage, "results": results}


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def openai_embeddings_response(e: Embeddings, *, model: str, encoding_format: str = "float") -> dict[str, Any]:
    """The embeddings list; ``encoding_format="base64"`` (what the OpenAI SDK asks for by default)
    packs each vector as little-endian float32, base64-encoded."""
    pack: Any = _b64 if encoding_format == "base64" else list
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": pack(v)} for i, v in enumerate(e.vectors)],
        "model": model,
        "usage": {"prompt_tokens": e.usage.prompt_tokens, "total_tokens": e.usage.prompt_tokens},
    }


def openai_models(items: list[tuple[str, str]], created: int) -> dict[str, Any]:
    """The model list from (id, owned_by) pairs."""
    data = [{"id": i, "object": "model", "created": created, "owned_by": owner} for i, owner in items]
    return {"object": "list", "data": data}


def anthropic_models(ids: list[str], created: int) -> dict[str, Any]:
    """The model list as Anthropic's API gives it (what its SDK's ``models.list()`` reads)."""
    import datetime

    stamp = datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = [{"type": "model", "id": i, "display_name": i, "created_at": stamp} for i in ids]
    return {"data": data, "has_more": False, "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None}  # fmt: skip
