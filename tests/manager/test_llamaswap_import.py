"""A llama-swap config.yaml imported as [manager] models: what carries over, what is refused, what
is warned about, how it merges with corral's TOML, and one live gateway serving an imported model."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from corral.config import load_settings
from corral.errors import ConfigurationError
from corral.manager.llamaswap_import import LlamaSwapImport, load_manager_settings, merge, read_llamaswap
from corral.manager.spec import ManagerSettings, ModelSpec

REALISTIC = """
# yaml-language-server: $schema=https://example.invalid/config-schema.json
# keys can come from the environment: ${env.LS_TEST_UNSET_VAR} (a comment: not needed)
healthCheckTimeout: 300
globalTTL: 600
unloadTimeout: 8
logLevel: info
startPort: 10001

macros:
  "llama": >
    /opt/llama.cpp/llama-server-cuda
    --host 127.0.0.1 --port ${PORT}
  "models_dir": "${env.LS_TEST_MODELS}"
  "ctx": 8192
  "common": "--ctx-size ${ctx} -ngl 99"
  "short_ttl": 60

models:
  "qwen-coder":
    macros:
      "ctx": 32768
    cmd: |
      # the coder model: bigger context; ${env.LS_TEST_UNSET_VAR} in a comment is not used
      ${llama}
      --model ${models_dir}/qwen2.5-coder-7b-q4_k_m.gguf
      ${common}
      --jinja --alias ${MODEL_ID} \\
      --temp 0.2
    aliases:
      - gpt-4o-mini
      - coder
    ttl: ${short_ttl}
    env:
      - "CUDA_VISIBLE_DEVICES=0"
      - "GGML_CUDA_ENABLE_UNIFIED_MEMORY=1"
    name: "Qwen coder"
    description: "shown in the UI only"

  "gemma":
    cmd: >
      /usr/local/bin/llama-server
      -m '${models_dir}/gemma 3 4b.gguf'
      --port ${PORT} --api-key sk-local-123
      -c 4096 --threads=4
    checkEndpoint: /health

  "embed":
    proxy: "http://127.0.0.1:9001"
    cmd: llama-server --port 9001 -m ${models_dir}/nomic-embed.gguf --embeddings --pooling mean
    ttl: 0

groups:
  "chat":
    swap: true
    exclusive: true
    members: ["qwen-coder", "gemma"]
  "always":
    swap: false
    exclusive: false
    persistent: true
    members: ["embed"]
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_model(tmp_path: Path, body: str) -> LlamaSwapImport:
    return read_llamaswap(write(tmp_path, f"models:\n  m:\n{body}"))


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("LS_TEST_MODELS", str(d))
    return d


def test_realistic_config(tmp_path: Path, models_dir: Path) -> None:
    for f in ("qwen2.5-coder-7b-q4_k_m.gguf", "gemma 3 4b.gguf", "nomic-embed.gguf"):
        (models_dir / f).write_bytes(b"GGUF")
    got = read_llamaswap(write(tmp_path, REALISTIC))
    assert got.models == {
        "qwen-coder": ModelSpec(
            name="qwen-coder",
            gguf=models_dir / "qwen2.5-coder-7b-q4_k_m.gguf",
            # model macro ctx=32768 overrides the global one inside ${common}; comment line gone;
            # the backslash continuation joined; ${MODEL_ID} expanded
            args=("--ctx-size", "32768", "-ngl", "99", "--jinja", "--alias", "qwen-coder", "--temp", "0.2"),
            ttl=60.0,
            aliases=("gpt-4o-mini", "coder"),
            engine=(
                "env",
                "CUDA_VISIBLE_DEVICES=0",
                "GGML_CUDA_ENABLE_UNIFIED_MEMORY=1",
                "/opt/llama.cpp/llama-server-cuda",
            ),
        ),
        "gemma": ModelSpec(
            name="gemma",
            gguf=models_dir / "gemma 3 4b.gguf",  # a quoted path with spaces
            args=("-c", "4096", "--threads=4"),  # --port ${PORT} and --api-key dropped
            ttl=600.0,  # globalTTL
            engine=("/usr/local/bin/llama-server",),
        ),
        "embed": ModelSpec(
            name="embed",
            gguf=models_dir / "nomic-embed.gguf",
            args=("--embeddings", "--pooling", "mean"),  # a fixed port with a matching local proxy is fine
            ttl=0.0,
            engine=("llama-server",),
        ),
    }
    assert got.load_timeout == 300.0
    assert got.stop_grace == 8.0
    # one of the exclusive "chat" group at a time, plus the persistent "always" group
    assert got.max_loaded == 2
    assert len(got.warnings) == 1 and "groups: corral has one pool, max_loaded = 2" in got.warnings[0]


@pytest.mark.parametrize(
    ("cmd", "args"),
    [
        ("llama-server -m a.gguf --port ${PORT} --host 0.0.0.0 -c 2048", ("-c", "2048")),
        ("llama-server --port=${PORT} --host=::1 --model=a.gguf --api-key-file /k -np 2", ("-np", "2")),
        ("llama-server --api-key secret -m a.gguf --jinja", ("--jinja",)),
    ],
)
def test_reserved_args_are_stripped(tmp_path: Path, cmd: str, args: tuple[str, ...]) -> None:
    got = one_model(tmp_path, f"    cmd: {cmd}\n")
    assert got.models["m"].args == args
    assert got.models["m"].gguf == Path("a.gguf")
    assert all("not found" in w for w in got.warnings)  # a.gguf does not exist: said, not fatal


def test_routes_moving_args_dropped_with_a_warning(tmp_path: Path) -> None:
    got = one_model(tmp_path, "    cmd: llama-server -m a.gguf --api-prefix /llm -c 512\n")
    assert got.models["m"].args == ("-c", "512")
    assert any("'m': cmd --api-prefix dropped" in w for w in got.warnings)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("    cmd: vllm serve Qwen/Qwen2.5-7B --port ${PORT}\n", "cmd runs 'vllm', not llama-server"),
        (
            "    cmd: docker run --rm -p ${PORT}:8080 ghcr.io/ggml-org/llama.cpp:server -m /m.gguf\n"
            "    cmdStop: docker stop m\n",
            "cmd runs 'docker', not llama-server",
        ),
        ("    cmd: llama-server -mu https://example.com/m.gguf --port ${PORT}\n", "downloads the model (-mu)"),
        ("    cmd: llama-server --port ${PORT} -c 512\n", "no -m/--model GGUF path"),
        ("    cmd: llama-server -m a.gguf --port ${PORT}\n    proxy: http://192.168.1.5:8080\n", "proxy"),
        ("    cmd: llama-server -m a.gguf --port 8080\n    proxy: http://127.0.0.1:9999\n", "proxy"),
        ("    cmd: llama-server -m a.gguf --port ${PORT} --alias m-${PORT}\n", "${PORT} outside --port"),
    ],
)
def test_models_corral_cannot_run_are_skipped_with_a_warning(tmp_path: Path, body: str, reason: str) -> None:
    text = f"models:\n  ok:\n    cmd: llama-server -m ok.gguf --port ${{PORT}}\n  m:\n{body}"
    got = read_llamaswap(write(tmp_path, text))
    assert set(got.models) == {"ok"}
    [warning] = [w for w in got.warnings if "'m'" in w]
    assert warning.startswith("config.yaml: model 'm' skipped: ") and reason in warning


def test_hf_downloads_become_hub_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_CACHE_DIR", str(tmp_path / "cache"))
    text = (
        "models:\n"
        "  gemma:\n    cmd: llama-server -hf ggml-org/gemma-3-1b-it-GGUF:Q4_K_M --port ${PORT} -c 512\n"
        "  file:\n    cmd: llama-server --hf-repo org/r-GGUF --hf-file r-Q8_0.gguf --port ${PORT}\n"
        "  spec:\n    cmd: llama-server -hf org/big-GGUF -hfd org/small-GGUF:Q4_0 --port ${PORT}\n"
    )
    got = read_llamaswap(write(tmp_path, text))
    assert got.models["gemma"].source == "hf://ggml-org/gemma-3-1b-it-GGUF:Q4_K_M"
    assert got.models["gemma"].args == ("-c", "512")
    assert got.models["file"].source == "hf://org/r-GGUF:r-Q8_0.gguf"
    assert (got.models["spec"].source, got.models["spec"].draft) == ("hf://org/big-GGUF", "hf://org/small-GGUF:Q4_0")
    assert not [w for w in got.warnings if "not found" in w]  # pulled on first use, not missing


def test_unhonoured_keys_are_warned_about_and_the_model_imported(tmp_path: Path) -> None:
    body = """    cmd: llama-server -m a.gguf --port ${PORT}
    cmdStop: kill ${PID}
    checkEndpoint: none
    useModelName: qwen/qwen
    unlisted: true
    concurrencyLimit: 4
    filters:
      stripParams: "temperature"
      setParamsByID:
        "${MODEL_ID}:high": {reasoning_effort: high}
    env: ["LLAMA_ARG_API_KEY=leak", "LLAMA_ARG_THREADS=4"]
    bogus: 1
apiKeys: ["sk-1"]
hooks:
  on_startup:
    preload: ["m"]
peers:
  remote: {proxy: "http://10.0.0.2", models: [x]}
"""
    got = read_llamaswap(write(tmp_path, "models:\n  m:\n" + body))
    assert got.models["m"].engine == ("env", "LLAMA_ARG_THREADS=4", "llama-server")  # the key env is dropped
    assert got.models["m"].concurrency == 4 and got.models["m"].queue == 0  # beyond 4: 429, as llama-swap does
    text = "\n".join(got.warnings)
    assert "concurrencyLimit" not in text
    for key in ("cmdStop", "checkEndpoint", "useModelName", "unlisted", "filters",
                "env LLAMA_ARG_API_KEY dropped", "unknown key 'bogus'", "apiKeys not imported",
                "hooks not imported", "peers not imported"):  # fmt: skip
        assert key in text, key


def test_matrix_router_leaves_max_loaded_alone(tmp_path: Path) -> None:
    text = """models:
  a: {cmd: "llama-server -m a.gguf"}
routing:
  router:
    use: matrix
    settings:
      matrix:
        sets: {all: "a"}
"""
    got = read_llamaswap(write(tmp_path, text))
    assert got.max_loaded is None
    assert any("matrix router is not supported" in w for w in got.warnings)


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        ("", 1),  # llama-swap's default: one model at a time
        ("  g: {swap: false, members: [a, b, c]}\n", 3),  # all three run together
        ("  g: {swap: false, members: [a, b]}\n", 2),  # plus c alone in the default group, exclusive
        ("  g1: {swap: false, exclusive: true, members: [a, b]}\n  g2: {swap: true, members: [c, d]}\n", 2),
        ("  g1: {swap: false, exclusive: false, members: [a, b]}\n  g2: {members: [c, d]}\n", 3),
        # a|b, c, and d in the default group
        ("  g1: {swap: true, exclusive: false, members: [a, b]}\n  g2: {exclusive: false, members: [c]}\n", 3),
        ("  g: {swap: false, members: [a, b, gone]}\n", 2),  # a member that was not imported does not count
    ],
)
def test_groups_become_max_loaded(tmp_path: Path, groups: str, expected: int) -> None:
    models = "".join(f"  {m}: {{cmd: 'llama-server -m {m}.gguf'}}\n" for m in "abcd")
    section = "routing:\n  router:\n    settings:\n      groups:\n" + textwrap.indent(groups, "      ")
    legacy = f"groups:\n{groups}" if groups else ""
    for text in (legacy, section if groups else ""):
        got = read_llamaswap(write(tmp_path, f"models:\n{models}{text}"))
        assert got.max_loaded == expected, text


def test_macro_rules(tmp_path: Path) -> None:
    text = """macros:
  a: "x"
  b: "${a}-y"      # uses an earlier macro
  on: true
models:
  m:
    cmd: "llama-server -m ${b}.gguf --flag ${on}"
    ttl: "${n}"
    macros: {n: 30}
"""
    got = read_llamaswap(write(tmp_path, text))
    assert got.models["m"].gguf == Path("x-y.gguf")
    assert got.models["m"].args == ("--flag", "true")  # booleans print as llama-swap (Go) prints them
    assert got.models["m"].ttl == 30.0  # a value that is exactly ${n} keeps the macro's type


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  m:\n    cmd: llama-server -m ${nope}.gguf\n", "models.m.cmd uses an unknown macro ${nope}"),
        ("models:\n  m:\n    cmd: llama-server -m ${env.LS_TEST_UNSET_VAR}\n", "LS_TEST_UNSET_VAR is not set"),
        ('models:\n  m:\n    cmd: "llama-server -m \'a.gguf"\n', "cannot be split into arguments"),
        ("models:\n  m:\n    cmd: llama-server -m\n", "-m needs a value"),
        ("models:\n  m:\n    cmd: llama-server -m a.gguf\n    env: [NOEQUALS]\n", "is not NAME=value"),
        ("models:\n  m:\n    cmd: llama-server -m a.gguf\n    ttl: -5\n", "models.m.ttl must be a number"),
        ("macros:\n  PORT: 1\nmodels:\n  m: {cmd: llama-server -m a.gguf}\n", "'PORT' is not a valid macro"),
        ("logLevel: info\n", "not a llama-swap config (no `models` mapping)"),
        ("models:\n  m:\n    cmd: [llama-server\n", "is not valid YAML"),
        ("models: {m: {cmd: ''}}\n", "models.m.cmd must be a command line"),
    ],
)
def test_bad_configs_are_errors_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as e:
        read_llamaswap(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read llama-swap config .*absent\.yaml"):
        read_llamaswap(tmp_path / "absent.yaml")


# -- merging with [manager] ------------------------------------------------------------------------------------


def imported(**models: ModelSpec) -> LlamaSwapImport:
    return LlamaSwapImport(models, max_loaded=3, load_timeout=200.0, stop_grace=None)


def test_merge_toml_settings_win_and_duplicates_are_errors(tmp_path: Path) -> None:
    settings = load_settings(data={"manager": {"max_loaded": 1, "models": {"mine": {"gguf": "/m.gguf"}}}})
    base = ManagerSettings.from_settings(settings)
    merged = merge(base, imported(ls=ModelSpec("ls", Path("/l.gguf"), aliases=("x",))), settings)
    assert set(merged.models) == {"mine", "ls"}
    assert merged.max_loaded == 1  # written in [manager]: wins
    assert merged.load_timeout == 200.0  # not written there: llama-swap's healthCheckTimeout
    with pytest.raises(
        ConfigurationError, match=r"'mine' is defined both in \[manager\.models\] and in the llama-swap"
    ):
        merge(base, imported(mine=ModelSpec("mine", Path("/l.gguf"))), settings)
    clash = load_settings(data={"manager": {"models": {"mine": {"gguf": "/m.gguf", "aliases": ["x"]}}}})
    with pytest.raises(ConfigurationError, match="'x' is used by two models"):
        merge(
            ManagerSettings.from_settings(clash), imported(ls=ModelSpec("ls", Path("/l.gguf"), aliases=("x",))), clash
        )


def test_merge_imported_beats_scanned(gguf_path: Path, tmp_path: Path) -> None:
    d = tmp_path / "scan"
    d.mkdir()
    for stem in ("gemma", "coder", "other"):
        try:
            os.link(gguf_path, d / f"{stem}.gguf")
        except OSError:
            shutil.copyfile(gguf_path, d / f"{stem}.gguf")
    yaml_path = write(
        tmp_path, f"models:\n  gemma:\n    cmd: llama-server -m {gguf_path} -c 256\n    aliases: [coder]\n"
    )
    settings = load_settings(data={"manager": {"models_dirs": [str(d)]}})
    merged, warnings = load_manager_settings(settings, yaml_path)
    assert set(merged.models) == {"gemma", "other"}  # scanned gemma and coder give way
    assert merged.models["gemma"].args == ("-c", "256")
    assert merged.max_loaded == 1 and warnings == ()


def test_serve_option_hands_the_manager_to_the_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from corral.cli import app

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: served.update(app=asgi, **kw))
    path = write(tmp_path, "models:\n  m:\n    cmd: llama-server -m a.gguf\n    cmdStop: kill ${PID}\n")
    config = write(tmp_path, f'[manager]\nstate_dir = "{tmp_path}"\n', "corral.toml")
    result = CliRunner().invoke(app, ["serve", "--config", str(config), "--llama-swap-config", str(path)])
    assert result.exit_code == 0, result.output
    manager = served["app"].state.gateway.manager
    assert manager is not None and set(manager.settings.models) == {"m"}
    assert "warning: config.yaml: model 'm': cmdStop ignored" in result.stderr
    bad = write(tmp_path, "models: [", "bad.yaml")
    result = CliRunner().invoke(app, ["serve", "--config", str(config), "--llama-swap-config", str(bad)])
    assert result.exit_code == 1 and f"{bad} is not valid YAML" in result.stderr


# -- live: an imported model served by the gateway -------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.live
def test_live_imported_model_answers_by_name_and_alias(gguf_path: Path, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from corral.gateway import create_app

    engine = f"{shlex.quote(sys.executable)} -m corral.manager.engine_child"
    text = f"""healthCheckTimeout: 120
models:
  tiny:
    cmd: |
      {engine}
      -m {shlex.quote(str(gguf_path))} -c 1024 --port ${{PORT}}
    aliases: [gpt-4o-mini]
    env: ["CORRAL_LS_IMPORT_TEST=yes"]
"""
    settings = load_settings(data={"manager": {"state_dir": str(tmp_path / "state")}})
    manager, warnings = load_manager_settings(settings, write(tmp_path, text))
    assert warnings == ()
    assert manager.models["tiny"].engine == ("env", "CORRAL_LS_IMPORT_TEST=yes", *shlex.split(engine))
    with TestClient(create_app(settings, None, manager), base_url="http://127.0.0.1") as client:
        for name in ("tiny", "gpt-4o-mini"):
            body = {"model": name, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4}
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] is not None
        running = client.get("/running").json()["running"]
        assert [(m["model"], m["state"]) for m in running] == [("tiny", "ready")]
        pid = running[0]["pid"]
        with open(f"/proc/{pid}/environ", "rb") as fh:  # env(1) handed the variable to the engine it exec'd
            assert b"CORRAL_LS_IMPORT_TEST=yes" in fh.read().split(b"\0")
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            assert b"corral.manager.engine_child" in fh.read()
    deadline = time.monotonic() + 10  # the lifespan stopped it: gone, not a zombie
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
