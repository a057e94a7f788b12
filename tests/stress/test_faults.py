"""Faults, short: every fault of the fault backend behind every provider type, through every caller
route, one request each (all at once, ~5 s). Each must reach the client as an error in its protocol
(a streamed error event once a stream has begun), never a clean success or a silent stop, never a
hang, and be logged with an error status. ``r429-5`` (10 s of retries) runs only in the long form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from benchmarks.reliability.backend import FAULTS
from benchmarks.reliability.faults import FaultOptions, Scenario, run_faults, scenarios
from benchmarks.reliability.report import Result

from .known_defects import fault_defect

OPTS = FaultOptions(faults=tuple(f for f in FAULTS if f != "r429-5"), client_timeout=30)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Result]:
    yield run_faults(OPTS, tmp_path_factory.mktemp("faults"))


def outcome(result: Result, s: Scenario) -> dict[str, Any]:
    found: dict[str, Any] = result.extra["outcomes"][s.id]
    return found


def cases(check: str) -> list[Any]:
    out = []
    for s in scenarios(OPTS):
        if s.fault == "ok":
            continue
        mark = fault_defect(s.fault, s.ptype, s.call, check)
        out.append(pytest.param(s, id=s.id, marks=[mark] if mark else []))
    return out


@pytest.mark.parametrize("s", [pytest.param(s, id=s.id) for s in scenarios(OPTS) if s.fault == "ok"])
def test_control_is_a_complete_answer(faults: Result, s: Scenario) -> None:
    o = outcome(faults, s)
    assert o["kind"] == "success", o


@pytest.mark.parametrize("s", cases("answer"))
def test_fault_reaches_the_client_as_an_error(faults: Result, s: Scenario) -> None:
    o = outcome(faults, s)
    assert o["kind"] == "error", f"{s.id}: {o['kind']} {o['status']}: {o['detail']}"


@pytest.mark.parametrize("s", cases("log"))
def test_fault_is_logged_as_an_error(faults: Result, s: Scenario) -> None:
    o = outcome(faults, s)
    assert o["logged"] and min(o["logged"]) >= 400, f"{s.id}: client got {o['kind']} {o['status']}, log {o['logged']}"


def test_retry_after_reaches_the_client(faults: Result) -> None:
    r429 = {k: v for k, v in faults.extra["outcomes"].items() if k.startswith("r429") and v["status"] == 429}
    assert r429, "no 429 reached a client"
    missing = sorted(k for k, v in r429.items() if v["retry_after"] is None)
    assert not missing, f"no Retry-After on {len(missing)}/{len(r429)}: {missing[:4]}"


def test_upstream_503_stays_503(faults: Result) -> None:
    e503 = {k: v for k, v in faults.extra["outcomes"].items() if k.startswith("e503/")}
    changed = sorted(f"{k}: {v['status']} retry-after={v['retry_after']}" for k, v in e503.items()
                     if v["status"] != 503 or v["retry_after"] is None)  # fmt: skip
    assert not changed, changed
