"""The gateway under test: `create_app` served by uvicorn in a thread on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from corral.config import load_settings
from corral.gateway import create_app

GATEWAY_KEY = "gw-test-key-0123456789"


class RunningGateway:
    def __init__(self, config: dict[str, Any]) -> None:
        import uvicorn

        self.app = create_app(load_settings(data=config))
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def gateway_config(providers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"default_provider": next(iter(providers)), "providers": providers}
    config.update(extra)
    return config


@pytest.fixture(scope="session")
def live_gateway(llama_url: str, templated_server: Any) -> Iterator[RunningGateway]:
    """Keys on; `local` (llama.cpp with embeddings) by default, `tools` routed to the tool-aware server."""
    gw = RunningGateway(
        gateway_config(
            {
                "local": {"type": "llamacpp", "base_url": llama_url},
                "tpl": {"type": "llamacpp", "base_url": templated_server.url},
            },
            gateway={"api_keys": [GATEWAY_KEY]},
            models={
                "local-model": {"provider": "local", "aliases": ["gpt-4o-mini", "claude-sonnet-4-5"]},
                "tools-model": {"provider": "tpl"},
            },
        )
    )
    yield gw
    gw.stop()


@pytest.fixture
def oai(live_gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0)


@pytest.fixture
def claude(live_gateway: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live_gateway.url, api_key=GATEWAY_KEY, max_retries=0)
