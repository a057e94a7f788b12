from .provider import OpenAICompatProvider

__all__ = ["OpenAICompatProvider"]
