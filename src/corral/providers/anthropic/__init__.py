"""Anthropic's Messages API (https://api.anthropic.com) over plain HTTP."""

from .provider import AnthropicProvider

__all__ = ["AnthropicProvider"]
