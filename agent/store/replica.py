"""A local, in-memory mirror of a remote store, for reads.

Consul's servers answer reads from their own in-memory state store; with
etcd, every read would otherwise be a round trip per key or prefix (a health
read of a 50-instance service was over 100 of them). ``ReplicaStore`` loads a
snapshot of the datacenter's namespace, then follows one etcd watch of the
whole namespace, applying each change to a ``MemoryStore`` at the index etcd
gave it. Reads, waits and watches are served by that mirror; writes and
leases go to the source.

Freshness: ``caught_up(index)`` waits until the mirror has applied ``index``
(a server calls it after its own writes, so a client reads what it wrote);
``barrier()`` asks the source for its current index and waits for the
mirror to reach it (one small etcd round trip), which makes a default or
consistent read see every write acknowledged before it began, whichever
server took the write. Stale reads skip the barrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Sequence

from agent.errors import StoreError
from agent.store.base import LAST_WRITE_KEY, CompactedError, Compare, Entry, Event, Op, Store
from agent.store.memory import MemoryStore
from agent.tasks import Background

__all__ = ["ReplicaStore"]

logger = logging.getLogger(__name__)

CATCH_UP_TIMEOUT = 5.0
_BARRIER_KEY = "\x00barrier"


class ReplicaStore:
    """Reads from a mirror of ``source``; the source is started and closed by its owner."""

    def __init__(self, source: Store) -> None:
        self.source = source
        self.kind = source.kind
        self.max_txn_ops = source.max_txn_ops
        self.max_txn_compares = source.max_txn_compares
        self.mirror = MemoryStore()
        self._loops = Background("store-replica")
        # Writers waiting in ``caught_up``: (index, sequence, future), a heap, so
        # an applied event wakes only the waiters it satisfies. A Condition's
        # notify_all woke every waiter for every event: with 64 registrations
        # in flight and 7 events per registration, 448 wake-ups per write.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._ready = asyncio.Event()

    @property
    def index(self) -> int:
        """The last index the mirror applied."""
        return self.mirror._index

    async def start(self) -> None:
        self._loops.spawn(self._follow(), "store-replica")
        async with asyncio.timeout(30):
            await self._ready.wait()

    async def aclose(self) -> None:
        await self._loops.aclose()

    async def _load(self) -> int:
        entries, index = await self.source.range("")
        self.mirror.reset(entries, index)
        self._advanced()
        return index

    def _advanced(self) -> None:
        """Wake the ``caught_up`` waiters whose index the mirror has now applied."""
        while self._waiters and self._waiters[0][0] <= self.index:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)

    async def _follow(self) -> None:
        backoff = 0.1
        while True:
            try:
                index = await self._load()
                self._ready.set()
                async for event in self._watch_source(index + 1):
                    # The events of one transaction come together, in order; the
                    # catalog writes its index keys last, so a blocking read woken
                    # by an index key finds the data it stands for already here.
                    self.mirror.replicate([event])
                    self._advanced()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except (CompactedError, StoreError) as exc:
                logger.warning("store replica: reloading after error=%s", exc)
            except Exception:
                logger.exception("store replica: watch failed; reloading")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _watch_source(self, start: int) -> AsyncIterator[Event]:
        from agent.store.etcd import EtcdStore

        if isinstance(self.source, EtcdStore):
            return self.source.watch("", start, include_marker=True)
        return self.source.watch("", start)

    async def caught_up(self, index: int, timeout: float = CATCH_UP_TIMEOUT) -> None:
        """Wait until the mirror has applied ``index`` (bounded; StoreError past it)."""
        if self.index >= index:
            return
        entry = (index, next(self._seq), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[2]
        except TimeoutError as exc:
            raise StoreError(
                f"store replica is behind: at index {self.index}, waiting for {index}"
            ) from exc
        finally:
            future = entry[2]
            if not future.done() or future.cancelled():  # timed out or cancelled
                future.cancel()
                with contextlib.suppress(ValueError):  # not left in the heap
                    self._waiters.remove(entry)
                    heapq.heapify(self._waiters)

    async def barrier(self) -> None:
        """Wait until the mirror holds every write the source had acknowledged."""
        last_write = getattr(self.source, "last_write_index", None)
        if last_write is not None:
            index: int = await last_write()
        else:
            _, index = await self.source.get(_BARRIER_KEY)
        await self.caught_up(index)

    # ----- reads from the mirror ------------------------------------------

    async def get(self, key: str) -> tuple[Entry | None, int]:
        return await self.mirror.get(key)

    async def range(self, prefix: str) -> tuple[list[Entry], int]:
        entries, index = await self.mirror.range(prefix)
        return [e for e in entries if e.key != LAST_WRITE_KEY], index

    async def wait(self, prefixes: Sequence[str], after_index: int, timeout: float) -> bool:
        return await self.mirror.wait(prefixes, after_index, timeout)

    def watch(self, prefix: str, start_index: int) -> AsyncIterator[Event]:
        return self._without_marker(self.mirror.watch(prefix, start_index))

    @staticmethod
    async def _without_marker(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        async for event in events:
            if event.key != LAST_WRITE_KEY:
                yield event

    # ----- writes to the source -------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> tuple[bool, int]:
        applied, index = await self.source.txn(compares, ops)
        await self.caught_up(index)
        return applied, index

    async def grant_lease(self, ttl: int) -> int:
        return await self.source.grant_lease(ttl)

    async def keepalive(self, lease: int) -> bool:
        return await self.source.keepalive(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self.source.revoke_lease(lease)
