"""The store protocol: an MVCC key/value store with leases, watches and CAS.

Everything the servers keep (catalog, KV, members, leader) is laid out on this
small surface by ``agent.state``; the two implementations, ``memory`` (embedded,
volatile, one server per datacenter) and ``etcd`` (durable, shared by all the
servers of a datacenter), only have to provide it. The model is etcd's:

- One monotonically increasing *index* (etcd's revision) counts every committed
  write. Every entry remembers the index that created it and the one that last
  modified it. A fresh store answers index 1 or more, never 0.
- ``txn`` is atomic: all compares hold and all ops apply at one new index, or
  nothing applies.
- ``wait`` is the heart of blocking queries: it returns True as soon as any key
  under one of the given prefixes is put or deleted at an index greater than
  ``after_index`` (at once if that already happened), False when the timeout
  runs out. Changes under other prefixes never wake it.
- Leases carry a TTL in seconds; keys put with a lease vanish (as a delete event)
  when the lease expires or is revoked.
- ``watch`` streams every change under a prefix from an index on, in order.

Keys are ``str`` (UTF-8), values ``bytes``. Implementations raise
``agent.errors.StoreError`` when the backend fails, never a backend exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "CompactedError",
    "Compare",
    "Delete",
    "Entry",
    "Event",
    "Op",
    "Put",
    "Store",
    "prefix_end",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One key as stored."""

    key: str
    value: bytes
    create_index: int
    modify_index: int
    version: int = 1
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change: a put (``entry`` is the new entry) or a delete (``entry`` is None)."""

    kind: Literal["put", "delete"]
    key: str
    index: int
    entry: Entry | None = None


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn guard: the key's modify index equals ``modify_index`` (0: key absent)."""

    key: str
    modify_index: int


@dataclass(frozen=True, slots=True)
class Put:
    """A txn op: set ``key`` to ``value``, bound to ``lease`` when non-zero."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """A txn op: delete ``key``, or every key starting with it when ``prefix``."""

    key: str
    prefix: bool = False


Op = Put | Delete


#: Written by every etcd transaction (see EtcdStore.last_write_index); hidden
#: from reads and watches, so no caller of a store ever sees it.
LAST_WRITE_KEY = "\x00last-write"


class CompactedError(Exception):
    """``watch`` was asked for an index the store no longer has history for."""

    def __init__(self, compact_index: int) -> None:
        super().__init__(f"history compacted up to index {compact_index}")
        self.compact_index = compact_index


def prefix_end(prefix: str) -> str:
    """The first key after every key that starts with ``prefix`` ("" = no end)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return raw.decode("utf-8", errors="surrogateescape")
        raw.pop()
    return ""


class Store(Protocol):
    """What ``agent.state`` needs from a store. See the module docstring."""

    #: "memory" or "etcd": a memory store allows one server per datacenter.
    kind: str

    async def start(self) -> None:
        """Connect (etcd) or start background work (lease expiry)."""

    async def aclose(self) -> None:
        """Stop background work and close connections; bounded in time."""

    async def get(self, key: str) -> tuple[Entry | None, int]:
        """The entry at ``key`` (or None) and the store's current index."""

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        """Every entry whose key starts with ``prefix``, by key, and the current index."""

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> tuple[bool, int]:
        """Apply ``ops`` atomically if every compare holds.

        Returns (applied, index): the index of the write when applied, else the
        current index. An empty ``ops`` with passing compares writes nothing.
        """

    async def wait(self, prefixes: Sequence[str], after_index: int, timeout: float) -> bool:
        """True once a key under one of ``prefixes`` changes after ``after_index``."""

    def watch(self, prefix: str, start_index: int) -> AsyncIterator[Event]:
        """Every change under ``prefix`` from ``start_index`` on (0: from now)."""

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds (at least 1); its non-zero ID."""

    async def keepalive(self, lease: int) -> bool:
        """Renew ``lease`` for its TTL; False if it has expired or never existed."""

    async def revoke_lease(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys; no error if it is already gone."""
