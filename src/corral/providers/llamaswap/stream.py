"""Telling llama-swap's model-loading messages apart from the model's own reasoning.

With ``sendLoadingState: true``, llama-swap answers a streamed /v1/chat/completions
for a model that is not loaded yet with SSE chunks of its own, before the real
response, carrying progress text in ``reasoning_content``
(internal/router/loading.go, ``loadingWriter.sendData``)::

    data: {"choices":[{"delta":{"reasoning_content":"llama-swap loading model: qwen"}}]}

They have exactly that shape and nothing else: no ``id``, ``object``, ``model``,
``created``, ``index`` or ``finish_reason``, which every real chunk from an
OpenAI-compatible upstream carries. They all come before the first real chunk
(the loading writer is released before the upstream's response is copied).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...events import StreamEvent
from ..openai_compat.stream import ChunkAssembler

__all__ = ["LoadingStateFilter", "loading_text"]


def loading_text(payload: Mapping[str, Any]) -> str | None:
    """The progress text if ``payload`` is one of llama-swap's loading-state chunks, else None."""
    if payload.keys() != {"choices"}:
        return None
    choices = payload["choices"]
    if not isinstance(choices, list) or len(choices) != 1:
        return None
    choice = choices[0]
    if not isinstance(choice, Mapping) or choice.keys() != {"delta"}:
        return None
    delta = choice["delta"]
    if not isinstance(delta, Mapping) or delta.keys() != {"reasoning_content"}:
        return None
    text = delta["reasoning_content"]
    return text if isinstance(text, str) else None


class LoadingStateFilter(ChunkAssembler):
    """A ChunkAssembler that drops llama-swap's loading-state chunks (kept in ``loading``), so they
    never become ReasoningDelta events or ``ChatResponse.reasoning``; real reasoning is untouched."""

    def __init__(
        self,
        provider: str,
        *,
        response_format: Mapping[str, Any] | None = None,
        output_type: Any = None,
        tools: Sequence[Mapping[str, Any]] = (),
    ):
        super().__init__(provider, response_format=response_format, output_type=output_type, tools=tools)
        self.loading: list[str] = []
        self._upstream_started = False

    def feed(self, payload: dict[str, Any]) -> list[StreamEvent]:
        if not self._upstream_started:
            text = loading_text(payload)
            if text is not None:
                self.loading.append(text)
                return []
            self._upstream_started = True
        return super().feed(payload)

    @property
    def loading_log(self) -> str:
        """What llama-swap reported while loading the model ("" if it was already loaded)."""
        return "".join(self.loading)
