"""Typed stream events, the same for every provider.

A stream yields ContentDelta / ReasoningDelta / ToolCallDelta as they arrive,
ToolCallEnd once a call's arguments are complete, and exactly one Done last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from .types import ChatResponse, ToolCall

__all__ = ["ContentDelta", "Done", "ReasoningDelta", "StreamEvent", "ToolCallDelta", "ToolCallEnd"]


@dataclass(frozen=True, slots=True)
class ContentDelta:
    text: str
    #: the tokens' log probabilities (OpenAI's ``logprobs.content`` items), when asked for
    logprobs: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments: str  # the new fragment of the JSON arguments


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    index: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class Done:
    """The end of a stream: the assembled response, with usage and finish reason."""

    response: ChatResponse


StreamEvent: TypeAlias = ContentDelta | ReasoningDelta | ToolCallDelta | ToolCallEnd | Done
