"""GGUF discovery on the real bundled model: metadata, split models, broken files, names that never
become paths, and the `corral scan` command."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corral.cli import app
from corral.manager.scan import GGUFInfo, read_gguf, scan_dirs

MB = 1024 * 1024


def place(src: Path, dst: Path) -> Path:
    """The bundled model at dst without copying 253 MB when a hard link will do (a symlink would
    lead outside the scanned folder, which scan refuses to read)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def truncated(src: Path, dst: Path, nbytes: int) -> Path:
    with src.open("rb") as f:
        dst.write_bytes(f.read(nbytes))
    return dst


def by_name(infos: list[GGUFInfo]) -> dict[str, GGUFInfo]:
    return {i.name: i for i in infos}


def test_metadata_of_the_bundled_model(gguf_path: Path, tmp_path: Path) -> None:
    place(gguf_path, tmp_path / "gemma.gguf")
    [info] = scan_dirs([tmp_path])
    assert info.error is None
    assert info.name == "gemma"
    assert info.architecture == "gemma3"
    assert info.context_length == 32768
    assert info.quantization == "Q4_K_M"
    assert info.chat_template is False
    assert info.parameters == "270M"
    assert info.size == gguf_path.stat().st_size
    assert info.split_parts == 1
    assert info.tensor_count > 0
    assert info.as_dict()["path"] == str(tmp_path / "gemma.gguf")


def test_split_model_counts_once(gguf_path: Path, tmp_path: Path) -> None:
    # Each part of a real split is itself a GGUF file; two links of the model stand in for them.
    place(gguf_path, tmp_path / "big-00001-of-00002.gguf")
    place(gguf_path, tmp_path / "big-00002-of-00002.gguf")
    [info] = scan_dirs([tmp_path])
    assert (info.name, info.split_parts, info.error) == ("big", 2, None)
    assert info.path.name == "big-00001-of-00002.gguf"
    assert info.size == 2 * gguf_path.stat().st_size


def test_split_model_with_a_missing_or_broken_part(gguf_path: Path, tmp_path: Path) -> None:
    place(gguf_path, tmp_path / "a" / "m-00001-of-00003.gguf")
    place(gguf_path, tmp_path / "a" / "m-00002-of-00003.gguf")
    [info] = scan_dirs([tmp_path / "a"])
    assert info.error is not None and "m-00003-of-00003.gguf" in info.error
    truncated(gguf_path, tmp_path / "a" / "m-00003-of-00003.gguf", 50 * MB)
    [info] = scan_dirs([tmp_path / "a"])
    assert info.error is not None and "m-00003-of-00003.gguf" in info.error and "truncated" in info.error
    # later parts without the first: reported, not silently dropped
    place(gguf_path, tmp_path / "b" / "n-00002-of-00002.gguf")
    [orphan] = scan_dirs([tmp_path / "b"])
    assert orphan.error == "split part n-00001-of-00002.gguf is missing"


def test_broken_files_are_reported_with_the_problem(gguf_path: Path, tmp_path: Path) -> None:
    place(gguf_path, tmp_path / "good.gguf")
    (tmp_path / "notes.gguf").write_text("these are my notes, not a model\n")
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF\x03\x00")
    truncated(gguf_path, tmp_path / "header-cut.gguf", 1 * MB)  # inside the vocabulary
    truncated(gguf_path, tmp_path / "data-cut.gguf", 100 * MB)  # header whole, tensors missing
    (tmp_path / "README.md").write_text("not scanned")
    (tmp_path / "model.bin").write_bytes(gguf_path.read_bytes()[:4096])
    found = by_name(scan_dirs([tmp_path]))
    assert set(found) == {"good", "notes", "tiny", "header-cut", "data-cut"}
    assert found["good"].error is None
    assert found["notes"].error == "not a GGUF file (bad magic)"
    assert "truncated" in (found["tiny"].error or "")
    assert (found["header-cut"].error or "").startswith("truncated header at byte")
    assert "truncated: tensor" in (found["data-cut"].error or "")
    assert f"file has {100 * MB}" in (found["data-cut"].error or "")
    # read_gguf on its own says the same
    assert read_gguf(tmp_path / "notes.gguf").error == "not a GGUF file (bad magic)"
    assert read_gguf(tmp_path / "absent.gguf").error == "cannot read: No such file or directory"


def test_symlink_leading_outside_is_reported_not_read(gguf_path: Path, tmp_path: Path) -> None:
    outside = place(gguf_path, tmp_path / "elsewhere" / "secret.gguf")
    models = tmp_path / "models"
    models.mkdir()
    (models / "escape.gguf").symlink_to(outside)
    (models / "dangling.gguf").symlink_to(tmp_path / "nothing-here.gguf")
    inside = place(gguf_path, models / "sub" / "real.gguf")
    (models / "alias.gguf").symlink_to(inside)  # inside the folder: fine, but one model, not two
    found = by_name(scan_dirs([models]))
    # the link is met first (files before subfolders) and names the model; its target is not read twice
    assert set(found) == {"escape", "dangling", "alias"}
    assert found["alias"].error is None
    assert found["escape"].error == f"not read: links to {outside}, outside {models}"
    assert found["escape"].architecture is None and found["escape"].size == 0
    assert found["dangling"].error == "broken symlink"
    # the link's target in a scanned folder of its own is still a model there
    both = by_name(scan_dirs([models, tmp_path / "elsewhere"]))
    assert both["secret"].error is None and both["escape"].error is not None


def test_hidden_files_skipped_but_a_hidden_root_is_scanned(gguf_path: Path, tmp_path: Path) -> None:
    root = tmp_path / ".models"
    place(gguf_path, root / "visible.gguf")
    place(gguf_path, root / ".partial.gguf")
    place(gguf_path, root / ".trash" / "old" / "x.gguf")
    place(gguf_path, root / "mmproj-gemma.gguf")
    assert [i.name for i in scan_dirs([root])] == ["visible"]
    assert scan_dirs([root], recursive=False)[0].name == "visible"
    assert scan_dirs([tmp_path / "no-such-folder"]) == []


def test_duplicate_stems_in_two_folders_get_distinct_names(gguf_path: Path, tmp_path: Path) -> None:
    place(gguf_path, tmp_path / "one" / "gemma.gguf")
    place(gguf_path, tmp_path / "two" / "gemma.gguf")
    place(gguf_path, tmp_path / "three" / "two" / "gemma.gguf")
    infos = scan_dirs([tmp_path / "one", tmp_path / "two", tmp_path / "three"])
    names = [i.name for i in infos]
    assert len(set(names)) == 3
    assert "gemma" in names and "two/gemma" in names and "two/gemma-2" in names
    (tmp_path / "one" / "gemma.gguf").unlink()
    (tmp_path / "one" / "gemma.gguf").write_text("broken")
    # a broken file does not take the plain name from a readable one
    ok = [i for i in scan_dirs([tmp_path / "one", tmp_path / "two"]) if i.error is None]
    assert [i.name for i in ok] == ["gemma"]


@pytest.mark.parametrize(
    "model", ["../../etc/passwd", "..%2Fx", "../gemma", "gemma/../gemma", "/etc/passwd", "gemma.gguf"]
)
def test_model_names_never_become_paths(gguf_path: Path, tmp_path: Path, model: str) -> None:
    from starlette.testclient import TestClient

    from corral.config import load_settings
    from corral.gateway import create_app

    place(gguf_path, tmp_path / "models" / "gemma.gguf")
    app = create_app(load_settings(data={"manager": {"models_dirs": [str(tmp_path / "models")]}}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "model_not_found"
        assert r.json()["error"]["param"] == "model"
        assert client.get("/running").json() == {"running": []}  # nothing was started for it
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["gemma"]


# -- the command -----------------------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["scan", *args], env={"COLUMNS": "250", "CORRAL_CONFIG": ""})
    return result.exit_code, result.stdout, result.stderr


def test_cli_table(gguf_path: Path, tmp_path: Path) -> None:
    place(gguf_path, tmp_path / "gemma.gguf")
    (tmp_path / "broken.gguf").write_text("nope")
    code, out, _ = run_cli(str(tmp_path))
    assert code == 0
    row = next(line for line in out.splitlines() if " gemma " in line)
    for cell in ("gemma3", "Q4_K_M", "32768", "no", "241.4 MB", str(tmp_path / "gemma.gguf")):
        assert cell in row
    assert "unreadable or corrupt" in out
    assert "broken.gguf" in out and "not a GGUF file (bad magic)" in out


def test_cli_json_and_config_dirs(gguf_path: Path, tmp_path: Path) -> None:
    place(gguf_path, tmp_path / "models" / "gemma.gguf")
    config = tmp_path / "corral.toml"
    config.write_text(f'[manager]\nmodels_dirs = ["{tmp_path / "models"}"]\n')
    code, out, _ = run_cli("--config", str(config), "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert entry["name"] == "gemma" and entry["architecture"] == "gemma3" and entry["error"] is None
    assert entry["size"] == gguf_path.stat().st_size and entry["context_length"] == 32768


def test_cli_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    code, out, _ = run_cli(str(tmp_path))
    assert code == 0 and "no readable GGUF model" in out
    code, _, err = run_cli(str(tmp_path), str(tmp_path / "absent"))
    assert code == 1
    assert f"{tmp_path / 'absent'}: no such folder" in err
    config = tmp_path / "empty.toml"
    config.write_text("")
    code, _, err = run_cli("--config", str(config))
    assert code == 1 and "models_dirs" in err


def test_cli_without_gguf_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    code, _, err = run_cli(str(tmp_path))
    assert code == 1
    assert "pip install 'corral[manager]'" in err
