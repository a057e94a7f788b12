"""corral serve: an OpenAI- and Anthropic-compatible HTTP gateway over corral's providers.
See README.md in this folder for how a request flows."""

from .app import create_app

__all__ = ["create_app"]
