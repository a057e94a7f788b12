"""Configuration: a TOML file, environment variables and DSNs, merged into typed settings.

Precedence, highest first: explicit arguments / DSN, environment, file, defaults.
Reading the file or the environment happens only when :func:`load_settings`
is called, never at import.

Environment:
    CORRAL_CONFIG                 path of the TOML file (else ./corral.toml, else
                                  $XDG_CONFIG_HOME/corral/config.toml)
    CORRAL_DEFAULT_PROVIDER       name of the provider to use (e.g. "llama.cpp")
    CORRAL_<NAME>_<FIELD>         per provider; NAME sanitised ("llama.cpp" -> LLAMA_CPP),
                                  FIELD one of TYPE, BASE_URL, API_KEY, MODEL, TIMEOUT
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = [
    "PROVIDER_TYPES",
    "ProviderConfig",
    "Secret",
    "Settings",
    "env_key",
    "is_loopback",
    "load_settings",
    "parse_dsn",
    "public_url",
]

PROVIDER_TYPES = ("llamacpp", "llama-swap", "openai", "anthropic", "ollama", "embedded")

# Names people use for a provider, mapped to its type when no type is given.
_TYPE_ALIASES = {
    "llamacpp": "llamacpp",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "llama-server": "llamacpp",
    "local": "llamacpp",
    "llama-swap": "llama-swap",
    "llamaswap": "llama-swap",
    "openai": "openai",
    "anthropic": "anthropic",
    "claude": "anthropic",
    "ollama": "ollama",
    "embedded": "embedded",
}

DEFAULT_TIMEOUT = 60.0
DEFAULT_LLAMACPP_URL = "http://127.0.0.1:8080"
DEFAULT_URLS = {
    "llamacpp": DEFAULT_LLAMACPP_URL,
    "llama-swap": DEFAULT_LLAMACPP_URL,
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama": "http://127.0.0.1:11434",
}


def is_loopback(host: str) -> bool:
    """Whether a host name or address (an IPv6 one with or without brackets) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    import ipaddress  # only the apps that bind or check hosts need it: kept out of `import corral`

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_url(url: str | None) -> str | None:
    """A URL without any user:password@ part: what may be shown of a base URL."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def masked_url(url: str) -> str:
    """A URL as it may be printed: a password (or a token given as the user) masked, the user kept."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = parts.username or ""
    cred = f"{user}:****" if parts.password is not None else "****"
    return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, parts.query, parts.fragment))


class Secret:
    """A string that never shows itself in repr/str/logs; ``.get()`` reveals it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def masked(self) -> str:
        v = self._value
        return "****" if len(v) < 12 else f"{v[:3]}…{v[-2:]}"

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = masked

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True, repr=False)
class ProviderConfig:
    name: str
    type: str
    base_url: str | None = None
    api_key: Secret | None = None
    model: str | None = None
    timeout: float | None = DEFAULT_TIMEOUT  # None: no client timeout
    options: Mapping[str, Any] = field(default_factory=dict)  # type-specific extras (e.g. gguf path)

    def __repr__(self) -> str:
        return f"ProviderConfig(name={self.name!r}, {self.display()!r})"

    def display(self) -> dict[str, Any]:
        """A printable view, the secret masked."""
        out: dict[str, Any] = {"type": self.type}
        if self.base_url:
            out["base_url"] = masked_url(self.base_url)
        if self.api_key:
            out["api_key"] = self.api_key.masked()
        if self.model:
            out["model"] = self.model
        out["timeout"] = self.timeout
        out.update({k: _mask_if_secret(k, v) for k, v in self.options.items()})
        return out


@dataclass(frozen=True, slots=True)
class Settings:
    default_provider: str | None = None
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    source: str | None = None  # the file read, if any
    # sections later layers (gateway, routing) read; interpolated, so it may hold secrets: never in repr
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def provider(self, name: str) -> ProviderConfig:
        found = find_provider(self, name)
        if found is None:
            known = ", ".join(sorted(self.providers)) or "none configured"
            raise ConfigurationError(f"unknown provider {name!r} (configured: {known})")
        return found

    def display(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "default_provider": self.default_provider,
            "providers": {n: p.display() for n, p in self.providers.items()},
        }


_SECRET_KEYS = re.compile(r"(key|token|secret|password)", re.I)


def _mask_if_secret(key: str, value: Any) -> Any:
    if isinstance(value, Secret):
        return value.masked()
    if isinstance(value, str) and _SECRET_KEYS.search(key):
        return Secret(value).masked()
    if isinstance(value, str) and "://" in value and "@" in value:  # a DSN or URL with credentials
        return masked_url(value)
    return value


def env_key(name: str) -> str:
    """Provider name -> environment key fragment: "llama.cpp" -> "LLAMA_CPP"."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in env:
                return env[var]
            if default is not None:
                return default
            raise ConfigurationError(f"{where}: environment variable {var} is not set")

        return _INTERP.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def type_for_name(name: str) -> str | None:
    """The provider type a bare name implies: "llama.cpp", "LLAMA_CPP" and "llamacpp" all mean llamacpp."""
    key = env_key(name)
    for alias, ptype in _TYPE_ALIASES.items():
        if env_key(alias) == key:
            return ptype
    return None


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def parse_dsn(dsn: str, name: str | None = None) -> ProviderConfig:
    """``llamacpp://host:port``, ``llama-swap://token@host:port``, ``openai://key@host/v1``,
    ``anthropic://key@``, ``ollama://host:port``, ``embedded:///path/model.gguf``,
    ``embedded://hf://org/repo:QUANT`` (a Hugging Face model, pulled on first use).
    A ``+http``/``+https`` suffix on the scheme forces the transport; query
    parameters ``timeout`` and ``model`` are understood."""
    if dsn.lower().startswith("embedded://hf://"):
        ref, _, query_text = dsn[len("embedded://") :].partition("?")
        query = dict(parse_qsl(query_text))
        timeout_hf = _parse_timeout(query.pop("timeout"), "DSN timeout") if "timeout" in query else DEFAULT_TIMEOUT
        return ProviderConfig(name or "embedded", "embedded", None, None, query.pop("model", None), timeout_hf,
                              {"gguf": ref, **query})  # fmt: skip
    parts = urlsplit(dsn)
    scheme = parts.scheme.lower()
    transport = None
    if "+" in scheme:
        scheme, transport = scheme.split("+", 1)
        if transport not in ("http", "https"):
            raise ConfigurationError(f"DSN {_redact_dsn(dsn)!r}: unknown transport {transport!r}")
    ptype = _TYPE_ALIASES.get(scheme)
    if ptype is None:
        raise ConfigurationError(
            f"DSN {_redact_dsn(dsn)!r}: unknown scheme {parts.scheme!r} (expected one of {', '.join(PROVIDER_TYPES)})"
        )
    query = dict(parse_qsl(parts.query))
    timeout: float | None = DEFAULT_TIMEOUT if ptype != "llama-swap" else None
    if "timeout" in query:
        timeout = _parse_timeout(query.pop("timeout"), f"DSN {_redact_dsn(dsn)!r}: timeout")
    model = query.pop("model", None)
    secret = unquote(parts.username or parts.password or "") or None
    if ptype == "embedded":
        path = unquote(parts.path)
        if not path:
            raise ConfigurationError("embedded DSN needs a GGUF path: embedded:///path/to/model.gguf")
        return ProviderConfig(name or "embedded", ptype, None, None, model, timeout, {"gguf": path, **query})
    try:
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"DSN {_redact_dsn(dsn)!r}: {exc}") from None
    if not host and ptype == "anthropic":
        host = "api.anthropic.com"
    if not host and ptype == "openai":
        host = "api.openai.com"
    if not host:
        raise ConfigurationError(f"DSN {_redact_dsn(dsn)!r} has no host")
    if transport is None:
        local_kind = ptype in ("llamacpp", "llama-swap", "ollama")
        transport = "http" if local_kind or _is_loopback(host) else "https"
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    if ptype == "openai" and not path and host == "api.openai.com":
        path = "/v1"
    base_url = f"{transport}://{netloc}{path}"
    return ProviderConfig(name or scheme, ptype, base_url, Secret(secret) if secret else None, model, timeout, query)


def _redact_dsn(dsn: str) -> str:
    return re.sub(r"//[^@/]*@", "//****@", dsn)


def _parse_timeout(value: Any, where: str) -> float | None:
    if value in (None, "", "none", "None", 0, "0"):
        return None
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where} must be a number of seconds, got {value!r}") from None
    if t < 0:
        raise ConfigurationError(f"{where} must not be negative, got {value!r}")
    return t


_PROVIDER_FIELDS = ("type", "base_url", "api_key", "model", "timeout", "dsn")


def _provider_from_table(name: str, table: Mapping[str, Any], where: str) -> ProviderConfig:
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where} must be a table")
    if "dsn" in table:
        base = parse_dsn(str(table["dsn"]), name)
    else:
        ptype = table.get("type") or type_for_name(name)
        if ptype is None:
            raise ConfigurationError(f"{where}.type is required (one of {', '.join(PROVIDER_TYPES)})")
        ptype = _TYPE_ALIASES.get(str(ptype).lower(), str(ptype))
        if ptype not in PROVIDER_TYPES:
            raise ConfigurationError(
                f"{where}.type: unknown provider type {table.get('type')!r} "
                f"(expected one of {', '.join(PROVIDER_TYPES)})"
            )
        default_timeout = None if ptype == "llama-swap" else DEFAULT_TIMEOUT
        base = ProviderConfig(name, ptype, None, None, None, default_timeout)
    options = {k: v for k, v in table.items() if k not in _PROVIDER_FIELDS}
    api_key = table.get("api_key")
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigurationError(f"{where}.api_key must be a string")
    base_url = table.get("base_url")
    if base_url is not None and not isinstance(base_url, str):
        raise ConfigurationError(f"{where}.base_url must be a string")
    return replace(
        base,
        base_url=base_url.rstrip("/") if base_url else (base.base_url or DEFAULT_URLS.get(base.type)),
        api_key=Secret(api_key) if api_key else base.api_key,
        model=str(table["model"]) if "model" in table else base.model,
        timeout=_parse_timeout(table["timeout"], f"{where}.timeout") if "timeout" in table else base.timeout,
        options={**base.options, **options},
    )


def _find_config_file(env: Mapping[str, str]) -> Path | None:
    explicit = env.get("CORRAL_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"CORRAL_CONFIG points to {path}, which is not a file")
        return path
    local = Path("corral.toml")
    if local.is_file():
        return local
    xdg = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    user = Path(xdg) / "corral" / "config.toml"
    return user if user.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from a file (``path``, else found via env/default locations), or from an
    already-parsed mapping (``data``), overlaid with the environment."""
    env = os.environ if env is None else env
    source: str | None = None
    if data is None:
        file = Path(path).expanduser() if path is not None else _find_config_file(env)
        if file is not None and not file.is_file():
            raise ConfigurationError(f"config file {file} does not exist")
        data = read_toml(file) if file is not None else {}
        source = str(file) if file is not None else None
    data = _interpolate(dict(data), env, source or "config")
    tables = data.get("providers", {})
    if not isinstance(tables, Mapping):
        raise ConfigurationError("[providers] must be a table of provider tables")
    providers = {n: _provider_from_table(n, t, f"providers.{n}") for n, t in tables.items()}
    providers = _overlay_env(providers, env)
    default = env.get("CORRAL_DEFAULT_PROVIDER") or data.get("default_provider")
    if default is not None and not isinstance(default, str):
        raise ConfigurationError("default_provider must be a string")
    if default and find_provider(Settings(None, providers), default) is None:
        # A well-known name such as "llama.cpp" or "openai" needs no table of its own.
        if type_for_name(default) is None:
            known = ", ".join(sorted(providers)) or "none configured"
            raise ConfigurationError(f"default provider {default!r} is not configured (configured: {known})")
        providers[default] = _provider_from_table(default, {}, default)
    providers = {n: with_conventional_key(p, env) for n, p in providers.items()}
    return Settings(default or None, providers, source, data)


def _env_fragments(env: Mapping[str, str]) -> set[str]:
    """Sanitised provider names that have CORRAL_<NAME>_<FIELD> variables."""
    frags = set()
    for key in env:
        if not key.startswith("CORRAL_") or key.startswith("CORRAL_DEFAULT_"):
            continue
        for f in _PROVIDER_FIELDS:
            suffix = "_" + f.upper()
            if key.endswith(suffix) and len(key) > len("CORRAL_") + len(suffix):
                frags.add(key[len("CORRAL_") : -len(suffix)])
    return frags


def _overlay_env(providers: dict[str, ProviderConfig], env: Mapping[str, str]) -> dict[str, ProviderConfig]:
    out = dict(providers)
    names = {env_key(n): n for n in out}
    for frag in _env_fragments(env):
        names.setdefault(frag, frag.lower().replace("_", "."))
    for frag, name in names.items():
        fields = {f: env[f"CORRAL_{frag}_{f.upper()}"] for f in _PROVIDER_FIELDS if f"CORRAL_{frag}_{f.upper()}" in env}
        if not fields:
            continue
        where = f"CORRAL_{frag}_*"
        if name not in out:
            out[name] = _provider_from_table(name, fields, where)
            continue
        base = out[name]
        merged = _provider_from_table(name, {"type": base.type, **fields}, where)
        out[name] = replace(
            base,
            type=merged.type,
            base_url=merged.base_url if "base_url" in fields or "dsn" in fields else base.base_url,
            api_key=merged.api_key if "api_key" in fields or "dsn" in fields else base.api_key,
            model=merged.model if "model" in fields else base.model,
            timeout=merged.timeout if "timeout" in fields else base.timeout,
        )
    return out


# The variables the official SDKs read. Only sent to the official hosts: a key for api.openai.com
# must never leak to some other OpenAI-compatible server the user configured without a key.
_CONVENTIONAL_KEYS = {
    "openai": ("OPENAI_API_KEY", "api.openai.com"),
    "anthropic": ("ANTHROPIC_API_KEY", "api.anthropic.com"),
}


def with_conventional_key(config: ProviderConfig, env: Mapping[str, str]) -> ProviderConfig:
    """Fill a missing key from OPENAI_API_KEY / ANTHROPIC_API_KEY when the provider is that vendor's API."""
    found = _CONVENTIONAL_KEYS.get(config.type)
    if config.api_key or found is None:
        return config
    var, host = found
    # The parsed host must be the vendor's exactly: "api.openai.com.evil.example" or a path that
    # mentions it is another server, which must never receive the user's key.
    url = config.base_url or DEFAULT_URLS[config.type]
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if env.get(var) and (parts.hostname or "").lower() == host and parts.scheme == "https":
        return replace(config, api_key=Secret(env[var]))
    return config


def find_provider(settings: Settings, name: str) -> ProviderConfig | None:
    """Look a provider up by name, also by its sanitised env form ("llama.cpp" == "LLAMA_CPP")."""
    if name in settings.providers:
        return settings.providers[name]
    key = env_key(name)
    for n, p in settings.providers.items():
        if env_key(n) == key:
            return p
    return None
