"""llama.cpp's /v1/rerank and /infill on the real server: results, ordering, and a precise error when
the server or the model lacks the feature (the bundled gemma has no FIM tokens)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import corral
from corral import AsyncClient, Client, UnsupportedCapability

from ..conftest import start_engine

pytestmark = pytest.mark.live

DOCS = ["Paris is the capital of France.", "Bananas are yellow.", "The Seine flows through Paris."]


@pytest.fixture(scope="module")
def rerank_server(gguf_path: Path) -> Iterator[Any]:
    engine = start_engine(gguf_path, "-c", "2048", "-np", "1", "--reranking")
    yield engine
    engine.stop()


def dsn(url: str) -> str:
    return "llamacpp://" + url.split("://", 1)[1]


def test_rerank_orders_every_document_by_score(rerank_server: Any) -> None:
    with Client(dsn(rerank_server.url)) as client:
        got = client.rerank("What is the capital of France?", DOCS)
    assert sorted(r.index for r in got.results) == [0, 1, 2]
    scores = [r.score for r in got.results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert all(r.document == DOCS[r.index] for r in got.results)
    assert got.usage.prompt_tokens > 0 and got.provider == "llamacpp"


async def test_rerank_top_n_async(rerank_server: Any) -> None:
    async with AsyncClient(dsn(rerank_server.url)) as client:
        whole = await client.rerank("capital of France", DOCS)
        top = await client.rerank("capital of France", DOCS, top_n=2)
    assert [r.index for r in top.results] == [r.index for r in whole.results[:2]]


def test_rerank_without_reranking_is_unsupported(llama_url: str) -> None:
    with Client(dsn(llama_url)) as client, pytest.raises(UnsupportedCapability) as caught:
        client.rerank("q", ["a"])
    assert "reranking" in str(caught.value) and "not enabled" in str(caught.value)


def test_rerank_goes_to_a_capability_fallback(llama_url: str, rerank_server: Any) -> None:
    config = {
        "default_provider": "local",
        "providers": {"local": {"type": "llamacpp", "base_url": llama_url},
                      "ranker": {"type": "llamacpp", "base_url": rerank_server.url}},
        "routing": {"capability_fallbacks": {"reranking": ["ranker"]}},
    }  # fmt: skip
    with Client(config=config) as client:
        got = client.rerank("capital of France", DOCS, top_n=1)
    assert got.provider == "ranker" and len(got.results) == 1


def test_infill_on_a_model_without_fim_tokens_says_so(llama_url: str) -> None:
    with Client(dsn(llama_url), max_retries=3) as client, pytest.raises(UnsupportedCapability) as caught:
        client.infill("def add(a, b):\n    ", "\n")
    message = str(caught.value)
    assert "code infill (FIM)" in message and "prefix token is missing" in message


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("q", "one string"), "documents must be a list of strings"),
        (("q", []), "at least one document"),
        (("q", ["a", 3]), "documents[1] must be a string"),
        ((7, ["a"]), "query must be a string"),
    ],
)
def test_rerank_arguments_are_checked_before_sending(args: tuple[Any, Any], needle: str) -> None:
    with Client("llamacpp://127.0.0.1:9") as client, pytest.raises(corral.ConfigurationError) as caught:
        client.rerank(*args)
    assert needle in str(caught.value)


def test_rerank_top_n_must_be_positive() -> None:
    with Client("llamacpp://127.0.0.1:9") as client, pytest.raises(corral.ConfigurationError, match="top_n"):
        client.rerank("q", ["a"], top_n=0)
