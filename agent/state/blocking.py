"""Blocking queries over the store, as Consul's servers answer them.

A read names the index keys (or key prefixes) its result depends on. With
``min_index`` 0, or a result whose index is already past it, the answer is
immediate. Otherwise the query waits on exactly those prefixes, so a write to
service B never wakes a watcher of service A, and re-reads when woken. On
timeout the unchanged result is returned, without error.

Wait times follow Consul: default 5 min, at most 10 min, plus up to wait/16 of
random jitter so that many watchers do not all come back at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from agent.store import Store
from agent.store.replica import ReplicaStore

__all__ = [
    "DEFAULT_WAIT",
    "MAX_WAIT",
    "QueryOpts",
    "Read",
    "blocking_query",
    "effective_wait",
    "reader_caught_up",
]

T = TypeVar("T")

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0


@dataclass(frozen=True, slots=True)
class QueryOpts:
    """Query options of one read, taken from the request once at the edge."""

    datacenter: str = ""
    min_index: int = 0
    max_wait: float = 0.0
    consistency: str = "default"
    token: str = ""
    filter: str = ""


@dataclass(frozen=True, slots=True)
class Read(Generic[T]):
    """One read's result, its index (never 0) and the store index it was read at."""

    value: T
    index: int
    store_index: int


def effective_wait(max_wait: float, rng: random.Random | None = None) -> float:
    """The wait of a blocking query: default 5 min, capped at 10 min, plus jitter."""
    wait = DEFAULT_WAIT if max_wait <= 0 else min(max_wait, MAX_WAIT)
    return wait + (rng or random).uniform(0, wait / 16)


async def blocking_query(
    store: Store,
    opts: QueryOpts,
    prefixes: Sequence[str],
    read: Callable[[], Awaitable[Read[T]]],
) -> Read[T]:
    """Run ``read``; if ``opts.min_index`` asks for it, block until it moves past.

    On a replica, a default or consistent read first waits for the replica to
    hold every write acknowledged so far (``barrier``); a stale read does not.
    """
    if isinstance(store, ReplicaStore) and opts.consistency != "stale":
        await store.barrier()
    result = await read()
    if opts.min_index <= 0 or result.index > opts.min_index:
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + effective_wait(opts.max_wait)
    after = opts.min_index
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return result
        if not await store.wait(prefixes, after, remaining):
            return result
        result = await read()
        if result.index > opts.min_index:
            return result
        # Woken by a change that did not move this result's index (a prefix
        # neighbour): wait for changes after what we have now seen.
        after = max(after, result.store_index)


async def reader_barrier(reader: Store) -> None:
    """Wait until ``reader`` (a replica) holds every write acknowledged so far."""
    if isinstance(reader, ReplicaStore):
        await reader.barrier()


async def reader_caught_up(reader: Store, index: int) -> None:
    """After a write at ``index``: wait until ``reader`` (a replica) has it."""
    if isinstance(reader, ReplicaStore):
        await reader.caught_up(index)
