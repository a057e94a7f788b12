"""The dashboard: its page, the state it shows (providers' health, managed models and their memory,
the request log) and the try-it chat, on the real llama.cpp server and on fake managed children."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import GATEWAY_KEY, RunningGateway, gateway_config

FAKE = str(Path(__file__).parent.parent / "manager" / "fake_llama_server.py")
AUTH = {"authorization": f"Bearer {GATEWAY_KEY}"}
PROVIDER_KEY = "sk-provider-secret-0123456789"


@pytest.fixture(scope="module")
def dash(llama_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Keys on; `local` is the real llama.cpp server, `down` a closed port with a key and a URL
    password, `tiny` an embedded engine that has not been started."""
    tmp = tmp_path_factory.mktemp("dash")
    gguf = tmp / "m.gguf"
    gguf.write_bytes(b"GGUF")
    providers = {
        "local": {"type": "llamacpp", "base_url": llama_url},
        "down": {"type": "openai", "base_url": "http://user:hunter2-password@127.0.0.1:9/v1", "api_key": PROVIDER_KEY},
        "tiny": {"type": "embedded", "gguf": str(gguf)},
    }
    fake = {"gguf": str(gguf), "engine": [sys.executable, FAKE, "--mode", "ok"]}
    gw = RunningGateway(
        gateway_config(
            providers,
            gateway={"api_keys": [GATEWAY_KEY]},
            models={"local-model": {"provider": "local", "aliases": ["gpt-4o-mini"]}},
            manager={"state_dir": str(tmp), "stop_grace": 2, "models": {"fake": fake}},
        )
    )
    yield gw
    gw.stop()


def events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")]


def test_the_page_is_served_and_holds_no_data(dash: RunningGateway) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    home = httpx.get(dash.url + "/", headers=browser, follow_redirects=False)
    assert home.status_code in (302, 307) and home.headers["location"] == "/dashboard"
    page = httpx.get(dash.url + "/dashboard")  # no key needed: the page only calls the API
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "/dashboard/api/state" in page.text and "local" not in page.text.split("<script>")[0]


def test_state_needs_the_key(dash: RunningGateway) -> None:
    r = httpx.get(dash.url + "/dashboard/api/state")
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]


def test_state_shows_providers_health_without_secrets_or_starting_the_engine(dash: RunningGateway) -> None:
    r = httpx.get(dash.url + "/dashboard/api/state", headers=AUTH, timeout=30)
    assert r.status_code == 200
    state = r.json()
    providers = {p["name"]: p for p in state["providers"]}
    assert providers["local"]["status"] == "ok" and providers["local"]["default"] is True
    assert providers["down"]["status"] == "error" and "127.0.0.1:9" in providers["down"]["detail"]
    assert providers["down"]["endpoint"] == "http://127.0.0.1:9/v1"
    assert providers["tiny"]["status"] == "idle"  # looking does not start an engine
    assert not dash.app.state.gateway.client("tiny").started
    assert PROVIDER_KEY not in r.text and "hunter2" not in r.text and GATEWAY_KEY not in r.text
    assert {"local-model", "gpt-4o-mini", "fake"} <= set(state["models"])
    route = {"name": "local-model", "provider": "local", "upstream": None, "aliases": ["gpt-4o-mini"]}
    assert state["routes"] == [route]


def test_requests_appear_in_the_log_without_content(dash: RunningGateway) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "secret words 42"}], "max_tokens": 4}
    assert httpx.post(dash.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60).status_code == 200
    bad = {**body, "temperature": 7}
    assert httpx.post(dash.url + "/v1/chat/completions", json=bad, headers=AUTH, timeout=60).status_code == 400
    r = httpx.get(dash.url + "/dashboard/api/state", headers=AUTH, timeout=30)
    recent = r.json()["requests"]["recent"]
    assert recent[0]["status"] == 400 and recent[0]["model"] == "gpt-4o-mini"  # newest first
    ok = recent[1]
    assert (ok["route"], ok["provider"], ok["status"]) == ("/v1/chat/completions", "local", 200)
    assert ok["prompt_tokens"] > 0 and 0 < ok["completion_tokens"] <= 4 and ok["latency_ms"] > 0
    assert "secret words" not in r.text
    assert r.json()["requests"]["failed"] >= 1


def test_managed_models_show_state_pid_and_memory(dash: RunningGateway) -> None:
    def fake_row() -> dict[str, Any]:
        rows = httpx.get(dash.url + "/dashboard/api/state", headers=AUTH, timeout=30).json()["managed"]
        return next(m for m in rows if m["model"] == "fake")

    assert fake_row()["state"] == "stopped" and fake_row()["status"] == "unloaded"
    assert httpx.post(dash.url + "/models/fake/load", headers=AUTH, timeout=30).status_code == 200
    row = fake_row()
    assert row["state"] == "ready" and row["pid"] > 0 and row["rss_mb"] > 1 and row["inflight"] == 0
    # The lifecycle record corral models, MCP and /api/ps show, the same for every kind of manager.
    assert row["status"] == "loaded" and row["source"] == "manager" and row["memory"] > 1_000_000
    assert httpx.post(dash.url + "/api/models/unload/fake", headers=AUTH, timeout=30).status_code == 200
    assert fake_row()["state"] == "stopped" and fake_row()["status"] == "unloaded"


def test_try_it_chat_streams_from_the_chosen_provider(dash: RunningGateway) -> None:
    body = {"provider": "local", "messages": [{"role": "user", "content": "Name a river."}], "max_tokens": 8,
            "temperature": 0}  # fmt: skip
    r = httpx.post(dash.url + "/dashboard/api/chat", json=body, headers=AUTH, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r)
    assert got[-1]["type"] == "done" and got[-1]["provider"] == "local"
    assert got[-1]["completion_tokens"] > 0 and got[-1]["finish_reason"] in ("stop", "length")
    assert "".join(e["text"] for e in got if e["type"] == "content").strip()


def test_try_it_chat_routes_by_model_name(dash: RunningGateway) -> None:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    got = events(httpx.post(dash.url + "/dashboard/api/chat", json=body, headers=AUTH, timeout=60))
    assert [e["text"] for e in got if e["type"] == "content"] == ["fake answer"]
    assert got[-1]["type"] == "done" and got[-1]["provider"] == "fake"


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        ({"provider": "nope", "messages": [{"role": "user", "content": "x"}]}, {}, 400, "provider must be"),
        ({"provider": "local", "messages": [{"role": "robot", "content": "x"}]}, {}, 400, "messages[0].role"),
        ({"provider": "local", "messages": []}, {}, 400, "messages"),
        ({"provider": "local", "messages": [{"role": "user", "content": "x"}]}, {"content-type": "text/plain"}, 415,
         "application/json"),
    ],
)  # fmt: skip
def test_try_it_chat_bad_input(
    dash: RunningGateway, body: dict[str, Any], headers: dict[str, str], status: int, needle: str
) -> None:
    r = httpx.post(dash.url + "/dashboard/api/chat", content=json.dumps(body),
                   headers={**AUTH, "content-type": "application/json", **headers}, timeout=30)  # fmt: skip
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]


def test_try_it_chat_reports_a_provider_that_is_down(dash: RunningGateway) -> None:
    body = {"provider": "down", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4}
    r = httpx.post(dash.url + "/dashboard/api/chat", json=body, headers=AUTH, timeout=60)
    assert r.status_code >= 500 and "127.0.0.1:9" in r.json()["error"]["message"]
    assert PROVIDER_KEY not in r.text and "hunter2" not in r.text
