"""``corral scan``: which GGUF models a folder holds, what they are, and which files are broken."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..config import load_settings
from .common import ConfigOpt, JsonOpt, err, fail, out, print_json, run


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _dirs(given: list[Path] | None, config: str | None, pulled: bool) -> list[Path]:
    if given:
        missing = [d for d in given if not d.expanduser().is_dir()]
        if missing:
            fail(", ".join(f"{d}: {'not a folder' if d.expanduser().exists() else 'no such folder'}" for d in missing))
        return given
    from ..manager.spec import ManagerSettings

    settings = run(lambda: load_settings(config))
    dirs = list(run(lambda: ManagerSettings.from_settings(settings)).models_dirs)
    if not dirs and not pulled:
        fail(
            "no folder to scan and no pulled model: give one (corral scan ~/models), set [manager] models_dirs "
            "in the config, or corral pull org/repo:QUANT"
        )
    for d in dirs:  # configured but absent is worth saying; the scan of the others still runs
        if not d.is_dir():
            err.print(f"warning: [manager] models_dirs: {d} is not a folder", style="yellow")
    return dirs


def scan(
    dirs: Annotated[
        list[Path] | None, typer.Argument(help="Folders to scan (default: [manager] models_dirs).", show_default=False)
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the GGUF models in folders: metadata, and files that are unreadable or corrupt."""
    try:
        import gguf  # noqa: F401  # the type tables read_gguf needs; check up front for a clear message

        from ..manager.scan import scan_dirs
    except ImportError as exc:
        fail(f"corral scan needs the manager extra: pip install 'corral[manager]' ({exc.name} is missing)")
    from ..hub import local_models
    from ..manager.scan import read_gguf

    pulled = [] if dirs else local_models()  # without folders named: the pulled models too, by their names
    folders = _dirs(dirs, config, bool(pulled))
    found = scan_dirs(folders) + [read_gguf(m.path, name=m.name) for m in pulled]
    if as_json:
        print_json([i.as_dict() for i in found])
        return
    good = [i for i in found if i.error is None]
    bad = [i for i in found if i.error is not None]
    where = ", ".join([*(str(d) for d in folders), *(["corral's pulled models"] if pulled else [])])
    table = Table("name", "architecture", "quant", "context", "chat template", "size", title=f"GGUF in {where}")
    table.add_column("path", overflow="fold")  # a path cut with an ellipsis is no use
    for i in good:
        table.add_row(
            i.name,
            i.architecture or "?",
            i.quantization or "?",
            str(i.context_length or "?"),
            "yes" if i.chat_template else "no",
            human_size(i.size),
            str(i.path) + (f" (+{i.split_parts - 1} parts)" if i.split_parts > 1 else ""),
        )
    if good:
        out.print(table)
    else:
        out.print(f"no readable GGUF model in {where}")
    if bad:
        problems = Table(title="unreadable or corrupt", title_style="bold red")
        problems.add_column("file", overflow="fold")
        problems.add_column("problem", overflow="fold")
        for i in bad:
            problems.add_row(str(i.path), i.error)
        out.print(problems)
