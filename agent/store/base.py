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

Limits (``validate_txn`` checks them, the same on every store, so a caller that
works on one store works on the other; a store says its own in ``max_txn_ops``
and ``max_txn_compares``, which may be lower, never higher):

- ``MAX_TXN_OPS`` (128) ops and ``MAX_TXN_COMPARES`` (128) compares per
  transaction: etcd's default ``--max-txn-ops``, which counts every op of a
  request, nested transactions included. (The etcd store's own last-write
  marker does not count: a full transaction sends it separately.)
- ``MAX_TXN_BYTES`` (1 MiB) of keys and values per transaction: etcd refuses a
  request over ``--max-request-bytes`` (1.5 MiB by default); the rest is room
  for the namespace prefix and framing of every op.

A caller whose write can grow with the data (a recursive delete, a node with
its services, a session with its locks) must stay within them: with range
deletes (``Delete(prefix=True)`` is one op however many keys it removes), or
by splitting the write itself; see ``agent.state``. Input over a limit is
``agent.errors.InvalidArgument``, like every other bad transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.errors import InvalidArgument

__all__ = [
    "MAX_TXN_BYTES",
    "MAX_TXN_COMPARES",
    "MAX_TXN_OPS",
    "CompactedError",
    "Compare",
    "Delete",
    "Entry",
    "Event",
    "Op",
    "Put",
    "Store",
    "prefix_end",
    "validate_ttl",
    "validate_txn",
]

#: Compares per transaction (etcd's default ``--max-txn-ops``); see the module docstring.
MAX_TXN_COMPARES = 128
#: Ops per transaction (etcd's default ``--max-txn-ops``); see the module docstring.
MAX_TXN_OPS = 128
#: Bytes of keys and values per transaction, under etcd's 1.5 MiB request limit.
MAX_TXN_BYTES = 1024 * 1024


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
    """A txn guard: the key's modify index equals ``modify_index`` (0: key absent).

    With ``prefix``, a guard on a range instead: no key starting with ``key``
    was put after ``modify_index`` (every one has a modify index at most
    that). A delete leaves no key behind, so it passes; a caller that must
    see deletions writes a tombstone with them (as ``agent.state.kv`` does).
    """

    key: str
    modify_index: int
    prefix: bool = False


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
    #: The most ops one ``txn`` takes (``MAX_TXN_OPS`` unless built lower).
    max_txn_ops: int
    #: The most compares one ``txn`` takes (``MAX_TXN_COMPARES`` unless built lower).
    max_txn_compares: int

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
        More than ``max_txn_ops`` ops or ``max_txn_compares`` compares, or more
        than ``MAX_TXN_BYTES``, is InvalidArgument (see ``validate_txn``).
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


def validate_ttl(ttl: int) -> None:
    """InvalidArgument unless ``ttl`` is a whole number of seconds, at least 1."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise InvalidArgument(f"lease TTL must be a whole number of seconds >= 1, not {ttl!r}")


def validate_txn(
    compares: Sequence[Compare],
    ops: Sequence[Op],
    *,
    max_ops: int = MAX_TXN_OPS,
    max_compares: int = MAX_TXN_COMPARES,
) -> None:
    """InvalidArgument for what etcd refuses, so both stores take the same transactions.

    At most ``max_compares`` compares and ``max_ops`` ops, ``MAX_TXN_BYTES`` of
    keys and values; no empty key; bytes values; a key put at most once, and
    not also deleted, in one transaction.
    """
    if len(compares) > max_compares:
        raise InvalidArgument(f"too many compares in a transaction (max {max_compares})")
    if len(ops) > max_ops:
        raise InvalidArgument(f"too many operations in a transaction (max {max_ops})")
    size = 0
    for cmp in compares:
        if not isinstance(cmp, Compare) or not (cmp.key or cmp.prefix) or cmp.modify_index < 0:
            raise InvalidArgument(f"bad transaction compare {cmp!r}")
        size += len(cmp.key)
    puts: set[str] = set()
    deletes: list[Delete] = []
    for op in ops:
        if isinstance(op, Put):
            if not op.key:
                raise InvalidArgument("key must not be empty")
            if not isinstance(op.value, bytes):
                raise InvalidArgument(f"value of {op.key!r} must be bytes")
            if op.key in puts:
                raise InvalidArgument(f"key {op.key!r} is put twice in one transaction")
            puts.add(op.key)
            size += len(op.key) + len(op.value)
        elif isinstance(op, Delete):
            if not op.key and not op.prefix:
                raise InvalidArgument("key must not be empty")
            deletes.append(op)
            size += len(op.key)
        else:
            raise InvalidArgument(f"unknown transaction op {op!r}")
    if size > MAX_TXN_BYTES:
        raise InvalidArgument(f"transaction too large: {size} bytes (max {MAX_TXN_BYTES})")
    exact = {d.key for d in deletes if not d.prefix}
    prefixes = {d.key for d in deletes if d.prefix}
    lengths = sorted({len(p) for p in prefixes})
    for key in puts:
        if key in exact or any(key[:n] in prefixes for n in lengths if n <= len(key)):
            raise InvalidArgument(f"key {key!r} is put and deleted in one transaction")
