"""The embedded, volatile store: one process, one event loop, no persistence.

It is the ``memory`` kind of ``agent.store.base.Store`` (like Consul's ``-dev``):
a sorted key table, one global index, a bounded history of events for
``wait`` and ``watch``, and leases expired by one background task.

Concurrency: every method runs on the one event loop and never awaits while it
changes state, so a commit is atomic without a lock. Waiters and watch
subscribers are registered under their prefixes; a commit looks up only the
prefixes of the keys it changed (the leading substrings of each key, of the
lengths some waiter or watch listens at), so a write to ``b/`` costs nothing
to, and never wakes, a waiter on ``a/``.

History: the last ``history_size`` events (50 000 by default, about a minute of
a busy datacenter at 1 000 writes/s) are kept. A ``wait`` older than that floor
answers True at once (the caller re-reads, which is always safe); a ``watch``
from before the floor raises ``CompactedError``, as etcd does.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from agent.errors import InvalidArgument, NotFound
from agent.store.base import (
    MAX_TXN_COMPARES,
    MAX_TXN_OPS,
    CompactedError,
    Compare,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    validate_ttl,
    validate_txn,
)
from agent.tasks import Background

__all__ = ["MemoryStore"]

logger = logging.getLogger(__name__)

#: How often the expiry task looks for expired leases. etcd checks every 500 ms;
#: 100 ms keeps a 1 s TTL within 10 % of its nominal length.
_EXPIRY_TICK = 0.1

#: Bound on one ``aclose`` wait for the expiry task.
_CLOSE_TIMEOUT = 2.0


@dataclass(slots=True)
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class _Subscriber:
    """One ``watch``: its queue, and whether it fell too far behind."""

    __slots__ = ("lagged_at", "prefix", "queue")

    def __init__(self, prefix: str, maxsize: int) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.lagged_at = 0


class MemoryStore:
    """The in-process ``Store``. Use as ``async with MemoryStore() as store``."""

    kind = "memory"

    def __init__(
        self,
        *,
        history_size: int = 50_000,
        watch_queue_size: int = 10_000,
        max_txn_ops: int = MAX_TXN_OPS,
        max_txn_compares: int = MAX_TXN_COMPARES,
    ) -> None:
        if history_size < 1:
            raise InvalidArgument("history_size must be at least 1")
        if not 1 <= max_txn_ops <= MAX_TXN_OPS or not 1 <= max_txn_compares <= MAX_TXN_COMPARES:
            raise InvalidArgument("transaction limits must be between 1 and the contract's")
        # Lower limits than the contract's let tests reach a caller's splitting
        # code with a handful of keys.
        self.max_txn_ops = max_txn_ops
        self.max_txn_compares = max_txn_compares
        self._index = 1
        self._data: dict[str, Entry] = {}
        self._keys: list[str] = []  # sorted, for range and prefix delete
        self._history: deque[Event] = deque(maxlen=history_size)
        self._compacted = 0  # every event with index > this is in _history
        self._leases: dict[int, _Lease] = {}
        # prefix -> {waiter future: the index it waits to be passed}
        self._waiters: dict[str, dict[asyncio.Future[None], int]] = {}
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._watch_queue_size = watch_queue_size
        self._loops = Background("memory-store")

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the lease expiry loop (idempotent)."""
        if not self._loops.running:
            self._loops.spawn(self._expire_loop(), "memory-store-expiry")

    async def aclose(self) -> None:
        """Stop the expiry loop, bounded by a couple of seconds."""
        await self._loops.aclose(_CLOSE_TIMEOUT)

    async def __aenter__(self) -> MemoryStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- reads ---------------------------------------------------------------

    async def get(self, key: str) -> tuple[Entry | None, int]:
        return self._data.get(key), self._index

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        return [self._data[k] for k in self._keys_under(prefix)], self._index

    # -- writes --------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> tuple[bool, int]:
        validate_txn(compares, ops, max_ops=self.max_txn_ops, max_compares=self.max_txn_compares)
        for put in ops:
            if isinstance(put, Put) and put.lease and put.lease not in self._leases:
                raise NotFound(f"lease {put.lease:x} not found")
        for cmp in compares:
            if cmp.prefix:
                if any(
                    self._data[k].modify_index > cmp.modify_index for k in self._keys_under(cmp.key)
                ):
                    return False, self._index
                continue
            entry = self._data.get(cmp.key)
            current = entry.modify_index if entry is not None else 0
            if current != cmp.modify_index:
                return False, self._index
        return True, self._commit(ops)

    def _commit(self, ops: Iterable[Op]) -> int:
        """Apply ``ops`` at one new index (none if nothing changes); the index after."""
        index = self._index + 1
        events: list[Event] = []
        for op in ops:
            if isinstance(op, Put):
                events.append(self._put(op, index))
            elif op.prefix:
                events += [Event("delete", key, index) for key in self._remove_prefix(op.key)]
            elif self._remove(op.key):
                events.append(Event("delete", op.key, index))
        if not events:
            return self._index
        self._index = index
        self._publish(events)
        return index

    # -- replication (agent.store.replica) --------------------------------------

    def reset(self, entries: Iterable[Entry], index: int) -> None:
        """Replace the whole content with a snapshot of another store at ``index``.

        Waiters are woken (their prefixes may have changed while we were not
        looking) and watchers end with CompactedError, since the history
        between the old content and the snapshot is unknown.
        """
        self._data = {e.key: e for e in entries}
        self._keys = sorted(self._data)
        self._index = max(index, 1)
        self._history.clear()
        self._compacted = self._index
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        for subs in self._subscribers.values():
            for sub in subs:  # they raise CompactedError once their queue drains
                sub.lagged_at = sub.lagged_at or self._index + 1

    def replicate(self, events: Sequence[Event]) -> None:
        """Apply changes another store made, keeping their indexes and entries."""
        if not events:
            return
        for event in events:
            if event.kind == "put" and event.entry is not None:
                if event.key not in self._data:
                    bisect.insort(self._keys, event.key)
                self._data[event.key] = event.entry
            elif event.key in self._data:
                del self._data[event.key]
                del self._keys[bisect.bisect_left(self._keys, event.key)]
        self._index = max(self._index, max(e.index for e in events))
        self._publish(list(events))

    def _put(self, op: Put, index: int) -> Event:
        old = self._data.get(op.key)
        if old is None:
            bisect.insort(self._keys, op.key)
            entry = Entry(op.key, op.value, index, index, 1, op.lease)
        else:
            if old.lease and old.lease != op.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(op.key)
            entry = Entry(op.key, op.value, old.create_index, index, old.version + 1, op.lease)
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        self._data[op.key] = entry
        return Event("put", op.key, index, entry)

    def _remove(self, key: str) -> bool:
        old = self._data.pop(key, None)
        if old is None:
            return False
        del self._keys[bisect.bisect_left(self._keys, key)]
        lease = self._leases.get(old.lease) if old.lease else None
        if lease is not None:
            lease.keys.discard(key)
        return True

    def _bounds(self, prefix: str) -> tuple[int, int]:
        """The slice of ``_keys`` that starts with ``prefix``."""
        lo = bisect.bisect_left(self._keys, prefix)
        end = _str_end(prefix)
        hi = bisect.bisect_left(self._keys, end, lo) if end else len(self._keys)
        return lo, hi

    def _keys_under(self, prefix: str) -> list[str]:
        lo, hi = self._bounds(prefix)
        return self._keys[lo:hi]

    def _remove_prefix(self, prefix: str) -> list[str]:
        """Remove every key under ``prefix`` in one slice (a 10 000-key delete is one memmove)."""
        lo, hi = self._bounds(prefix)
        gone = self._keys[lo:hi]
        del self._keys[lo:hi]
        for key in gone:
            old = self._data.pop(key)
            lease = self._leases.get(old.lease) if old.lease else None
            if lease is not None:
                lease.keys.discard(key)
        return gone

    def _publish(self, events: list[Event]) -> None:
        """Record ``events`` in history, wake matching waiters, feed matching watches."""
        for event in events:
            if len(self._history) == self._history.maxlen:
                self._compacted = max(self._compacted, self._history[0].index)
            self._history.append(event)
        waiters, subscribers = self._waiters, self._subscribers
        # Only the lengths somebody listens at: a 10 000-key range delete then
        # costs a few dictionary lookups per key, not one per character.
        lengths = sorted({len(p) for p in waiters} | {len(p) for p in subscribers})
        for event in events:
            key = event.key
            for n in lengths:
                if n > len(key):
                    break
                prefix = key[:n]
                for fut, after in waiters.get(prefix, {}).items():
                    if event.index > after and not fut.done():
                        fut.set_result(None)
                for sub in subscribers.get(prefix, ()):
                    if sub.lagged_at:
                        continue
                    try:
                        sub.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        sub.lagged_at = event.index

    # -- blocking ------------------------------------------------------------

    async def wait(self, prefixes: Sequence[str], after_index: int, timeout: float) -> bool:
        if self._changed_since(prefixes, after_index):
            return True
        if timeout <= 0:
            return False
        if not prefixes:  # nothing can wake it: a plain wait, never a busy loop
            await asyncio.sleep(timeout)
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        unique = set(prefixes)
        for prefix in unique:
            self._waiters.setdefault(prefix, {})[fut] = after_index
        try:
            async with asyncio.timeout(timeout):
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            for prefix in unique:
                waiters = self._waiters.get(prefix)
                if waiters is not None:
                    waiters.pop(fut, None)
                    if not waiters:
                        del self._waiters[prefix]

    def _changed_since(self, prefixes: Sequence[str], after_index: int) -> bool:
        if after_index >= self._index:
            return False
        if after_index < self._compacted:
            return True  # history is gone: the caller must re-read
        for event in reversed(self._history):
            if event.index <= after_index:
                break
            if any(event.key.startswith(p) for p in prefixes):
                return True
        return False

    def watch(self, prefix: str, start_index: int) -> AsyncIterator[Event]:
        if start_index < 0:
            raise InvalidArgument(f"watch start index must be >= 0, not {start_index}")
        # "From now" is fixed when watch() is called, not at the first iteration.
        return self._watch(prefix, start_index or self._index + 1)

    async def _watch(self, prefix: str, start_index: int) -> AsyncIterator[Event]:
        if start_index <= self._compacted:
            raise CompactedError(self._compacted)
        sub = _Subscriber(prefix, self._watch_queue_size)
        # Register and snapshot with no await in between: nothing is missed or doubled.
        self._subscribers.setdefault(prefix, set()).add(sub)
        replay = [e for e in self._history if e.index >= start_index and e.key.startswith(prefix)]
        try:
            for event in replay:
                yield event
            while True:
                if sub.lagged_at and sub.queue.empty():
                    raise CompactedError(sub.lagged_at - 1)
                yield await sub.queue.get()
        finally:
            subs = self._subscribers.get(prefix)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[prefix]

    # -- leases --------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        validate_ttl(ttl)
        lease_id = 0
        while lease_id == 0 or lease_id in self._leases:
            lease_id = secrets.randbits(63)
        self._leases[lease_id] = _Lease(ttl, asyncio.get_running_loop().time() + ttl)
        return lease_id

    async def keepalive(self, lease: int) -> bool:
        state = self._leases.get(lease)
        if state is None:
            return False
        now = asyncio.get_running_loop().time()
        if state.deadline <= now:
            self._end_lease(lease)
            return False
        state.deadline = now + state.ttl
        return True

    async def revoke_lease(self, lease: int) -> None:
        self._end_lease(lease)

    def _end_lease(self, lease: int) -> None:
        state = self._leases.pop(lease, None)
        if state is not None and state.keys:
            self._commit([Delete(key) for key in sorted(state.keys)])

    async def _expire_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_EXPIRY_TICK)
            now = loop.time()
            for lease in [i for i, s in self._leases.items() if s.deadline <= now]:
                logger.debug("lease expired lease=%x", lease)
                self._end_lease(lease)


def _str_end(prefix: str) -> str:
    """The first ``str`` after every string that starts with ``prefix`` ("" = no end).

    Keys here sort as Python strings (by code point, as UTF-8 bytes do).
    """
    while prefix and prefix[-1] == chr(0x10FFFF):
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else ""
