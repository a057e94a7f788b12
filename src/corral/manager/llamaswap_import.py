"""A llama-swap ``config.yaml`` read as corral ``[manager]`` models (``corral serve --llama-swap-config``).

Each ``models.<name>`` becomes a :class:`ModelSpec`: ``cmd`` is expanded (``${env.X}``, then
macros, as llama-swap does), split like a shell would, and its program becomes the model's
``engine`` when it is llama-server (or corral's embedded engine); ``-m/--model`` becomes ``gguf``;
``--host``, ``--port`` and ``--api-key`` are dropped because corral picks the child's address and key;
every other argument is kept. ``ttl`` (or ``globalTTL``), ``aliases`` and ``env`` carry over,
``concurrencyLimit`` becomes ``concurrency`` (with no queue: beyond it, 429 at once, as llama-swap answers),
``healthCheckTimeout`` becomes ``load_timeout`` and ``unloadTimeout`` ``stop_grace``.

What corral cannot honour is never silently dropped. Three outcomes, per key:

- ConfigurationError: the file itself is wrong (not YAML, no ``models``, an unknown macro, an
  unset ``${env.X}``, an unsplittable ``cmd``, a malformed ``env`` entry);
- the model is skipped, with a warning naming it and the key: ``cmd`` that is not llama-server
  (vllm, docker, …), ``--model-url``/``--docker-repo`` downloads, no ``-m`` or ``-hf``, ``${PORT}`` used anywhere but
  ``--port``, a ``proxy`` to a host other than this one;
- a warning, and the rest of the model is imported: ``cmdStop`` (corral stops with SIGTERM, then
  SIGKILL), ``checkEndpoint`` other than /health, ``filters``, ``useModelName``, ``unlisted``,
  per-model ``unloadTimeout``; and at the top: ``apiKeys`` (set
  ``[gateway] api_keys``), ``hooks``, ``peers``, ``profiles``, ``selectors``, a ``matrix``
  router. Display-only keys (``name``, ``description``, ``metadata``, ``capabilities``, logging,
  UI) are ignored quietly.

Groups: corral has one pool of ``max_loaded`` children and unloads the least recently used
beyond it, whatever its group. ``max_loaded`` is set to the most models llama-swap's groups can
have loaded at once, so nothing that ran together under llama-swap is swapped under corral.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import ConfigurationError
from .spec import ManagerSettings, ModelSpec, model_source

__all__ = ["LlamaSwapImport", "load_manager_settings", "merge", "read_llamaswap"]

_ENV = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
_MACRO = re.compile(r"\$\{([A-Za-z0-9_-]+)\}")
_MACRO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_PORT = "${PORT}"
# corral owns the child's address and key: these are dropped, with their value.
_OWNED = {"--host", "--port", "--api-key", "--api-key-file"}
# These would move the routes corral talks to (health, chat): dropped with a warning.
_MOVES_ROUTES = {"--path", "--api-prefix"}
_DOWNLOADS = {"-mu", "--model-url", "-dr", "--docker-repo"}
# Hugging Face downloads become corral hf:// references (pulled into corral's cache on first use).
_HF_REPO = {"-hf", "-hfr", "--hf-repo"}
_HF_FILE = {"-hff", "--hf-file"}
_HF_DRAFT = {"-hfd", "-hfrd", "--hf-repo-draft", "--spec-draft-hf"}
_TAKES_VALUE = _OWNED | _MOVES_ROUTES | _DOWNLOADS | _HF_REPO | _HF_FILE | _HF_DRAFT | {"-m", "--model"}
_OWNED_ENV = {"LLAMA_ARG_HOST", "LLAMA_ARG_PORT", "LLAMA_ARG_API_KEY", "LLAMA_ARG_API_KEY_FILE"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_QUIET_MODEL_KEYS = {"name", "description", "metadata", "capabilities", "timeouts", "compat", "sendLoadingState"}
_QUIET_TOP_KEYS = {
    "logLevel", "logTimeFormat", "logToStdout", "logRequests", "metricsMaxInMemory", "captureBuffer",
    "store", "ui", "performance", "startPort", "sendLoadingState", "includeAliasesInList", "upstream",
}  # fmt: skip
_UNSUPPORTED_TOP = {
    "apiKeys": "the gateway's keys are [gateway] api_keys in corral's config",
    "hooks": "models load on first request (or POST /models/{name}/load)",
    "peers": "remote servers are [providers] in corral's config",
    "profiles": "not supported",
    "selectors": "not supported",
}


class _Skip(Exception):
    """This model cannot be run by corral; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class LlamaSwapImport:
    models: dict[str, ModelSpec]
    max_loaded: int | None = None  # None: the config implies nothing (a matrix router)
    load_timeout: float | None = None
    stop_grace: float | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def read_llamaswap(path: str | os.PathLike[str]) -> LlamaSwapImport:
    """The models of a llama-swap config file, with warnings for what corral does not honour."""
    p = Path(path).expanduser()
    try:
        import yaml
    except ImportError:
        raise ConfigurationError("reading a llama-swap config needs PyYAML: pip install 'corral[manager]'") from None
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigurationError(f"cannot read llama-swap config {p}: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=_yaml12_loader(yaml))  # a SafeLoader subclass: safe
    except yaml.YAMLError as e:
        raise ConfigurationError(f"{p} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise ConfigurationError(f"{p}: not a llama-swap config (no `models` mapping)")
    for model in data["models"].values():
        if isinstance(model, dict) and isinstance(model.get("cmd"), str):
            model["cmd"] = _strip_comments(model["cmd"])  # a ${...} in a comment line is not used
    # llama-swap substitutes ${env.X} in the text, but only where it is not a comment; substituting in
    # the parsed values does the same without having to escape the value for YAML.
    return _Reader(p, _expand_env(data, p)).read()


class _Reader:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.warnings: list[str] = []
        self.drafts: dict[str, str] = {}  # model name -> hf:// draft model (-hfd)

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.path.name}: {message}")

    def read(self) -> LlamaSwapImport:
        data = self.data
        macros = _macros(data.get("macros"), f"{self.path}: macros")
        global_ttl = _seconds(data.get("globalTTL", 0), f"{self.path}: globalTTL")
        models: dict[str, ModelSpec] = {}
        for name, raw in data["models"].items():
            name = str(name)
            if not isinstance(raw, dict):
                raise ConfigurationError(f"{self.path}: models.{name} must be a mapping")
            own = _macros(raw.get("macros"), f"{self.path}: models.{name}.macros")
            scope = {"MODEL_ID": name, **macros, **own}  # model macros override globals
            body = {k: _substitute(v, scope) for k, v in raw.items() if k != "macros"}
            _no_unknown_macros(body, f"{self.path}: models.{name}")
            try:
                models[name] = self.model(name, body, global_ttl)
            except _Skip as e:
                self.warn(f"model {name!r} skipped: {e}")
        for key, why in _UNSUPPORTED_TOP.items():
            if data.get(key):
                self.warn(f"{key} not imported: {why}")
        known = {"models", "macros", "globalTTL", "healthCheckTimeout", "unloadTimeout", "groups", "matrix", "routing"}
        for key in data:
            if key not in known | _QUIET_TOP_KEYS | set(_UNSUPPORTED_TOP):
                self.warn(f"unknown key {key!r} ignored")
        load_timeout = stop_grace = None
        if "healthCheckTimeout" in data:  # llama-swap raises anything below 15 s to 15 s
            load_timeout = max(15.0, _seconds(data["healthCheckTimeout"], f"{self.path}: healthCheckTimeout"))
        if data.get("unloadTimeout"):  # 0 means llama-swap's default
            stop_grace = _seconds(data["unloadTimeout"], f"{self.path}: unloadTimeout")
        max_loaded = self.max_loaded(set(models))
        return LlamaSwapImport(models, max_loaded, load_timeout, stop_grace, tuple(self.warnings))

    # -- one model -------------------------------------------------------------------------------------------
    def model(self, name: str, body: dict[str, Any], global_ttl: float) -> ModelSpec:
        where = f"{self.path}: models.{name}"
        cmd = body.get("cmd")
        if not isinstance(cmd, str) or not cmd.strip():
            raise ConfigurationError(f"{where}.cmd must be a command line")
        argv = _split(cmd, where)
        engine, rest = _engine(argv)
        if engine is None:
            raise _Skip(f"cmd runs {Path(argv[0]).name!r}, not llama-server; corral only runs llama-server")
        fixed_port, gguf, args = self.args(name, rest)
        env = self.env(name, body.get("env"), where)
        if gguf is None:
            gguf = env.pop("LLAMA_ARG_MODEL", None)
        if gguf is None:
            raise _Skip("cmd has no -m/--model GGUF path (nor -hf)")
        self.check_proxy(body.get("proxy"), fixed_port)
        if env:  # env(1) sets them and execs the engine: ModelSpec has no environment of its own
            engine = ("env", *(f"{k}={v}" for k, v in env.items()), *engine)
        ttl = body.get("ttl", -1)
        ttl_s = global_ttl if ttl == -1 else _seconds(ttl, f"{where}.ttl")
        aliases = body.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigurationError(f"{where}.aliases must be a list of names")
        self.unhonoured(name, body)
        path, source = model_source(gguf)
        if source is None and not path.is_file():
            self.warn(f"model {name!r}: GGUF {gguf} not found (the model will fail to start)")
        limit = body.get("concurrencyLimit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ConfigurationError(f"{where}.concurrencyLimit must be a non-negative integer, got {limit!r}")
        return ModelSpec(name, path, tuple(args), ttl_s, tuple(aliases), engine, source=source,
                         draft=self.drafts.get(name), concurrency=limit or None)  # fmt: skip

    def args(self, name: str, argv: list[str]) -> tuple[str | None, str | None, list[str]]:
        """(the fixed --port if any, the -m path, the arguments corral keeps)."""
        kept: list[str] = []
        port = gguf = hf_repo = hf_file = None
        i = 0
        while i < len(argv):
            flag, eq, inline = argv[i].partition("=")
            takes_value = flag in _TAKES_VALUE
            value = inline if eq else (argv[i + 1] if takes_value and i + 1 < len(argv) else None)
            step = 1 if eq or not takes_value else 2
            if not flag.startswith("-") or not takes_value:
                if _PORT in argv[i]:
                    raise _Skip(f"cmd uses ${{PORT}} outside --port ({argv[i]!r}); corral picks the port")
                kept.append(argv[i])
            elif value is None:
                raise ConfigurationError(f"{self.path}: models.{name}.cmd: {flag} needs a value")
            elif flag in _DOWNLOADS:
                raise _Skip(f"cmd downloads the model ({flag}); corral runs local GGUF files: use -m or -hf")
            elif flag in _HF_REPO:
                hf_repo = value
            elif flag in _HF_FILE:
                hf_file = value
            elif flag in _HF_DRAFT:
                self.drafts[name] = "hf://" + value
            elif flag in ("-m", "--model"):
                gguf = value
            elif flag == "--port":
                port = value
            elif flag in _MOVES_ROUTES:
                self.warn(f"model {name!r}: cmd {flag} dropped (corral talks to the server's default routes)")
            i += step
        if gguf is None and hf_repo is not None:
            repo = hf_repo.split(":", 1)[0] if hf_file else hf_repo
            gguf = f"hf://{repo}:{hf_file}" if hf_file else f"hf://{repo}"
        return port, gguf, kept

    def env(self, name: str, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, list):
            raise ConfigurationError(f"{where}.env must be a list of NAME=value strings")
        out: dict[str, str] = {}
        for item in value:
            key, eq, val = str(item).partition("=")
            if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ConfigurationError(f"{where}.env: {item!r} is not NAME=value")
            if _PORT in val:
                raise _Skip(f"env {key} uses ${{PORT}}; corral picks the port")
            if key in _OWNED_ENV:
                self.warn(f"model {name!r}: env {key} dropped (corral picks the child's address and key)")
                continue
            out[key] = val
        return out

    def check_proxy(self, proxy: Any, fixed_port: str | None) -> None:
        """corral proxies to the child it starts; a proxy elsewhere means a server corral does not run."""
        if proxy is None:
            return
        parts = urlsplit(str(proxy))
        hostport = parts.netloc.rpartition("@")[2]
        tail = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport  # [::1]:8080
        port = tail.rpartition(":")[2] if ":" in tail else None
        if parts.hostname not in _LOOPBACK or port not in (None, _PORT, fixed_port):
            raise _Skip(f"proxy {proxy} is not the server its cmd starts; corral only proxies to its own children")

    def unhonoured(self, name: str, body: Mapping[str, Any]) -> None:
        notes = {
            "cmdStop": "corral stops the server with SIGTERM, then SIGKILL",
            "filters": "corral does not rewrite requests (setParamsByID names are not aliases here)",
            "useModelName": "the request's model name is passed as is",
            "unlisted": "every model is listed in /v1/models",
            "unloadTimeout": "one stop_grace for every model (top-level unloadTimeout)",
        }
        for key, why in notes.items():
            if body.get(key):
                self.warn(f"model {name!r}: {key} ignored ({why})")
        check = body.get("checkEndpoint")
        if check not in (None, "", "/health"):
            self.warn(f"model {name!r}: checkEndpoint {check!r} ignored (corral waits for /health)")
        handled = {"cmd", "proxy", "env", "ttl", "aliases", "checkEndpoint", "concurrencyLimit", *notes}
        for key in body:
            if key not in handled | _QUIET_MODEL_KEYS:
                self.warn(f"model {name!r}: unknown key {key!r} ignored")

    # -- groups ----------------------------------------------------------------------------------------------
    def max_loaded(self, imported: set[str]) -> int | None:
        data = self.data
        routing = _table(data, "routing")
        router = _table(routing, "router")
        settings = _table(router, "settings")
        if data.get("matrix") or router.get("use") == "matrix":
            self.warn("the matrix router is not supported: set [manager] max_loaded (default 1)")
            return None
        if routing.get("scheduler"):
            self.warn("routing.scheduler ignored: corral serves waiting requests in arrival order")
        groups = data.get("groups") or settings.get("groups") or {}
        if not isinstance(groups, dict):
            raise ConfigurationError(f"{self.path}: groups must be a mapping")
        if not groups:
            return 1  # llama-swap's default: one model at a time
        together, exclusive, grouped = 0, 0, set()
        for gname, g in groups.items():
            if not isinstance(g, dict) or not isinstance(g.get("members", []), list):
                raise ConfigurationError(f"{self.path}: groups.{gname} must have a members list")
            members = [str(m) for m in g.get("members", [])]
            grouped.update(members)
            alive = [m for m in members if m in imported]
            size = (1 if g.get("swap", True) else len(alive)) if alive else 0
            # An exclusive group unloads the others when it loads (except persistent ones), so only one
            # exclusive group runs at a time; non-exclusive and persistent groups add up.
            if g.get("exclusive", True) and not g.get("persistent", False):
                exclusive = max(exclusive, size)
            else:
                together += size
        if imported - grouped:  # llama-swap's default group: swap, exclusive
            exclusive = max(exclusive, 1)
        n = max(1, together + exclusive)
        self.warn(
            f"groups: corral has one pool, max_loaded = {n} (the most models these groups run at once); "
            "beyond it the least recently used model is unloaded, whatever its group"
        )
        return n


# -- merging into [manager] ------------------------------------------------------------------------------------
def merge(base: ManagerSettings, imported: LlamaSwapImport, settings: Settings | None) -> ManagerSettings:
    """[manager] plus the imported models.

    A name in both [manager.models] and the llama-swap file is an error (which one was meant is
    unknowable); a model found by scanning models_dirs gives way to an imported one of that name or
    alias, as it gives way to [manager.models]. A setting written in [manager] wins over the
    llama-swap value.
    """
    table = (settings.raw.get("manager") if settings else None) or {}
    explicit = set(table.get("models") or {}) if isinstance(table, Mapping) else set()
    clash = sorted(explicit & set(imported.models))
    if clash:
        raise ConfigurationError(
            f"model {clash[0]!r} is defined both in [manager.models] and in the llama-swap config: remove one"
        )
    taken = {n for s in imported.models.values() for n in (s.name, *s.aliases)}
    models = {k: v for k, v in base.models.items() if k in explicit or k not in taken}
    models.update(imported.models)
    changes: dict[str, Any] = {"models": models}
    for key in ("max_loaded", "load_timeout", "stop_grace"):
        value = getattr(imported, key)
        if value is not None and key not in table:
            changes[key] = value
    merged = replace(base, **changes)
    merged.names()  # an alias used twice fails now, at startup, not on the first request
    return merged


def load_manager_settings(settings: Settings, path: str | os.PathLike[str]) -> tuple[ManagerSettings, tuple[str, ...]]:
    """What ``corral serve --llama-swap-config`` hands to ``create_app``: [manager] (with its
    models_dirs scanned, as create_app would) merged with the llama-swap file; and the warnings."""
    base = ManagerSettings.from_settings(settings)
    if base.models_dirs:
        from .scan import scan_dirs

        base = ManagerSettings.from_settings(settings, discovered=scan_dirs(base.models_dirs))
    imported = read_llamaswap(path)
    return merge(base, imported, settings), imported.warnings


# -- helpers -----------------------------------------------------------------------------------------------------
def _yaml12_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, with YAML 1.2 booleans as llama-swap's Go parser has them: only true/false.
    YAML 1.1 would read a macro named ``on``, or a value ``no``, as a boolean."""

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        pass

    bool_tag = "tag:yaml.org,2002:bool"
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    return Loader


def _expand_env(value: Any, path: Path) -> Any:
    def env(m: re.Match[str]) -> str:
        if m[1] not in os.environ:
            raise ConfigurationError(f"{path}: ${{env.{m[1]}}} is used but the environment variable {m[1]} is not set")
        return os.environ[m[1]]

    if isinstance(value, dict):
        return {k: _expand_env(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path) for v in value]
    return _ENV.sub(env, value) if isinstance(value, str) else value


def _strip_comments(cmd: str) -> str:
    return "\n".join(ln for ln in cmd.splitlines() if not ln.strip().startswith("#"))


def _macros(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a mapping")
    out: dict[str, Any] = {}
    for name, v in value.items():
        name = str(name)
        if not _MACRO_NAME.match(name) or name in ("PORT", "PID", "MODEL_ID"):
            raise ConfigurationError(f"{where}: {name!r} is not a valid macro name (or is reserved)")
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigurationError(f"{where}.{name} must be a string, number or boolean")
        out[name] = v
    return out


def _substitute(value: Any, macros: Mapping[str, Any]) -> Any:
    """llama-swap's order: macros are replaced last-declared first, so one may use those before it.
    A value that is exactly ``${name}`` takes the macro's type (``ttl: ${ttl}`` stays a number)."""
    if isinstance(value, dict):
        return {k: _substitute(v, macros) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, macros) for v in value]
    if not isinstance(value, str):
        return value
    result: Any = value
    for name, macro in reversed(list(macros.items())):
        if not isinstance(result, str):
            break
        slug = f"${{{name}}}"
        result = macro if result == slug else result.replace(slug, _text(macro))
    return result


def _no_unknown_macros(value: Any, where: str) -> None:
    """An unresolved ${name} is a typo llama-swap refuses too; ${PORT} is corral's, ${PID} cmdStop's."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("cmdStop", "metadata", "filters"):
                _no_unknown_macros(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            _no_unknown_macros(v, where)
    elif isinstance(value, str):
        unknown = [m for m in _MACRO.findall(value) if m != "PORT"]
        if unknown:
            raise ConfigurationError(f"{where} uses an unknown macro ${{{unknown[0]}}}")


def _table(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _text(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)  # as Go prints them


def _split(cmd: str, where: str) -> list[str]:
    # llama-swap drops comment lines and joins lines ending in a backslash, then splits like sh.
    lines = [ln.rstrip().removesuffix("\\") for ln in _strip_comments(cmd).splitlines()]
    text = " ".join(lines)
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise ConfigurationError(f"{where}.cmd cannot be split into arguments: {e}") from None
    if not argv:
        raise ConfigurationError(f"{where}.cmd is empty")
    return argv


def _engine(argv: list[str]) -> tuple[tuple[str, ...] | None, list[str]]:
    """(argv prefix, the rest) when the program is llama-server (any build: llama-server-cuda…)
    or corral's embedded engine; (None, argv) for any other server."""
    prog = Path(argv[0]).name.lower().removesuffix(".exe")
    if prog.startswith("llama-server"):
        return (argv[0],), argv[1:]
    if prog.startswith("python") and argv[1:3] == ["-m", "corral.manager.engine_child"]:
        return tuple(argv[:3]), argv[3:]
    return None, argv


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        value = float(value)  # a macro expanded inside a longer string leaves text
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{where} must be a number of seconds (>= 0)")
    return float(value)
