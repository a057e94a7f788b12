"""The swap storm, short: 6 clients over 2 managed models (the fake llama-server, one slot each,
0.5 s per answer) with max_loaded = 1 and drain_timeout = 1 s, every request for the other model.
Never two children for one model, no zombie, no engine left behind; and no admitted request may fail
(at 9508fff the short drain_timeout had the gateway kill them within seconds: issue 12 #8)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.reliability.report import Result
from benchmarks.reliability.storm import StormOptions, run_storm

OPTS = StormOptions(clients=6, models=2, seconds=6, tokens=5, token_delay=0.1, slots=1, drain_timeout=1,
                    request_timeout=30)  # fmt: skip


@pytest.fixture(scope="module")
def storm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Result]:
    yield run_storm(OPTS, tmp_path_factory.mktemp("storm"))


def test_storm_ran(storm: Result) -> None:
    assert storm.get("requests admitted") >= 8
    assert storm.get("children started (swaps)") >= 2  # it really swapped


@pytest.mark.parametrize(
    "check",
    ["children per model (max seen)", "zombies (max seen)", "zombies at the end",
     "engines left after the gateway stopped", "clients stuck at the end"],
)  # fmt: skip
def test_process_invariants(storm: Result, check: str) -> None:
    found = next(c for c in storm.checks if c.name == check)
    assert found.ok, f"{check}: {found.value} (target {found.target})"


def test_no_admitted_request_fails(storm: Result) -> None:
    found = next(c for c in storm.checks if c.name == "admitted requests failed")
    assert found.ok, f"{found.value} failed: {[f.detail for f in storm.findings[:3]]}"
