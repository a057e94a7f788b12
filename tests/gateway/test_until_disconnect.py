"""Gateway.until_disconnect: the work runs in the handler's task and is cancelled when the client leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.config import load_settings
from corral.errors import ServerUnreachable
from corral.gateway.relay import until_disconnect
from corral.gateway.settings import GatewaySettings
from corral.gateway.state import Gateway


class FakeRequest:
    """receive() blocks until ``leave`` is set, then says http.disconnect (as uvicorn does after the body)."""

    def __init__(self) -> None:
        self.leave = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}


@pytest.fixture
async def gw() -> Any:
    settings = load_settings(data={"providers": {"x": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}})
    gateway = Gateway(settings, GatewaySettings.from_settings(settings))
    yield gateway
    await gateway.aclose()


async def test_result_when_the_client_stays(gw: Gateway) -> None:
    async def work() -> int:
        await asyncio.sleep(0.01)
        return 7

    assert await until_disconnect(FakeRequest(), work()) == 7  # type: ignore[arg-type]
    await asyncio.sleep(0.01)  # the watcher is gone: nothing cancels this task later
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_errors_pass_through_when_the_client_stays(gw: Gateway) -> None:
    async def work() -> int:
        raise ServerUnreachable("down")

    with pytest.raises(ServerUnreachable):
        await until_disconnect(FakeRequest(), work())  # type: ignore[arg-type]


async def test_client_leaving_cancels_the_work(gw: Gateway) -> None:
    request = FakeRequest()
    cancelled = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    asyncio.get_running_loop().call_later(0.05, request.leave.set)
    assert await asyncio.wait_for(until_disconnect(request, work()), 5) is None  # type: ignore[arg-type]
    assert cancelled.is_set()
    await asyncio.sleep(0)  # the handler goes on normally afterwards
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_elsewhere_propagates(gw: Gateway) -> None:
    async def work() -> int:
        await asyncio.sleep(30)
        return 1

    task = asyncio.ensure_future(until_disconnect(FakeRequest(), work()))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
