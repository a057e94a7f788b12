"""corral.probe without a server: the schema checker, the report store and the capability feed,
GGUF integrity, argument checks, and validate() against nothing listening."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import corral
from corral.capabilities import Capability
from corral.config import ProviderConfig
from corral.probe import ProbeResult, ValidationReport, benchmark, validate
from corral.probe.capabilities import advertised
from corral.probe.schema_check import schema_errors
from corral.probe.store import failed_capabilities, load_report, probes_dir, save_report
from corral.probe.validate import PERSON_SCHEMA, probe_gguf
from corral.providers.llamacpp import LlamaCppProvider


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_CACHE_DIR", str(tmp_path))
    return tmp_path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(failed: list[str]) -> ValidationReport:
    probes = [ProbeResult(n, False, "evidence") for n in failed] + [ProbeResult("chat", True, "answered 'hi'")]
    return ValidationReport("m.gguf", "llamacpp", probes, None, "http://h:1")


def test_import_corral_does_not_import_probe() -> None:
    code = "import sys, corral; sys.exit('corral.probe' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"name": "Ada", "age": 36}, None),
        ({"name": "Ada"}, "missing required 'age'"),
        ({"name": "Ada", "age": "36"}, "$.age: expected integer"),
        ({"name": "Ada", "age": True}, "$.age: expected integer"),
        ({"name": "Ada", "age": 200}, "> maximum 150"),
        ({"name": "", "age": 3}, "shorter than 1"),
        ({"name": "Ada", "age": 3, "x": 1}, "unexpected property 'x'"),
        ([1], "$: expected object"),
    ],
)
def test_schema_errors(value: object, problem: str | None) -> None:
    errors = schema_errors(value, PERSON_SCHEMA)
    if problem is None:
        assert errors == []
    else:
        assert any(problem in e for e in errors), errors


def test_schema_errors_items_and_enum() -> None:
    schema = {"type": "array", "items": {"enum": ["a", "b"]}}
    assert schema_errors(["a", "b"], schema) == []
    assert schema_errors(["a", "c"], schema) == ["$[1]: 'c' is not one of ['a', 'b']"]


def test_report_as_dict_lists_names_by_outcome() -> None:
    r = ValidationReport(
        "m", "p", [ProbeResult("a", True, "e"), ProbeResult("b", False, "e"), ProbeResult("c", None, "why")], None
    )
    d = r.as_dict()
    assert (d["passed"], d["failed"], d["skipped"]) == (["a"], ["b"], ["c"])
    assert [p["status"] for p in d["probes"]] == ["pass", "fail", "skip"]
    assert json.loads(json.dumps(d)) == d
    assert r.probe("b") is not None and r.probe("zz") is None


def test_store_round_trip_is_atomic_and_keyed(cache: Path) -> None:
    path = save_report("http://h:1", "m.gguf", report(["tool_call"]).as_dict())
    assert path.parent == probes_dir() == cache / "probes"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert load_report("http://h:1", "m.gguf") == load_report("http://h:1", None)
    assert load_report("http://h:1", "other") is None and load_report("http://h:2", None) is None
    assert failed_capabilities("http://h:1", "m.gguf") == {Capability.TOOLS}
    path.write_text("{not json")
    assert failed_capabilities("http://h:1", "m.gguf") == frozenset()  # a broken file is ignored


def test_failed_tool_probe_is_not_advertised(cache: Path) -> None:
    provider = LlamaCppProvider(ProviderConfig(name="local", type="llamacpp", base_url="http://h:1"))
    assert Capability.TOOLS in advertised(provider, "m.gguf")
    save_report(provider.endpoint, "m.gguf", report(["tool_call", "reasoning"]).as_dict())
    shown = advertised(provider, "m.gguf")
    assert Capability.TOOLS not in shown and Capability.CHAT in shown
    assert Capability.TOOLS in advertised(provider, "another-model")
    # advertising only: the provider still declares tools, so requests with tools are not refused
    provider.require(Capability.TOOLS)


def test_server_switched_off_capability_is_not_advertised(cache: Path) -> None:
    provider = LlamaCppProvider(ProviderConfig(name="local", type="llamacpp", base_url="http://h:1"))
    provider.live[Capability.EMBEDDINGS] = False
    assert Capability.EMBEDDINGS not in advertised(provider)


def test_benchmark_rejects_bad_arguments() -> None:
    client = corral.Client("llamacpp://127.0.0.1:1")
    for kw in ({"runs": 0}, {"prompt_tokens": -1}, {"max_tokens": True}):
        with pytest.raises(corral.ConfigurationError):
            benchmark(client, **kw)  # type: ignore[arg-type]


def test_validate_rejects_unknown_probe() -> None:
    with pytest.raises(corral.ConfigurationError, match="unknown probe"):
        validate(corral.Client("llamacpp://127.0.0.1:1"), probes=["chat", "telepathy"])


def test_validate_unreachable_server_reports_instead_of_raising(cache: Path) -> None:
    client = corral.Client(f"llamacpp://127.0.0.1:{closed_port()}", max_retries=0)
    r = validate(client)
    assert r.probes[0].name == "chat" and r.probes[0].passed is False
    assert "llama-server not running" in r.probes[0].evidence
    # the rest are not run (each would wait for the same dead server) and say why
    assert all(p.passed is None and "not run" in p.evidence for p in r.probes[1:])
    assert not (cache / "probes").exists()  # no model known: nothing to key a report by


def test_gguf_integrity_missing_file(tmp_path: Path) -> None:
    result, meta = probe_gguf(tmp_path / "absent.gguf")
    assert result.passed is False and "cannot read" in result.evidence
    assert meta is not None and meta["error"]
