"""POST /v1/rerank through corral serve, on the real llama.cpp server started with --reranking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import start_engine
from .conftest import RunningGateway, gateway_config

pytestmark = pytest.mark.live

DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "The Seine flows through Paris."]


@pytest.fixture(scope="module")
def gateway(gguf_path: Path, llama_url: str) -> Iterator[RunningGateway]:
    ranker = start_engine(gguf_path, "-c", "2048", "-np", "1", "--reranking")
    gw = RunningGateway(
        gateway_config(
            {
                "ranker": {"type": "llamacpp", "base_url": ranker.url},
                "plain": {"type": "llamacpp", "base_url": llama_url},
            },
            models={"reranker": {"provider": "ranker"}, "plain": {"provider": "plain"}},
        )
    )
    yield gw
    gw.stop()
    ranker.stop()


def test_rerank_answers_in_the_llamacpp_shape(gateway: RunningGateway) -> None:
    body = {"model": "reranker", "query": "capital of France", "documents": DOCS, "top_n": 2, "return_documents": True}
    r = httpx.post(f"{gateway.url}/v1/rerank", json=body, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "list" and data["model"] == "reranker" and data["usage"]["prompt_tokens"] > 0
    assert len(data["results"]) == 2
    first, second = data["results"]
    assert first["relevance_score"] >= second["relevance_score"]
    assert first["document"]["text"] == DOCS[first["index"]]


def test_documents_as_objects(gateway: RunningGateway) -> None:
    body = {"model": "reranker", "query": "fruit", "documents": [{"text": d} for d in DOCS]}
    r = httpx.post(f"{gateway.url}/v1/rerank", json=body, timeout=60)
    assert r.status_code == 200 and sorted(x["index"] for x in r.json()["results"]) == [0, 1, 2]
    assert "document" not in r.json()["results"][0]


def test_a_provider_that_cannot_rerank_is_named(gateway: RunningGateway) -> None:
    body = {"model": "plain", "query": "q", "documents": ["a"]}
    r = httpx.post(f"{gateway.url}/v1/rerank", json=body, timeout=60)
    assert r.status_code == 400
    assert "'plain'" in r.json()["error"]["message"] and "reranking" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"documents": ["a"]}, "query", "query is required"),
        ({"query": "q"}, "documents", "documents is required"),
        ({"query": "q", "documents": ["a", 2]}, "documents", "documents[1]"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n", "top_n must be a positive integer"),
        ({"query": "q", "documents": ["a"], "return_documents": "yes"}, "return_documents", "boolean"),
    ],
)
def test_bad_rerank_bodies_name_the_field(
    gateway: RunningGateway, body: dict[str, Any], param: str, needle: str
) -> None:
    r = httpx.post(f"{gateway.url}/v1/rerank", json={"model": "reranker", **body}, timeout=30)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == param and needle in err["message"]
