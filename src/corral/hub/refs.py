"""Model references on the Hugging Face Hub: ``org/repo[:QUANT]``, ``hf://org/repo[:QUANT]``,
``org/repo:file.gguf``, with an optional ``@revision`` after the repo (``org/repo@v2:Q8_0``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["HubRef", "is_hub_ref", "parse_ref"]

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TAG = re.compile(r"^[\w.+-]+$")


@dataclass(frozen=True, slots=True)
class HubRef:
    repo: str  # "org/name"
    quant: str | None = None  # "Q4_K_M" as the user wrote it; matched case-insensitively
    file: str | None = None  # an exact file in the repo, instead of a quant
    revision: str = "main"

    @property
    def name(self) -> str:
        """The name a pulled model is found by: ``org/repo:QUANT`` (quant upper-cased)."""
        tag = self.file or (self.quant.upper() if self.quant else None)
        return f"{self.repo}:{tag}" if tag else self.repo

    def __str__(self) -> str:
        return self.name


def is_hub_ref(value: str) -> bool:
    """``hf://…`` always; a bare ``org/repo[:quant]`` only when it cannot be a file path."""
    if value.startswith("hf://"):
        return True
    if value.startswith(("/", "./", "../", "~")) or (value.lower().endswith(".gguf") and ":" not in value):
        return False
    try:
        parse_ref(value)
    except ConfigurationError:
        return False
    return True


def parse_ref(value: str) -> HubRef:
    text = value.strip()
    text = text.removeprefix("hf://")
    text = re.sub(r"^(https?://)?(www\.)?huggingface\.co/", "", text)
    repo_part, _, tag = text.partition(":")
    repo, _, revision = repo_part.partition("@")
    repo = repo.strip("/")
    if not _REPO.match(repo) or ".." in repo:
        raise ConfigurationError(
            f"{value!r} is not a Hugging Face model reference: expected org/repo[:QUANT], e.g. "
            "bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"
        )
    if revision and not _TAG.match(revision):
        raise ConfigurationError(f"{value!r}: bad revision {revision!r}")
    if not tag:
        return HubRef(repo, revision=revision or "main")
    if tag.lower().endswith(".gguf"):
        if ".." in tag.split("/") or tag.startswith("/"):
            raise ConfigurationError(f"{value!r}: bad file name {tag!r}")
        return HubRef(repo, file=tag, revision=revision or "main")
    if not _TAG.match(tag):
        raise ConfigurationError(f"{value!r}: bad quantization tag {tag!r} (e.g. Q4_K_M, Q8_0)")
    return HubRef(repo, quant=tag, revision=revision or "main")
