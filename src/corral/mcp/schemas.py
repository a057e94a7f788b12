"""The tools' inputs and structured outputs. The SDK turns these pydantic models into each tool's
``inputSchema``/``outputSchema`` and validates the results against them, so they are the contract."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..types import ChatResponse

# -- inputs ------------------------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    """One message of the conversation, in OpenAI's chat format."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = Field(
        None, description="Text, or a list of parts ({type: text, text} / {type: image_url, image_url: {url}})."
    )
    tool_calls: list[dict[str, Any]] | None = Field(None, description="An assistant message's tool calls.")
    tool_call_id: str | None = Field(None, description="The call a tool message answers.")
    name: str | None = None


# -- chat ----------------------------------------------------------------------------------------------------


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    total_tokens: int


class ToolCallOut(BaseModel):
    id: str
    name: str
    arguments: str = Field(description="The JSON arguments as the model wrote them.")


class ChatResult(BaseModel):
    content: str
    reasoning: str | None = Field(None, description="Reasoning text (reasoning_content or <think> blocks).")
    tool_calls: list[ToolCallOut] = Field(default_factory=list)
    finish_reason: str
    usage: UsageOut
    model: str
    provider: str = Field(description="The provider that answered (a fallback may have).")
    parsed: Any = Field(None, description="The decoded JSON when response_format asked for structured output.")

    @classmethod
    def of(cls, r: ChatResponse) -> ChatResult:
        parsed = r.parsed.model_dump(mode="json") if isinstance(r.parsed, BaseModel) else r.parsed
        return cls(
            content=r.content,
            reasoning=r.reasoning,
            tool_calls=[ToolCallOut(id=t.id, name=t.name, arguments=t.arguments) for t in r.tool_calls],
            finish_reason=r.finish_reason,
            usage=UsageOut(
                prompt_tokens=r.usage.prompt_tokens,
                completion_tokens=r.usage.completion_tokens,
                cached_tokens=r.usage.cached_tokens,
                total_tokens=r.usage.total_tokens,
            ),
            model=r.model,
            provider=r.provider,
            parsed=parsed,
        )


class StreamResult(ChatResult):
    progress_notifications: int = Field(
        description="Progress updates sent with the text (none reach a client that gave no progressToken)."
    )


# -- models --------------------------------------------------------------------------------------------------


class ModelEntry(BaseModel):
    id: str
    provider: str
    state: Literal["loaded", "loading", "unloaded", "available"] = Field(
        description="loaded/loading/unloaded on llama.cpp and process managers (llama-swap, corral's manager, "
        "a llama-server in router mode); "
        "available for hosted APIs, which have no such notion."
    )
    capabilities: list[str]
    context_length: int | None = None
    owned_by: str = ""


class ProviderStatus(BaseModel):
    name: str
    type: str
    default: bool
    ok: bool
    error: str | None = None


class ModelsResult(BaseModel):
    models: list[ModelEntry]
    providers: list[ProviderStatus]


# -- system --------------------------------------------------------------------------------------------------


class CpuInfo(BaseModel):
    model: str
    cores: int = Field(description="Logical CPUs.")
    usable_cores: int | None = Field(None, description="CPUs this process may run on (affinity).")
    architecture: str


class MemoryInfo(BaseModel):
    total_bytes: int | None
    available_bytes: int | None
    source: str = Field(description="Where the figures came from (/proc/meminfo, sysconf, or none).")


class GpuInfo(BaseModel):
    name: str
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    driver: str | None = None


class LlamaCppInfo(BaseModel):
    """What llama-server reports about itself (``/props``)."""

    build_info: str | None = None
    system_info: str | None = None
    model_path: str | None = None
    n_ctx: int | None = None
    total_slots: int | None = None


class ProviderHealth(BaseModel):
    name: str
    type: str
    default: bool
    base_url: str | None = None
    model: str | None = None
    status: Literal["ok", "loading", "error"]
    detail: str = ""
    llama_cpp: LlamaCppInfo | None = None


class ReplicaState(BaseModel):
    """One replica of a model (``[models.<name>] provider = [...]``), as its balancer sees it."""

    name: str
    state: Literal["healthy", "ejected", "probing"]
    in_flight: int
    slots_busy: int | None = None
    slots_total: int | None = None
    requests: int = 0
    cache_hit_share: float | None = Field(None, description="Requests routed to a replica holding their prefix.")


class ReplicatedModel(BaseModel):
    model: str
    balance: str
    replicas: list[ReplicaState]


class SystemInfo(BaseModel):
    corral_version: str
    python: str
    platform: str
    cpu: CpuInfo
    memory: MemoryInfo
    gpus: list[GpuInfo]
    providers: list[ProviderHealth]
    replicated_models: list[ReplicatedModel] = Field(
        default_factory=list, description="Models served by several replicas: each replica's health and load now."
    )


# -- probes (mirror corral.probe's as_dict(); unknown extra fields are dropped) -----------------------------


class BenchRunOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float
    total_ms: float
    prompt_tps: float | None
    generation_tps: float | None
    source: str = Field(description='"timings" (llama.cpp\'s own) or "wall_clock".')
    wall_generation_tps: float | None = None
    timings: dict[str, Any] | None = None


class BenchOut(BaseModel):
    model: str | None
    provider: str
    runs: list[BenchRunOut]
    prompt_tokens: int = Field(description="Median over the runs, as are the figures below.")
    completion_tokens: int
    prompt_tps: float | None
    generation_tps: float | None
    ttft_ms: float
    total_ms: float
    source: str
    endpoint: str = ""
    requested_prompt_tokens: int = 0
    max_tokens: int = 0


class ProbeOut(BaseModel):
    name: str
    passed: bool | None = Field(description="null: the probe does not apply (the reason is in evidence).")
    status: str = ""
    evidence: str
    detail: dict[str, Any] = Field(default_factory=dict)


class ValidationOut(BaseModel):
    model: str | None
    provider: str
    endpoint: str = ""
    passed: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    probes: list[ProbeOut]
    gguf: dict[str, Any] | None = Field(None, description="GGUF metadata when the model is a local file.")
