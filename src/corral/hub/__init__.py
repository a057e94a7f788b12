"""Models from the Hugging Face Hub: ``corral pull org/repo:QUANT``, the local cache, and ``hf://``
references that work wherever a GGUF path does (pulled on first use).

Only :mod:`corral.hub.download` talks to the network, through the ``huggingface_hub`` library
(the ``hub`` extra), imported when a pull happens.
"""

from __future__ import annotations

from pathlib import Path

from .cache import PulledModel, find_local, hub_dir, local_models, remove_model
from .download import Progress, hub_endpoint, is_offline, pull
from .refs import HubRef, is_hub_ref, parse_ref

__all__ = [
    "HubRef",
    "PulledModel",
    "find_local",
    "hub_dir",
    "hub_endpoint",
    "is_hub_ref",
    "is_offline",
    "local_models",
    "parse_ref",
    "pull",
    "remove_model",
    "resolve_model",
]


def resolve_model(value: str | Path, *, progress: Progress | None = None) -> tuple[Path, PulledModel | None]:
    """A GGUF path, or the pulled model an ``hf://`` reference (or a pulled name) names: pulled on
    first use. Anything else is returned as a path, unchanged."""
    text = str(value)
    if text.startswith("hf://"):
        model = pull(text, progress=progress)
        return model.path, model
    path = Path(text).expanduser()
    if not path.exists() and is_hub_ref(text):
        found = find_local(text)
        if found is None:
            found = pull(text, progress=progress)
        return found.path, found
    return path, None
