"""`pull` against a fake Hub on loopback: quant choice, split files, mmproj, resume, checksum,
gated repos, offline mode, removal. (The real Hub is not reachable from the test machines.)"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from corral.errors import Authentication, ConfigurationError, ModelNotFound, ResponseError, ServerUnreachable
from corral.hub import find_local, local_models, pull, remove_model, resolve_model

from .fake_hub import FakeFile, FakeHub, FakeRepo

Q4 = b"GGUF" + bytes(range(256)) * 40  # pull does not parse files: any bytes do
Q8 = b"GGUF" + b"q8" * 3000
PROJ = b"GGUF" + b"mmproj" * 500
# huggingface_hub writes in 10 MiB chunks: a cut resumes from the last whole chunk it wrote
CHUNK = 10 * 2**20
BIG = b"GGUF" + hashlib.sha256(b"seed").digest() * (12 * 2**20 // 32)


def _repo(**extra: FakeFile) -> FakeRepo:
    files = {
        "tiny-Q4_K_M.gguf": FakeFile(Q4),
        "tiny-Q8_0.gguf": FakeFile(Q8),
        "mmproj-tiny-F16.gguf": FakeFile(PROJ),
        "split/tiny-Q6_K-00001-of-00002.gguf": FakeFile(Q4[:3000]),
        "split/tiny-Q6_K-00002-of-00002.gguf": FakeFile(Q4[3000:]),
    }
    files.update(extra)
    return FakeRepo(files)


def _sha(data: bytes | Path) -> str:
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def test_pull_picks_the_quant_pairs_the_mmproj_and_is_found_by_name(fake_hub: FakeHub) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo()
    model = pull("acme/tiny-GGUF:q4_k_m")
    assert model.name == "acme/tiny-GGUF:Q4_K_M"
    assert _sha(model.path) == _sha(Q4) and model.mmproj is not None and _sha(model.mmproj) == _sha(PROJ)
    assert not fake_hub.downloads("tiny-Q8_0.gguf")  # only what the quant needs
    assert [m.name for m in local_models()] == ["acme/tiny-GGUF:Q4_K_M"]
    assert find_local("hf://acme/tiny-GGUF:Q4_K_M") == model == find_local("acme/tiny-GGUF")
    # already there: no download again, with or without asking the Hub
    before = len(fake_hub.requests)
    assert pull("hf://acme/tiny-GGUF:Q4_K_M") == model and len(fake_hub.requests) == before
    assert pull("acme/tiny-GGUF:Q4_K_M", refresh=True).path == model.path
    assert len(fake_hub.downloads("tiny-Q4_K_M.gguf")) == 1


def test_split_model_is_pulled_whole(fake_hub: FakeHub) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo()
    model = pull("acme/tiny-GGUF:Q6_K")
    assert len(model.files) == 2 and model.path.name == "tiny-Q6_K-00001-of-00002.gguf"
    assert (model.path.parent / "tiny-Q6_K-00002-of-00002.gguf").read_bytes() == Q4[3000:]


def test_missing_quant_names_the_ones_there(fake_hub: FakeHub) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo()
    with pytest.raises(ModelNotFound) as info:
        pull("acme/tiny-GGUF:Q5_K_M")
    assert "Q4_K_M" in str(info.value) and "Q8_0" in str(info.value)
    with pytest.raises(ModelNotFound, match="not found"):
        pull("acme/nothing-GGUF:Q4_K_M")


def test_cut_connection_is_resumed_with_a_range_request(fake_hub: FakeHub) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo(**{"tiny-Q4_K_M.gguf": FakeFile(BIG)})
    fake_hub.faults.cut_after["tiny-Q4_K_M.gguf"] = [CHUNK + 5000]
    model = pull("acme/tiny-GGUF:Q4_K_M", mmproj=False)
    assert model.path.read_bytes() == BIG
    gets = fake_hub.downloads("tiny-Q4_K_M.gguf")
    assert len(gets) == 2 and gets[1].get("range") == f"bytes={CHUNK}-"


def test_broken_download_is_kept_for_resume_and_never_a_model(fake_hub: FakeHub, hub_env: Path) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo(**{"tiny-Q4_K_M.gguf": FakeFile(BIG)})
    # the connection is cut, then the Hub answers 503 to the library's own retry
    fake_hub.faults.cut_after["tiny-Q4_K_M.gguf"] = [CHUNK + 5000]
    fake_hub.faults.status_after_cut["tiny-Q4_K_M.gguf"] = [503]
    with pytest.raises(ResponseError, match=r"stopped at .* the partial file is kept"):
        pull("acme/tiny-GGUF:Q4_K_M", mmproj=False)
    partials = list(hub_env.rglob("*.partial"))
    assert len(partials) == 1 and partials[0].stat().st_size == CHUNK
    assert find_local("acme/tiny-GGUF:Q4_K_M") is None and local_models() == []
    model = pull("acme/tiny-GGUF:Q4_K_M", mmproj=False)  # the Hub is fine again: resume
    assert model.path.read_bytes() == BIG
    assert fake_hub.downloads("tiny-Q4_K_M.gguf")[-1].get("range") == f"bytes={CHUNK}-"
    assert not list(hub_env.rglob("*.partial"))


def test_checksum_mismatch_is_an_error_and_leaves_nothing(fake_hub: FakeHub, hub_env: Path) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo(**{"tiny-Q4_K_M.gguf": FakeFile(Q4, sha256="ab" * 32)})
    with pytest.raises(ResponseError, match="corrupt") as info:
        pull("acme/tiny-GGUF:Q4_K_M", mmproj=False)
    assert "abababab" in str(info.value)
    assert local_models() == [] and not list(hub_env.rglob("*.gguf")) and not list(hub_env.rglob("*.partial"))


def test_gated_repo_says_what_to_do(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub.repos["acme/gated-GGUF"] = FakeRepo({"g-Q4_K_M.gguf": FakeFile(Q4)}, gated_token="hf_right")
    with pytest.raises(Authentication) as info:
        pull("acme/gated-GGUF:Q4_K_M")
    text = str(info.value)
    assert "gated" in text and "no HF_TOKEN is set" in text and f"{fake_hub.url}/acme/gated-GGUF" in text
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(Authentication, match="refused"):
        pull("acme/gated-GGUF:Q4_K_M")
    monkeypatch.setenv("HF_TOKEN", "hf_right")
    assert pull("acme/gated-GGUF:Q4_K_M").path.read_bytes() == Q4
    assert "hf_right" not in text


def test_offline_uses_the_cache_and_never_the_network(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo()
    model = pull("acme/tiny-GGUF:Q8_0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(fake_hub.requests)
    assert pull("acme/tiny-GGUF:Q8_0", refresh=True) == model
    with pytest.raises(ConfigurationError, match="HF_HUB_OFFLINE"):
        pull("acme/tiny-GGUF:Q4_K_M")
    assert len(fake_hub.requests) == before


def test_unreachable_hub_is_a_clear_error(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ServerUnreachable, match="cannot reach the Hugging Face Hub"):
        pull("acme/tiny-GGUF:Q4_K_M")


def test_remove_keeps_files_another_model_shares(fake_hub: FakeHub) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo()
    q4, q8 = pull("acme/tiny-GGUF:Q4_K_M"), pull("acme/tiny-GGUF:Q8_0")
    assert q4.mmproj == q8.mmproj and q4.mmproj is not None
    remove_model("acme/tiny-GGUF:Q4_K_M")
    assert not q4.path.exists() and q8.path.exists() and q8.mmproj is not None and q8.mmproj.exists()
    remove_model("acme/tiny-GGUF:q8_0")
    assert local_models() == [] and not q8.folder.exists()
    with pytest.raises(ConfigurationError, match="no pulled model"):
        remove_model("acme/tiny-GGUF:Q8_0")


def test_hf_reference_resolves_like_a_path(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.repos["acme/tiny-GGUF"] = _repo()
    lines: list[str] = []
    path, model = resolve_model("hf://acme/tiny-GGUF:Q8_0", progress=lines.append)
    assert model is not None and path == model.path and path.read_bytes() == Q8
    assert any("100%" in ln for ln in lines) and lines[-1].startswith("pulled acme/tiny-GGUF:Q8_0")
    assert resolve_model("acme/tiny-GGUF:Q8_0") == (path, model)  # a pulled name, no hf:// needed
    plain = tmp_path / "x.gguf"
    assert resolve_model(str(plain)) == (plain, None)
