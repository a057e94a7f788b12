"""corral: one Python interface to local llama.cpp and to cloud LLMs, switchable by configuration.

    from corral import Client
    client = Client()                       # configured default, else zero-setup local model
    print(client.chat("Hello!").content)

Importing corral does no I/O and reads no environment; httpx and the engine load on first use.
"""

from __future__ import annotations

from .async_client import AsyncClient
from .capabilities import Capability
from .client import Client
from .config import ProviderConfig, Settings, load_settings, parse_dsn
from .errors import (
    Authentication,
    BadRequest,
    ConfigurationError,
    ConnectionFailed,
    ContextLengthExceeded,
    CorralError,
    ModelLoading,
    ModelNotFound,
    ProviderError,
    RateLimited,
    RequestTimeout,
    ResponseError,
    ServerError,
    ServerUnreachable,
    StructuredOutputError,
    UnsupportedCapability,
)
from .events import ContentDelta, Done, ReasoningDelta, StreamEvent, ToolCallDelta, ToolCallEnd
from .types import (
    ChatResponse,
    Completion,
    Embeddings,
    GeneratedImage,
    Health,
    ImagePart,
    Message,
    ModelInfo,
    Reranking,
    RerankResult,
    RunningModel,
    SlotInfo,
    TextPart,
    Timings,
    ToolCall,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Authentication",
    "BadRequest",
    "Capability",
    "ChatResponse",
    "Client",
    "Completion",
    "ConfigurationError",
    "ConnectionFailed",
    "ContentDelta",
    "ContextLengthExceeded",
    "CorralError",
    "Done",
    "Embeddings",
    "GeneratedImage",
    "Health",
    "ImagePart",
    "Message",
    "ModelInfo",
    "ModelLoading",
    "ModelNotFound",
    "ProviderConfig",
    "ProviderError",
    "RateLimited",
    "ReasoningDelta",
    "RequestTimeout",
    "RerankResult",
    "Reranking",
    "ResponseError",
    "RunningModel",
    "ServerError",
    "ServerUnreachable",
    "Settings",
    "SlotInfo",
    "StreamEvent",
    "StructuredOutputError",
    "TextPart",
    "Timings",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "UnsupportedCapability",
    "Usage",
    "__version__",
    "load_settings",
    "parse_dsn",
]
