"""The soak, short: 25 requests/s for 8 s (chat whole and streamed, translated messages,
embeddings) through ``corral serve``: no error, and after the first 4 s neither RSS nor open file
descriptors keep growing. (Latency is reported by the long form, not asserted.)"""

from __future__ import annotations

from pathlib import Path

from benchmarks.reliability.soak import SoakOptions, run_soak


def test_soak(tmp_path: Path) -> None:
    result = run_soak(SoakOptions(rate=25, seconds=8, interval=4), tmp_path)
    failed = {c.name: c.value for c in result.failed()}
    assert not failed, f"{failed}: {[f.detail for f in result.findings[:3]]}"
    assert result.get("requests") == 200
