"""Which files a Hub reference means: quant matching, split GGUFs, mmproj pairing."""

from __future__ import annotations

import pytest

from corral.errors import ConfigurationError, ModelNotFound
from corral.hub.refs import is_hub_ref, parse_ref
from corral.hub.select import RemoteFile, quant_of, select_files

REPO = [
    RemoteFile("Qwen2.5-0.5B-Instruct-IQ4_XS.gguf"),
    RemoteFile("Qwen2.5-0.5B-Instruct-Q4_K.gguf"),
    RemoteFile("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"),
    RemoteFile("Qwen2.5-0.5B-Instruct-Q8_0.gguf"),
    RemoteFile("Q6_K/Qwen2.5-0.5B-Instruct-Q6_K-00002-of-00002.gguf"),
    RemoteFile("Q6_K/Qwen2.5-0.5B-Instruct-Q6_K-00001-of-00002.gguf"),
    RemoteFile("mmproj-Qwen2.5-F32.gguf"),
    RemoteFile("mmproj-Qwen2.5-F16.gguf"),
    RemoteFile("README.md"),
]


def test_quant_is_matched_case_insensitively_and_exactly() -> None:
    sel = select_files(parse_ref("org/repo:q4_k_m"), REPO)
    assert [f.path for f in sel.parts] == ["Qwen2.5-0.5B-Instruct-Q4_K_M.gguf"] and sel.quant == "Q4_K_M"
    # Q4_K is its own file, not a prefix of Q4_K_M; XS is not IQ4_XS
    assert select_files(parse_ref("org/repo:Q4_K"), REPO).parts[0].path.endswith("-Q4_K.gguf")
    with pytest.raises(ModelNotFound) as info:
        select_files(parse_ref("org/repo:Q4_XS"), REPO)
    assert "IQ4_XS" in str(info.value) and "Q8_0" in str(info.value)


def test_split_gguf_is_one_model_in_part_order() -> None:
    sel = select_files(parse_ref("org/repo:Q6_K"), REPO)
    assert [f.path.rsplit("-", 3)[-3] for f in sel.parts] == ["00001", "00002"]


def test_incomplete_split_set_is_not_a_model() -> None:
    files = [RemoteFile("m-Q6_K-00001-of-00003.gguf"), RemoteFile("m-Q6_K-00002-of-00003.gguf")]
    with pytest.raises(ModelNotFound):
        select_files(parse_ref("org/repo:Q6_K"), files)


def test_default_is_q4_k_m_then_first_file_and_mmproj_prefers_f16() -> None:
    sel = select_files(parse_ref("org/repo"), REPO)
    assert sel.quant == "Q4_K_M" and sel.mmproj is not None and sel.mmproj.path == "mmproj-Qwen2.5-F16.gguf"
    only = select_files(parse_ref("org/repo"), [RemoteFile("model-Q8_0.gguf")])
    assert only.quant == "Q8_0" and only.mmproj is None
    assert select_files(parse_ref("org/repo:Q8_0"), REPO, mmproj=False).mmproj is None


def test_an_exact_file_can_be_named() -> None:
    sel = select_files(parse_ref("org/repo:Qwen2.5-0.5B-Instruct-Q8_0.gguf"), REPO)
    assert sel.parts[0].path == "Qwen2.5-0.5B-Instruct-Q8_0.gguf"


def test_refs() -> None:
    ref = parse_ref("hf://bartowski/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m")
    assert (ref.repo, ref.quant, ref.name) == (
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF",
        "q4_k_m",
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M",
    )
    assert parse_ref("org/repo@v2:Q8_0").revision == "v2"
    assert quant_of("x/Model-UD-Q4_K_XL-00001-of-00002.gguf") == "UD-Q4_K_XL"
    for bad in ("no-slash", "org/repo:bad tag", "../x/y", "org/repo:../../etc.gguf"):
        with pytest.raises(ConfigurationError):
            parse_ref(bad)
    assert is_hub_ref("hf://a/b") and is_hub_ref("a/b:Q4_K_M")
    assert not is_hub_ref("/models/a.gguf") and not is_hub_ref("models/a.gguf") and not is_hub_ref("gpt-4o")
