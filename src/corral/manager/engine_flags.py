"""llama-server's command-line flags, mapped onto the xllamacpp wheel's ``CommonParams``.

The embedded engine takes the same argv as the real ``llama-server`` binary (names and short forms
as in llama.cpp's ``tools/server/README.md``), so a manager model's ``args`` or a llama-swap ``cmd``
runs on either. Parsing is exact: a flag is one of the names below or an error naming the nearest
one (argparse would read ``-md draft.gguf`` as ``-m d`` and ``-ngl`` as ``-n gl``).

The table holds, per flag: its names, what value it takes, and how it sets ``CommonParams``. The
flags that corral's router (``--models-dir``, ``--models-max``…) and Hub download (``-hf``…) handle
are parsed here too and kept as plain values for those layers. This module imports nothing heavy:
``xllamacpp`` is passed in when the params are applied, in the engine's child process.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FLAGS", "EngineArgs", "EngineFlagError", "Flag", "apply_flags", "parse_engine_args", "set_draft_model"]

Setter = Callable[[Any, Any, Any], None]  # (params, value, xllamacpp module)
_ON = ("on", "true", "1", "enabled")
_OFF = ("off", "false", "0", "disabled")


class EngineFlagError(ValueError):
    """A flag the engine does not know, or a value it cannot take; the message names both."""


@dataclass(frozen=True, slots=True)
class Flag:
    names: tuple[str, ...]
    kind: str  # "switch" (no value), "int", "float", "str", "choice", "optional" (value from choices or none)
    set: Setter | None = None  # None: a value corral itself consumes (router, Hub, address)
    choices: tuple[str, ...] = ()
    bare: str = ""  # the value a bare "optional" flag means
    key: str = ""  # where a corral-consumed value is stored in EngineArgs.extra

    @property
    def name(self) -> str:
        return max(self.names, key=len)


@dataclass(slots=True)
class EngineArgs:
    """Parsed argv: the settings in order, plus what corral consumes itself."""

    settings: list[tuple[Flag, str, Any]] = field(default_factory=list)  # (flag, name as given, value)
    extra: dict[str, Any] = field(default_factory=dict)

    def given(self, key: str) -> bool:
        return key in self.extra

    def names(self) -> list[str]:
        return [n for _, n, _ in self.settings]


def _attr(path: str, conv: Callable[[Any, Any], Any] = lambda v, x: v) -> Setter:
    """A setter for a dotted attribute path of CommonParams (``speculative.draft.n_max``)."""
    *parents, leaf = path.split(".")

    def setter(params: Any, value: Any, x: Any) -> None:
        obj = params
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, leaf, conv(value, x))

    return setter


def _const(path: str, value: Any, conv: Callable[[Any, Any], Any] = lambda v, x: v) -> Setter:
    inner = _attr(path, conv)
    return lambda p, v, x: inner(p, value, x)


def _enum(enum: str, prefix: str, table: dict[str, str] | None = None) -> Callable[[Any, Any], Any]:
    def conv(value: str, x: Any) -> Any:
        member = (table or {}).get(value, value).upper().replace("-", "_").replace("+", "_")
        return getattr(getattr(x, enum), f"{prefix}{member}")

    return conv


_KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_kv_type = _enum("ggml_type", "GGML_TYPE_")
_LOAD_MODES = ("auto", "none", "mmap", "mlock", "mmap+mlock", "dio")
_load_mode = _enum("llama_load_mode", "LLAMA_LOAD_MODE_", {"dio": "direct_io"})


def _gpu_layers(value: str, x: Any) -> int:
    if value == "auto":
        return -1
    if value == "all":
        return 999  # more layers than any model has: every layer
    return _int(value, "-ngl")


def _flash_attn(value: str, x: Any) -> Any:
    kind = "ENABLED" if value in _ON else "DISABLED" if value in _OFF else "AUTO"
    return getattr(x.llama_flash_attn_type, f"LLAMA_FLASH_ATTN_TYPE_{kind}")


def _reasoning(value: str, x: Any) -> int:
    return 1 if value in _ON else 0 if value in _OFF else -1


def _rope_scale(value: str, x: Any) -> float:
    factor = float(value)
    if factor <= 0:
        raise EngineFlagError(f"--rope-scale must be positive, got {value}")
    return 1.0 / factor


def _split_floats(value: str, x: Any) -> list[float]:
    parts = [float(v) for v in value.replace("/", ",").split(",") if v]
    return parts + [0.0] * (128 - len(parts))  # CommonParams holds a fixed-size array


def _comma_set(value: str, x: Any) -> set[str]:
    return {v.strip() for v in value.split(",") if v.strip()}


def _comma_list(value: str, x: Any) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _add_lora(scaled: bool) -> Setter:
    def setter(params: Any, value: str, x: Any) -> None:
        adapters = list(params.lora_adapters)
        for item in value.split(","):
            path, scale = item.rsplit(":", 1) if scaled else (item, "1.0")
            info = x.CommonAdapterLoraInfo()
            info.path = path
            info.scale = float(scale)
            adapters.append(info)
        params.lora_adapters = adapters  # the list is a copy: assign it back

    return setter


def set_draft_model(params: Any, value: str, x: Any) -> None:
    params.speculative.draft.mparams.path = value
    if not any(t != x.common_speculative_type.COMMON_SPECULATIVE_TYPE_NONE for t in params.speculative.types):
        params.speculative.types = [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]


def _spec_types(params: Any, value: str, x: Any) -> None:
    enum = x.common_speculative_type
    params.speculative.types = [
        getattr(enum, f"COMMON_SPECULATIVE_TYPE_{t.upper().replace('-', '_')}") for t in _comma_list(value, x)
    ]


def _read_file(path: str, x: Any) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _grammar(params: Any, value: Any, x: Any) -> None:
    """The default grammar of every answer (a request's own grammar or format replaces it)."""
    grammar = params.sampling.grammar  # the engine's own object: filled in place, not replaced
    grammar.grammar = value
    grammar.type = x.common_grammar_type.COMMON_GRAMMAR_TYPE_USER


def _template_kwargs(value: str, x: Any) -> dict[str, str]:
    import json

    data = json.loads(value)
    if not isinstance(data, dict):
        raise EngineFlagError("--chat-template-kwargs must be a JSON object")
    return {str(k): json.dumps(v) for k, v in data.items()}


def _api_keys(value: str, x: Any) -> list[str]:
    return _comma_list(value, x)


def _api_key_file(value: str, x: Any) -> list[str]:
    lines = _read_file(value, x).splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _timeout(params: Any, value: int, x: Any) -> None:
    params.timeout_read = value
    params.timeout_write = value


def _threads(path: str) -> Setter:
    return _attr(f"{path}.n_threads")


def _embeddings(params: Any, value: Any, x: Any) -> None:
    params.embedding = True
    if params.pooling_type == x.llama_pooling_type.LLAMA_POOLING_TYPE_UNSPECIFIED:
        # A chat model's own pooling is "none", which /v1/embeddings refuses: mean, unless --pooling says.
        params.pooling_type = x.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN


def _reranking(params: Any, value: Any, x: Any) -> None:
    params.embedding = True
    params.pooling_type = x.llama_pooling_type.LLAMA_POOLING_TYPE_RANK


def _slot_save_path(params: Any, value: str, x: Any) -> None:
    import os

    os.makedirs(value, exist_ok=True)
    # llama-server's own parser adds the trailing separator; the engine joins paths by concatenation.
    params.slot_save_path = os.path.join(value, "")


def _int(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise EngineFlagError(f"{flag} takes a whole number, got {value!r}") from None


def _f(names: str, kind: str, set: Setter | None = None, **kw: Any) -> Flag:
    return Flag(tuple(names.split()), kind, set, **kw)


FLAGS: tuple[Flag, ...] = (
    # -- the model, the address, the name ----------------------------------------------------------------------
    _f("-m --model", "str", _attr("model.path")),
    _f("--host", "str", key="host"),
    _f("--port", "int", key="port"),
    _f("-a --alias", "str", _attr("model_alias", _comma_set)),
    _f("--tags", "str", _attr("model_tags", _comma_set)),
    _f("-hf -hfr --hf-repo", "str", key="hf_repo"),
    _f("-hff --hf-file", "str", key="hf_file"),
    _f("-hft --hf-token", "str", key="hf_token"),
    _f("-hfd -hfrd --hf-repo-draft --spec-draft-hf", "str", key="hf_repo_draft"),
    _f("--offline", "switch", _const("offline", True)),
    # -- context, batching, threads ----------------------------------------------------------------------------
    _f("-c --ctx-size", "int", _attr("n_ctx")),
    _f("-n --predict --n-predict", "int", _attr("n_predict")),
    _f("-b --batch-size", "int", _attr("n_batch")),
    _f("-ub --ubatch-size", "int", _attr("n_ubatch")),
    _f("--keep", "int", _attr("n_keep")),
    _f("-np --parallel", "int", _attr("n_parallel")),
    _f("-cb --cont-batching", "switch", _const("cont_batching", True)),
    _f("-nocb --no-cont-batching", "switch", _const("cont_batching", False)),
    _f("-t --threads", "int", _threads("cpuparams")),
    _f("-tb --threads-batch", "int", _threads("cpuparams_batch")),
    _f("--threads-http", "int", _attr("n_threads_http")),
    _f("--swa-full", "switch", _const("swa_full", True)),
    _f("-kvu --kv-unified", "switch", _const("kv_unified", True)),
    _f("-no-kvu --no-kv-unified", "switch", _const("kv_unified", False)),
    _f("--kv-unified-per-slot", "int", _attr("kv_unified_per_slot")),
    _f("--context-shift", "switch", _const("ctx_shift", True)),
    _f("--no-context-shift", "switch", _const("ctx_shift", False)),
    # -- GPU offload and split (accepted on a CPU-only machine: reported, not refused) --------------------------
    _f("-ngl --gpu-layers --n-gpu-layers", "str", _attr("n_gpu_layers", _gpu_layers)),
    _f(
        "-sm --split-mode",
        "choice",
        _attr("split_mode", _enum("llama_split_mode", "LLAMA_SPLIT_MODE_")),
        choices=("none", "layer", "row", "tensor"),
    ),
    _f("-ts --tensor-split", "str", _attr("tensor_split", _split_floats)),
    _f("-mg --main-gpu", "int", _attr("main_gpu")),
    _f("-kvo --kv-offload", "switch", _const("no_kv_offload", False)),
    _f("-nkvo --no-kv-offload", "switch", _const("no_kv_offload", True)),
    _f("--no-host", "switch", _const("no_host", True)),
    _f("--op-offload", "switch", _const("no_op_offload", False)),
    _f("--no-op-offload", "switch", _const("no_op_offload", True)),
    _f("-fit --fit", "optional", _attr("fit_params", lambda v, x: v in _ON), choices=("on", "off"), bare="on"),
    _f("-fitc --fit-ctx", "int", _attr("fit_params_min_ctx")),
    # -- attention and the KV cache --------------------------------------------------------------------------
    _f("-fa --flash-attn", "optional", _attr("flash_attn_type", _flash_attn), choices=("on", "off", "auto"), bare="on"),
    _f("-ctk --cache-type-k", "choice", _attr("cache_type_k", _kv_type), choices=_KV_TYPES),
    _f("-ctv --cache-type-v", "choice", _attr("cache_type_v", _kv_type), choices=_KV_TYPES),
    _f("-cram --cache-ram", "int", _attr("cache_ram_mib")),
    _f("-ctxcp --ctx-checkpoints --swa-checkpoints", "int", _attr("n_ctx_checkpoints")),
    _f("--cache-prompt", "switch", _const("cache_prompt", True)),
    _f("--no-cache-prompt", "switch", _const("cache_prompt", False)),
    _f("--cache-reuse", "int", _attr("n_cache_reuse")),
    _f("--cache-idle-slots", "switch", _const("cache_idle_slots", True)),
    _f("--no-cache-idle-slots", "switch", _const("cache_idle_slots", False)),
    # -- RoPE / YaRN ------------------------------------------------------------------------------------------
    _f(
        "--rope-scaling",
        "choice",
        _attr("rope_scaling_type", _enum("llama_rope_scaling_type", "LLAMA_ROPE_SCALING_TYPE_")),
        choices=("none", "linear", "yarn"),
    ),
    _f("--rope-scale", "float", _attr("rope_freq_scale", _rope_scale)),
    _f("--rope-freq-base", "float", _attr("rope_freq_base")),
    _f("--rope-freq-scale", "float", _attr("rope_freq_scale")),
    _f("--yarn-orig-ctx", "int", _attr("yarn_orig_ctx")),
    _f("--yarn-ext-factor", "float", _attr("yarn_ext_factor")),
    _f("--yarn-attn-factor", "float", _attr("yarn_attn_factor")),
    _f("--yarn-beta-slow", "float", _attr("yarn_beta_slow")),
    _f("--yarn-beta-fast", "float", _attr("yarn_beta_fast")),
    # -- memory: mmap / mlock ---------------------------------------------------------------------------------
    _f("-lm --load-mode", "choice", _attr("load_mode", _load_mode), choices=_LOAD_MODES),
    _f("--mlock", "switch", _const("load_mode", "mmap+mlock", _load_mode)),
    _f("--no-mmap", "switch", _const("load_mode", "none", _load_mode)),
    _f("--mmap", "switch", _const("load_mode", "mmap", _load_mode)),
    _f(
        "--numa",
        "choice",
        _attr("numa", _enum("ggml_numa_strategy", "GGML_NUMA_STRATEGY_")),
        choices=("distribute", "isolate", "numactl"),
    ),
    _f("--check-tensors", "switch", _const("check_tensors", True)),
    # -- multimodal, LoRA -------------------------------------------------------------------------------------
    _f("-mm --mmproj", "str", _attr("mmproj.path")),
    _f("--no-mmproj --no-mmproj-auto", "switch", _const("no_mmproj", True)),
    _f("--mmproj-auto", "switch", _const("no_mmproj", False)),
    _f("--mmproj-offload", "switch", _const("mmproj_use_gpu", True)),
    _f("--no-mmproj-offload", "switch", _const("mmproj_use_gpu", False)),
    _f("--image-min-tokens", "int", _attr("image_min_tokens")),
    _f("--image-max-tokens", "int", _attr("image_max_tokens")),
    _f("--lora", "str", _add_lora(scaled=False)),
    _f("--lora-scaled", "str", _add_lora(scaled=True)),
    _f("--lora-init-without-apply", "switch", _const("lora_init_without_apply", True)),
    # -- speculative decoding ---------------------------------------------------------------------------------
    _f("-md --model-draft --spec-draft-model", "str", set_draft_model),
    _f("--spec-type", "str", _spec_types),
    _f("--spec-draft-n-max --draft-max --draft --draft-n", "int", _attr("speculative.draft.n_max")),
    _f("--spec-draft-n-min --draft-min --draft-n-min", "int", _attr("speculative.draft.n_min")),
    _f("--spec-draft-p-min --draft-p-min", "float", _attr("speculative.draft.p_min")),
    _f("--spec-draft-p-split --draft-p-split", "float", _attr("speculative.draft.p_split")),
    _f(
        "-ngld --gpu-layers-draft --n-gpu-layers-draft --spec-draft-ngl",
        "str",
        _attr("speculative.draft.n_gpu_layers", _gpu_layers),
    ),
    _f(
        "-ctkd --cache-type-k-draft --spec-draft-type-k",
        "choice",
        _attr("speculative.draft.cache_type_k", _kv_type),
        choices=_KV_TYPES,
    ),
    _f(
        "-ctvd --cache-type-v-draft --spec-draft-type-v",
        "choice",
        _attr("speculative.draft.cache_type_v", _kv_type),
        choices=_KV_TYPES,
    ),
    _f("-td --threads-draft --spec-draft-threads", "int", _threads("speculative.draft.cpuparams")),
    _f("-tbd --threads-batch-draft --spec-draft-threads-batch", "int", _threads("speculative.draft.cpuparams_batch")),
    # -- chat templates and reasoning -------------------------------------------------------------------------
    _f("--jinja", "switch", _const("use_jinja", True)),
    _f("--no-jinja", "switch", _const("use_jinja", False)),
    _f("--chat-template", "str", _attr("chat_template")),
    _f("--chat-template-file", "str", _attr("chat_template", _read_file)),
    _f("--chat-template-kwargs", "str", _attr("default_template_kwargs", _template_kwargs)),
    _f(
        "--reasoning-format",
        "choice",
        _attr(
            "reasoning_format",
            _enum("common_reasoning_format", "COMMON_REASONING_FORMAT_", {"deepseek-legacy": "deepseek_legacy"}),
        ),
        choices=("none", "auto", "deepseek", "deepseek-legacy"),
    ),
    _f("-rea --reasoning", "optional", _attr("enable_reasoning", _reasoning), choices=("on", "off", "auto"), bare="on"),
    _f("--reasoning-budget", "int", _attr("sampling.reasoning_budget_tokens")),
    _f("--reasoning-budget-message", "str", _attr("sampling.reasoning_budget_message")),
    _f("--skip-chat-parsing", "switch", _const("force_pure_content_parser", True)),
    _f("--prefill-assistant", "switch", _const("prefill_assistant", True)),
    _f("--no-prefill-assistant", "switch", _const("prefill_assistant", False)),
    # -- embeddings, reranking --------------------------------------------------------------------------------
    _f("--embedding --embeddings", "switch", _embeddings),
    _f("--rerank --reranking", "switch", _reranking),
    _f(
        "--pooling",
        "choice",
        _attr("pooling_type", _enum("llama_pooling_type", "LLAMA_POOLING_TYPE_")),
        choices=("none", "mean", "cls", "last", "rank"),
    ),
    _f("--embd-normalize", "int", _attr("embd_normalize")),
    # -- the HTTP server ----------------------------------------------------------------------------------------
    _f("--api-key", "str", _attr("api_keys", _api_keys)),
    _f("--api-key-file", "str", _attr("api_keys", _api_key_file)),
    _f("--metrics", "switch", _const("endpoint_metrics", True)),
    _f("--props", "switch", _const("endpoint_props", True)),
    _f("--slots", "switch", _const("endpoint_slots", True)),
    _f("--no-slots", "switch", _const("endpoint_slots", False)),
    _f("--slot-save-path", "str", _slot_save_path),
    _f("-sps --slot-prompt-similarity", "float", _attr("slot_prompt_similarity")),
    _f("--sse-ping-interval", "int", _attr("sse_ping_interval")),
    _f("-to --timeout", "int", _timeout),
    _f("--ui --webui", "switch", _const("ui", True)),
    _f("--no-ui --no-webui", "switch", _const("ui", False)),
    _f("--sleep-idle-seconds", "int", _attr("sleep_idle_seconds")),
    _f("--warmup", "switch", _const("warmup", True)),
    _f("--no-warmup", "switch", _const("warmup", False)),
    _f("-lv --verbosity --log-verbosity", "int", _attr("verbosity")),
    _f("-v --verbose --log-verbose", "switch", _const("verbosity", 5)),
    _f("--log-disable", "switch", _const("verbosity", 0)),
    # -- router mode (corral's router runs it: xllamacpp's build has llama.cpp's router disabled) ---------------
    _f("--models-dir", "str", key="models_dir"),
    _f("--models-max", "int", key="models_max"),
    _f("--models-autoload", "switch", key="models_autoload"),
    _f("--no-models-autoload", "switch", key="no_models_autoload"),
    # -- default sampling ---------------------------------------------------------------------------------------
    _f("-s --seed", "int", _attr("sampling.seed", lambda v, x: v & 0xFFFFFFFF)),
    _f("--temp --temperature", "float", _attr("sampling.temp")),
    _f("--top-k", "int", _attr("sampling.top_k")),
    _f("--top-p", "float", _attr("sampling.top_p")),
    _f("--min-p", "float", _attr("sampling.min_p")),
    _f("--typical --typical-p", "float", _attr("sampling.typ_p")),
    _f("--repeat-last-n", "int", _attr("sampling.penalty_last_n")),
    _f("--repeat-penalty", "float", _attr("sampling.penalty_repeat")),
    _f("--presence-penalty", "float", _attr("sampling.penalty_present")),
    _f("--frequency-penalty", "float", _attr("sampling.penalty_freq")),
    _f("--dry-multiplier", "float", _attr("sampling.dry_multiplier")),
    _f("--dry-base", "float", _attr("sampling.dry_base")),
    _f("--dry-allowed-length", "int", _attr("sampling.dry_allowed_length")),
    _f("--dry-penalty-last-n", "int", _attr("sampling.dry_penalty_last_n")),
    _f("--xtc-probability", "float", _attr("sampling.xtc_probability")),
    _f("--xtc-threshold", "float", _attr("sampling.xtc_threshold")),
    _f("--dynatemp-range", "float", _attr("sampling.dynatemp_range")),
    _f("--dynatemp-exp", "float", _attr("sampling.dynatemp_exponent")),
    _f("--mirostat", "int", _attr("sampling.mirostat")),
    _f("--mirostat-lr", "float", _attr("sampling.mirostat_eta")),
    _f("--mirostat-ent", "float", _attr("sampling.mirostat_tau")),
    _f("--ignore-eos", "switch", _const("sampling.ignore_eos", True)),
    _f("--grammar", "str", _grammar),
    _f("--grammar-file", "str", lambda p, v, x: _grammar(p, _read_file(v, x), x)),
)

_BY_NAME: dict[str, Flag] = {n: f for f in FLAGS for n in f.names}
assert len(_BY_NAME) == sum(len(f.names) for f in FLAGS), "a flag name is listed twice"


def known_flags() -> list[str]:
    return sorted(_BY_NAME)


def _unknown(name: str) -> EngineFlagError:
    longer = sorted((n for n in _BY_NAME if n.startswith(name) and n.startswith("--")), key=len)
    near = longer[:1] or difflib.get_close_matches(name, _BY_NAME, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return EngineFlagError(f"unknown engine flag {name}{hint}")


def _convert(flag: Flag, name: str, raw: str) -> Any:
    if flag.kind == "int":
        return _int(raw, name)
    if flag.kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise EngineFlagError(f"{name} takes a number, got {raw!r}") from None
    if flag.kind in ("choice", "optional") and raw not in flag.choices:
        raise EngineFlagError(f"{name} takes one of {', '.join(flag.choices)}; got {raw!r}")
    return raw


def parse_engine_args(argv: Sequence[str]) -> EngineArgs:
    """Parse llama-server's argv; raises EngineFlagError naming an unknown flag or a bad value."""
    out = EngineArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("-") or token == "-":
            raise EngineFlagError(f"unexpected argument {token!r} (llama-server takes no positional arguments)")
        name, eq, inline = token.partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            raise _unknown(name)
        value: Any = True
        if flag.kind == "switch":
            if eq:
                raise EngineFlagError(f"{name} takes no value")
        elif flag.kind == "optional":
            if eq:
                value = _convert(flag, name, inline)
            elif i + 1 < len(argv) and argv[i + 1] in flag.choices:
                i += 1
                value = argv[i]
            else:
                value = flag.bare
        else:
            if eq:
                raw = inline
            elif i + 1 < len(argv):
                i += 1
                raw = argv[i]
            else:
                raise EngineFlagError(f"{name} needs a value")
            value = _convert(flag, name, raw)
        if flag.set is None:
            out.extra[flag.key] = value
        else:
            out.settings.append((flag, name, value))
        i += 1
    return out


def apply_flags(params: Any, parsed: EngineArgs, x: Any) -> None:
    """Set ``CommonParams`` from parsed flags, in the order given (a later flag wins, as in llama-server)."""
    for flag, name, value in parsed.settings:
        assert flag.set is not None
        try:
            flag.set(params, value, x)
        except EngineFlagError:
            raise
        except (ValueError, TypeError, AttributeError, OSError) as exc:
            raise EngineFlagError(f"{name} {value if value is not True else ''}: {exc}".replace("  ", " ")) from None


def hardware_notes(parsed: EngineArgs, devices: Iterable[dict[str, Any]]) -> list[str]:
    """What the flags ask of hardware this machine lacks: said in the log, never refused."""
    kinds = [getattr(d.get("type"), "name", str(d.get("type"))) for d in devices]
    if any(k.endswith(("_GPU", "_IGPU")) for k in kinds):
        return []
    wants_gpu = {
        "-ngl",
        "--gpu-layers",
        "--n-gpu-layers",
        "-sm",
        "--split-mode",
        "-ts",
        "--tensor-split",
        "-mg",
        "--main-gpu",
        "-ngld",
        "--gpu-layers-draft",
        "--n-gpu-layers-draft",
        "--spec-draft-ngl",
    }
    asked = [f"{n} {v}" for f, n, v in parsed.settings if n in wants_gpu and v not in ("0", 0, "auto")]
    if not asked:
        return []
    return [f"accepted {', '.join(asked)}: no GPU device in this engine build, every layer runs on the CPU"]
