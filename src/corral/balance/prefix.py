"""A bounded index of which replica recently processed which conversation prefix.

A request's prompt is the chat template applied to its messages, so two requests whose first k messages are
equal share (about) the first k messages' worth of prompt tokens: what llama-server's prompt cache reuses.
Each request becomes a hash chain, one link per leading message (``h_i = hash(h_{i-1}, message_i)``); the
index maps a link to the replicas that saw it and when. The longest link a replica holds is how much of
this request's prompt it probably has cached. Memory is bounded by ``capacity`` links (LRU) and links
older than ``ttl`` seconds count as gone (a replica's cache is overwritten by other conversations).

Hashes are Python's own ``hash`` (salted per process): the index lives in one process, never on disk.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["PrefixIndex", "prefix_chain"]

_SEED = hash("corral.balance")


def _message_hash(message: Any) -> int:
    try:
        return hash(message)  # corral Messages are frozen dataclasses: hashable, cheap
    except TypeError:  # a dict (a raw wire message): its repr is stable within the process
        return hash(repr(message))


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


def prefix_chain(messages: Iterable[Any], *, limit: int = 256) -> tuple[int, ...]:
    """One hash per leading message, each covering every message before it (at most ``limit`` links:
    a conversation longer than that is told apart by its first ``limit`` messages).

    The leading system (developer) messages make no link of their own: they are shared by every
    conversation of an application, so holding them says nothing about where *this* conversation is,
    and new conversations would all crowd onto the first replica that saw the system prompt."""
    chain: list[int] = []
    h = _SEED
    leading = True
    for m in messages:
        h = hash((h, _message_hash(m)))
        if leading and _role(m) in ("system", "developer"):
            continue
        leading = False
        chain.append(h)
        if len(chain) >= limit:
            break
    return tuple(chain)


class PrefixIndex:
    """link -> (the replica that last processed it, when), least recently used links dropped beyond
    ``capacity``. One replica per link: the latest is the one whose cache most likely still holds it (an
    older holder of a shared link is still found through its longer, own links)."""

    def __init__(self, capacity: int = 100_000, ttl: float = 1800.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.ttl = ttl
        self._links: OrderedDict[int, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._links)

    def match(self, chain: Sequence[int], now: float) -> dict[str, int]:
        """For each replica holding part of ``chain``: how many leading links it holds (longest first wins)."""
        found: dict[str, int] = {}
        oldest = now - self.ttl
        links = self._links
        for depth in range(len(chain), 0, -1):
            seen = links.get(chain[depth - 1])
            if seen is not None and seen[1] >= oldest and seen[0] not in found:
                found[seen[0]] = depth
        return found

    def record(self, chain: Sequence[int], replica: str, now: float) -> None:
        """``replica`` is processing this prompt: after it, every link of the chain is in its cache."""
        links = self._links
        entry = (replica, now)
        for link in chain:
            if link in links:
                links.move_to_end(link)
            links[link] = entry
        while len(links) > self.capacity:
            links.popitem(last=False)

    def forget(self, replica: str) -> None:
        """A replica restarted (its cache is empty): drop what it held. O(index); only on re-admission."""
        for link in [k for k, (r, _) in self._links.items() if r == replica]:
            del self._links[link]
