"""``corral pull`` and ``corral rm``: models from the Hugging Face Hub in corral's cache."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOpt, err, out, print_json, run


def pull(
    ref: Annotated[str, typer.Argument(help="org/repo[:QUANT], e.g. bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")],
    no_mmproj: Annotated[bool, typer.Option("--no-mmproj", help="Skip the multimodal projector.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a GGUF model from Hugging Face (verified, resumable) into corral's cache.

    Honours HF_TOKEN (gated repos), HF_ENDPOINT (a mirror) and HF_HUB_OFFLINE. The model is then
    found by name: corral chat --model org/repo:QUANT, hf://org/repo:QUANT in the config."""
    from ..hub import pull as hub_pull

    def say(line: str) -> None:
        if not as_json:
            err.print(line, style="dim", markup=False)

    model = run(lambda: hub_pull(ref, refresh=True, progress=say, bar=not as_json and err.is_terminal,
                                 mmproj=not no_mmproj))  # fmt: skip
    if as_json:
        print_json(model.as_dict())
        return
    out.print(f"{model.name}  {model.path}" + (f"\n  mmproj {model.mmproj}" if model.mmproj else ""), markup=False)
    out.print(f'use it: corral chat --model {model.name} "hello"', style="dim", markup=False)


def rm(
    name: Annotated[str, typer.Argument(help="A pulled model: org/repo:QUANT (see corral models --local).")],
    as_json: JsonOpt = False,
) -> None:
    """Delete a pulled model from corral's cache (files another pulled model uses are kept)."""
    from ..hub import remove_model

    model = run(lambda: remove_model(name))
    if as_json:
        print_json({"removed": model.name, "freed": model.size})
    else:
        out.print(f"removed {model.name}", markup=False)
