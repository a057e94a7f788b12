from .provider import OllamaProvider

__all__ = ["OllamaProvider"]
