from .provider import LlamaCppProvider

__all__ = ["LlamaCppProvider"]
