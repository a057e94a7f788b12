"""The canary scan, short: keys and a base_url password with recognisable values, an upstream that
echoes the credentials it gets, and every surface searched for them (and for the Basic-auth base64
of ``user:password``): gateway answers, dashboard chat and state, /metrics, /v1/models, the log,
every MCP tool's result, ``corral config``; plus the gateway's own key never sent upstream and
OPENAI_API_KEY sent to api.openai.com only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.reliability.canary import SURFACES, run_canary
from benchmarks.reliability.report import Result

KNOWN: dict[str, pytest.MarkDecorator] = {}  # surfaces with a known leak (none left)


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Result]:
    yield run_canary(tmp_path_factory.mktemp("canary"))


@pytest.mark.parametrize(
    "surface", [pytest.param(s, id=s.replace(" ", "-"), marks=[KNOWN[s]] if s in KNOWN else []) for s in SURFACES]
)
def test_no_canary_on(canary: Result, surface: str) -> None:
    check = next(c for c in canary.checks if c.name == f"leaks: {surface}")
    leaks = [f.detail for f in canary.findings if f.where == surface]
    assert check.ok, f"{surface}: {check.value}\n" + "\n".join(leaks[:4])


def test_every_surface_was_scanned(canary: Result) -> None:
    assert canary.get("client bodies scanned") >= 40
    assert len(canary.extra["found"]) == len(SURFACES)
