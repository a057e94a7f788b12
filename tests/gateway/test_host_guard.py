"""DNS-rebinding protection: a keyless gateway on loopback answers only requests that name a
loopback host (or an allowed one), and no foreign browser origin; with keys the checks step aside."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import GATEWAY_KEY, RunningGateway, gateway_config

BODY = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
# Nothing listens on port 9: a request that gets past the guard fails upstream (502), not 421/403.
UPSTREAM = {"up": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "k", "max_retries": 0}}


@pytest.fixture(scope="module")
def keyless() -> Any:
    gw = RunningGateway(gateway_config(UPSTREAM, gateway={"allowed_hosts": ["corral.internal"]}))
    yield gw
    gw.stop()


@pytest.mark.parametrize("host", ["127.0.0.1:4000", "localhost", "LOCALHOST:1", "[::1]:4000", "corral.internal:8"])
def test_loopback_and_allowed_hosts_pass(keyless: RunningGateway, host: str) -> None:
    r = httpx.get(f"{keyless.url}/health", headers={"host": host})
    assert r.status_code == 200


@pytest.mark.parametrize("host", ["evil.example:4000", "evil.example", "10.0.0.5:4000", "[2001:db8::1]:80"])
def test_a_foreign_host_is_refused_with_421(keyless: RunningGateway, host: str) -> None:
    r = httpx.post(f"{keyless.url}/v1/chat/completions", json=BODY, headers={"host": host})
    assert r.status_code == 421
    assert "DNS-rebinding" in r.json()["error"]["message"] and host in r.json()["error"]["message"]
    a = httpx.post(f"{keyless.url}/v1/messages", json=BODY, headers={"host": host})
    assert a.status_code == 421 and a.json()["type"] == "error"  # the Anthropic shape on its route


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://evil.example:4000"])
def test_a_foreign_origin_is_refused_with_403(keyless: RunningGateway, origin: str) -> None:
    r = httpx.post(f"{keyless.url}/v1/chat/completions", json=BODY, headers={"origin": origin})
    assert r.status_code == 403 and "Origin" in r.json()["error"]["message"]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:4000", "http://localhost:5173", "https://corral.internal"])
def test_a_local_origin_passes(keyless: RunningGateway, origin: str) -> None:
    r = httpx.post(f"{keyless.url}/v1/chat/completions", json=BODY, headers={"origin": origin}, timeout=10)
    assert r.status_code == 502  # reached the (absent) upstream


def test_with_keys_the_checks_step_aside() -> None:
    gw = RunningGateway(gateway_config(UPSTREAM, gateway={"api_keys": [GATEWAY_KEY]}))
    try:
        headers = {"host": "evil.example", "origin": "https://evil.example"}
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=headers).status_code == 401
        auth = {**headers, "authorization": f"Bearer {GATEWAY_KEY}"}
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=auth, timeout=10).status_code == 502
    finally:
        gw.stop()


def test_allowed_hosts_must_be_a_list_of_names() -> None:
    from corral.config import load_settings
    from corral.errors import ConfigurationError
    from corral.gateway.settings import GatewaySettings

    with pytest.raises(ConfigurationError, match=r"gateway\.allowed_hosts"):
        GatewaySettings.from_settings(load_settings(data={"gateway": {"allowed_hosts": "x"}}))


def test_a_cross_site_request_without_origin_is_refused(keyless: RunningGateway) -> None:
    """Issue 12 #11: an <img> on another site sends a GET with no Origin; the browser still says
    Sec-Fetch-Site: cross-site, and a keyless gateway must not load or swap a model for it."""
    cross = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image"}
    r = httpx.get(f"{keyless.url}/upstream/some-model/props", headers=cross)
    assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"]
    same = {"sec-fetch-site": "same-origin"}
    assert httpx.get(f"{keyless.url}/health", headers=same).status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1:80@evil.example", "localhost:1@evil.example", "local host"])
def test_a_host_with_userinfo_or_junk_is_refused(keyless: RunningGateway, host: str) -> None:
    r = httpx.get(f"{keyless.url}/health", headers={"host": host})
    assert r.status_code == 421
