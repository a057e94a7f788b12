"""corral.config: TOML file, ${ENV} interpolation, CORRAL_* overrides, DSNs, and secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral
from corral import ConfigurationError
from corral.config import PROVIDER_TYPES, ProviderConfig, Secret, env_key, load_settings, parse_dsn
from corral.registry import resolve

KEY = "sk-live-abcdefghijklmnopqrstuvwxyz"

DOCUMENTED = """\
default_provider = "local"

[providers.local]
type = "llamacpp"
base_url = "http://127.0.0.1:8080"
api_key = "${LLAMA_API_KEY}"
timeout = 60
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path):
    return write(tmp_path / "corral.toml", DOCUMENTED)


def test_documented_file_with_env_interpolation(config_file):
    s = load_settings(config_file, env={"LLAMA_API_KEY": KEY})
    assert s.default_provider == "local"
    assert s.source == str(config_file)
    p = s.provider("local")
    assert p.type == "llamacpp"
    assert p.base_url == "http://127.0.0.1:8080"
    assert p.api_key is not None and p.api_key.get() == KEY
    assert p.timeout == 60.0


def test_missing_env_variable_is_named(config_file):
    with pytest.raises(ConfigurationError, match="LLAMA_API_KEY") as info:
        load_settings(config_file, env={})
    assert "not set" in str(info.value)


def test_env_default_syntax(tmp_path):
    f = write(
        tmp_path / "c.toml",
        '[providers.local]\ntype = "llamacpp"\nbase_url = "${LLAMA_URL:-http://127.0.0.1:8081}"\n'
        'model = "${MODEL:-}"\n',
    )
    s = load_settings(f, env={})
    assert s.provider("local").base_url == "http://127.0.0.1:8081"
    s2 = load_settings(f, env={"LLAMA_URL": "http://10.0.0.2:9000", "MODEL": "qwen"})
    assert s2.provider("local").base_url == "http://10.0.0.2:9000"
    assert s2.provider("local").model == "qwen"


def test_interpolation_inside_longer_string(tmp_path):
    f = write(tmp_path / "c.toml", '[providers.local]\ntype = "llamacpp"\nbase_url = "http://${HOST}:${PORT}/"\n')
    assert (
        load_settings(f, env={"HOST": "10.1.1.1", "PORT": "8090"}).provider("local").base_url == "http://10.1.1.1:8090"
    )


def test_env_overrides_select_llama_cpp(config_file):
    env = {
        "LLAMA_API_KEY": KEY,
        "CORRAL_DEFAULT_PROVIDER": "llama.cpp",
        "CORRAL_LLAMA_CPP_BASE_URL": "http://127.0.0.1:9999",
    }
    s = load_settings(config_file, env=env)
    assert s.default_provider == "llama.cpp"
    p = s.provider(s.default_provider)
    assert p.type == "llamacpp"
    assert p.base_url == "http://127.0.0.1:9999"
    assert s.provider("LLAMA_CPP") is p


def test_env_overrides_a_file_provider_field(config_file):
    s = load_settings(config_file, env={"LLAMA_API_KEY": KEY, "CORRAL_LOCAL_TIMEOUT": "5", "CORRAL_LOCAL_MODEL": "m1"})
    p = s.provider("local")
    assert (p.timeout, p.model, p.base_url) == (5.0, "m1", "http://127.0.0.1:8080")
    assert p.api_key is not None and p.api_key.get() == KEY


def test_client_and_resolve_pick_env_provider(monkeypatch, isolated_env, config_file):
    monkeypatch.setenv("LLAMA_API_KEY", KEY)
    monkeypatch.setenv("CORRAL_DEFAULT_PROVIDER", "llama.cpp")
    monkeypatch.setenv("CORRAL_LLAMA_CPP_BASE_URL", "http://127.0.0.1:9999")
    # Explicit file.
    cfg = corral.Client(config=config_file).config
    assert (cfg.type, cfg.base_url) == ("llamacpp", "http://127.0.0.1:9999")
    # No file at all (cwd and XDG are empty): the environment alone is enough.
    resolved = resolve()
    assert (resolved.name, resolved.type, resolved.base_url) == ("llama.cpp", "llamacpp", "http://127.0.0.1:9999")
    client = corral.Client()
    assert client.config == resolved
    assert client.provider.endpoint == "http://127.0.0.1:9999"


def test_corral_toml_in_cwd_is_found(monkeypatch, isolated_env):
    write(isolated_env / "corral.toml", DOCUMENTED)
    monkeypatch.setenv("LLAMA_API_KEY", KEY)
    cfg = resolve()
    assert (cfg.name, cfg.base_url) == ("local", "http://127.0.0.1:8080")


def test_nothing_configured_is_zero_setup():
    assert resolve().type == "zero-setup"


def test_corral_config_pointing_nowhere_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CORRAL_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match=r"missing\.toml"):
        resolve()


@pytest.mark.parametrize(
    ("name", "key"), [("llama.cpp", "LLAMA_CPP"), ("my-server", "MY_SERVER"), ("openai", "OPENAI")]
)
def test_env_key(name, key):
    assert env_key(name) == key


# -- secrets -------------------------------------------------------------------------------------------


def test_secret_never_shows_itself():
    s = Secret(KEY)
    assert KEY not in str(s)
    assert KEY not in repr(s)
    assert KEY not in f"{s}"
    assert s.get() == KEY
    assert str(Secret("short")) == "****"


def test_settings_display_and_provider_repr_mask_the_key(config_file):
    s = load_settings(config_file, env={"LLAMA_API_KEY": KEY})
    assert KEY not in str(s.display())
    assert s.display()["providers"]["local"]["api_key"] != KEY
    p = s.provider("local")
    assert KEY not in repr(p)
    assert KEY not in str(p)
    assert KEY not in str(p.display())


def test_display_masks_secret_named_options(tmp_path):
    f = write(tmp_path / "c.toml", f'[providers.swap]\ntype = "llama-swap"\nadmin_token = "{KEY}"\n')
    s = load_settings(f, env={})
    assert KEY not in str(s.display())


def test_provider_repr_masks_secret_named_options(tmp_path):
    f = write(tmp_path / "c.toml", f'[providers.swap]\ntype = "llama-swap"\nadmin_token = "{KEY}"\n')
    p = load_settings(f, env={}).provider("swap")
    assert KEY not in repr(p)


def test_settings_repr_does_not_leak_the_key(config_file):
    s = load_settings(config_file, env={"LLAMA_API_KEY": KEY})
    assert KEY not in repr(s)


def test_dsn_key_is_masked_in_repr_and_in_errors():
    assert KEY not in repr(parse_dsn(f"openai://{KEY}@api.example.com/v1"))
    with pytest.raises(ConfigurationError) as info:
        parse_dsn(f"nosuch://{KEY}@host")
    assert KEY not in str(info.value)


# -- DSNs ----------------------------------------------------------------------------------------------


def test_dsn_llamacpp():
    p = parse_dsn("llamacpp://host:8080")
    assert (p.type, p.base_url, p.api_key, p.timeout) == ("llamacpp", "http://host:8080", None, 60.0)


def test_dsn_llama_swap_has_no_timeout_and_a_key():
    p = parse_dsn("llama-swap://tok@host:8080")
    assert p.type == "llama-swap"
    assert p.base_url == "http://host:8080"
    assert p.timeout is None
    assert p.api_key is not None and p.api_key.get() == "tok"


def test_dsn_openai_remote_is_https():
    p = parse_dsn("openai://key@api.example.com/v1")
    assert (p.type, p.base_url) == ("openai", "https://api.example.com/v1")
    assert p.api_key is not None and p.api_key.get() == "key"


def test_dsn_anthropic_default_host():
    p = parse_dsn("anthropic://key@")
    assert (p.type, p.base_url) == ("anthropic", "https://api.anthropic.com")
    assert p.api_key is not None and p.api_key.get() == "key"


def test_dsn_embedded_gguf_path():
    p = parse_dsn("embedded:///path/m.gguf")
    assert p.type == "embedded"
    assert p.options["gguf"] == "/path/m.gguf"
    assert p.base_url is None


def test_dsn_query_parameters():
    p = parse_dsn("llamacpp://127.0.0.1:8080?timeout=5&model=qwen")
    assert (p.timeout, p.model) == (5.0, "qwen")


def test_dsn_forced_transport():
    assert parse_dsn("openai+http://key@gateway.lan:4000/v1").base_url == "http://gateway.lan:4000/v1"


def test_dsn_unknown_scheme():
    with pytest.raises(ConfigurationError, match="unknown scheme"):
        parse_dsn("mysql://host:3306")


def test_dsn_through_client_and_config_table(tmp_path):
    assert corral.Client("llamacpp://127.0.0.1:8081").config.base_url == "http://127.0.0.1:8081"
    f = write(tmp_path / "c.toml", '[providers.remote]\ndsn = "openai://k@api.example.com/v1"\nmodel = "gpt"\n')
    p = load_settings(f, env={}).provider("remote")
    assert (p.name, p.type, p.base_url, p.model) == ("remote", "openai", "https://api.example.com/v1", "gpt")


# -- invalid files -------------------------------------------------------------------------------------


def test_invalid_toml_names_the_file(tmp_path):
    f = write(tmp_path / "broken.toml", "[providers.local\ntype = \n")
    with pytest.raises(ConfigurationError) as info:
        load_settings(f, env={})
    assert str(f) in str(info.value)
    assert "TOML" in str(info.value)


def test_unknown_type_lists_valid_types(tmp_path):
    f = write(tmp_path / "c.toml", '[providers.x]\ntype = "mystery"\n')
    with pytest.raises(ConfigurationError) as info:
        load_settings(f, env={})
    msg = str(info.value)
    assert "mystery" in msg
    assert "providers.x" in msg
    for t in PROVIDER_TYPES:
        assert t in msg


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_default_provider_not_configured(tmp_path):
    f = write(tmp_path / "c.toml", 'default_provider = "ghost"\n')
    with pytest.raises(ConfigurationError, match="ghost"):
        load_settings(f, env={})


def test_bad_timeout(tmp_path):
    f = write(tmp_path / "c.toml", '[providers.local]\ntype = "llamacpp"\ntimeout = "soon"\n')
    with pytest.raises(ConfigurationError, match="timeout"):
        load_settings(f, env={})


def test_provider_config_is_frozen():
    p = ProviderConfig("x", "llamacpp")
    with pytest.raises(AttributeError):
        p.base_url = "http://elsewhere"  # type: ignore[misc]


def test_official_hosts_read_the_sdk_key_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-abcdefghijkl")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-abcdefghijkl")
    from corral.registry import resolve

    assert resolve(provider="openai").api_key.get() == "sk-openai-abcdefghijkl"
    assert resolve("anthropic://api.anthropic.com").api_key.get() == "sk-ant-abcdefghijkl"
    # Never to another host: that key belongs to OpenAI, not to whatever server was configured.
    assert resolve("openai://vllm.internal:8000/v1").api_key is None
    assert resolve(provider="openai", base_url="http://127.0.0.1:8000/v1").api_key is None
    # An explicit key wins.
    assert resolve(provider="openai", api_key="sk-mine").api_key.get() == "sk-mine"
