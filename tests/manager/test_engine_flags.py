"""llama-server's flags on the embedded engine: every flag of the table sets a real CommonParams
attribute (xllamacpp), unknown flags fail naming the nearest, hardware flags are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.manager.engine_flags import FLAGS, EngineFlagError, apply_flags, hardware_notes, parse_engine_args

xllamacpp = pytest.importorskip("xllamacpp")


def _sample(flag_name: str, first: str, kind: str, choices: tuple[str, ...], tmp: Path) -> list[str]:
    if kind == "switch":
        return [flag_name]
    if kind in ("choice", "optional"):
        return [flag_name, choices[-1]]
    if kind == "int":
        return [flag_name, "3"]
    if kind == "float":
        return [flag_name, "0.5"]
    special = {"--lora-scaled": "a.gguf:0.5", "-ts": "3,1", "--chat-template-kwargs": '{"enable_thinking": false}',
               "--spec-type": "draft-simple,ngram-simple", "-ngl": "99", "-ngld": "all", "--slot-save-path": str(tmp)}
    text = tmp / "file.txt"
    text.write_text("key-1\n")
    return [flag_name, special.get(first, str(text))]


def test_every_flag_sets_a_real_commonparams_attribute(tmp_path: Path) -> None:
    for flag in FLAGS:
        if flag.set is None:
            continue  # consumed by corral itself (address, Hub, router)
        for name in flag.names:
            argv = _sample(name, flag.names[0], flag.kind, flag.choices, tmp_path)
            apply_flags(xllamacpp.CommonParams(), parse_engine_args(argv), xllamacpp)


def test_the_issue_flags_land_where_llama_cpp_reads_them() -> None:
    p = xllamacpp.CommonParams()
    argv = ["-ngl", "99", "-fa", "on", "--cache-type-k", "q8_0", "-ctv", "q4_0", "--mmproj", "x.gguf",
            "--lora-scaled", "a.gguf:0.5,b.gguf:2", "-md", "draft.gguf", "--spec-draft-n-max", "8",
            "--reasoning-format", "none", "--reasoning-budget", "0", "--no-mmap", "--rope-scale", "4",
            "-c", "8192", "-b", "512", "-ub", "256", "-t", "2", "--api-key", "k1,k2", "-a", "one,two"]
    apply_flags(p, parse_engine_args(argv), xllamacpp)
    assert p.n_gpu_layers == 99
    assert p.flash_attn_type == xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    assert p.cache_type_k == xllamacpp.ggml_type.GGML_TYPE_Q8_0 and p.cache_type_v == xllamacpp.ggml_type.GGML_TYPE_Q4_0
    assert p.mmproj.path == "x.gguf"
    assert [(a.path, a.scale) for a in p.lora_adapters] == [("a.gguf", 0.5), ("b.gguf", 2.0)]
    assert p.speculative.draft.mparams.path == "draft.gguf" and p.speculative.draft.n_max == 8
    assert xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE in p.speculative.types
    assert p.reasoning_format == xllamacpp.common_reasoning_format.COMMON_REASONING_FORMAT_NONE
    assert p.sampling.reasoning_budget_tokens == 0
    assert p.load_mode == xllamacpp.llama_load_mode.LLAMA_LOAD_MODE_NONE
    assert p.rope_freq_scale == pytest.approx(0.25)
    assert (p.n_ctx, p.n_batch, p.n_ubatch, p.cpuparams.n_threads) == (8192, 512, 256, 2)
    assert p.api_keys == ["k1", "k2"] and p.model_alias == {"one", "two"}


def test_short_draft_flag_is_not_read_as_m_d() -> None:
    parsed = parse_engine_args(["-m", "main.gguf", "-md", "draft.gguf"])
    assert [(n, v) for _, n, v in parsed.settings] == [("-m", "main.gguf"), ("-md", "draft.gguf")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-ngll", "99"], "unknown engine flag -ngll (did you mean -ngl?)"),
        (["--flash-atn", "on"], "unknown engine flag --flash-atn (did you mean --flash-attn?)"),
        (["--ctx", "8"], "unknown engine flag --ctx (did you mean --ctx-size?)"),
        (["--cache-type-k", "q9_9"], "--cache-type-k takes one of f32, f16"),
        (["-c", "lots"], "-c takes a whole number, got 'lots'"),
        (["-ngl"], "-ngl needs a value"),
        (["model.gguf"], "unexpected argument 'model.gguf'"),
        (["--jinja=yes"], "--jinja takes no value"),
    ],
)
def test_bad_flags_fail_with_the_flag_named(argv: list[str], message: str) -> None:
    with pytest.raises(EngineFlagError) as info:
        parse_engine_args(argv)
    assert message in str(info.value)


def test_optional_values_and_equals_forms() -> None:
    p = xllamacpp.CommonParams()
    apply_flags(p, parse_engine_args(["-fa", "--ctx-size=1024", "--jinja"]), xllamacpp)
    assert p.flash_attn_type == xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED and p.n_ctx == 1024
    apply_flags(p, parse_engine_args(["--flash-attn=off"]), xllamacpp)
    assert p.flash_attn_type == xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED


def test_gpu_flags_on_a_cpu_only_machine_are_reported_not_refused() -> None:
    parsed = parse_engine_args(["-ngl", "99", "-ts", "3,1", "-c", "512"])
    cpu = [{"name": "CPU", "type": xllamacpp.ggml_backend_dev_type.GGML_BACKEND_DEVICE_TYPE_CPU}]
    notes = hardware_notes(parsed, cpu)
    assert len(notes) == 1 and "-ngl 99" in notes[0] and "-ts 3,1" in notes[0] and "CPU" in notes[0]
    gpu = [*cpu, {"name": "CUDA0", "type": xllamacpp.ggml_backend_dev_type.GGML_BACKEND_DEVICE_TYPE_GPU}]
    assert hardware_notes(parsed, gpu) == []
    assert hardware_notes(parse_engine_args(["-c", "512"]), cpu) == []
