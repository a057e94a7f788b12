from .provider import LlamaSwapProvider

__all__ = ["LlamaSwapProvider"]
