"""The agent's materialized views, one per (datacenter, topic, key), shared by every reader.

``ViewStore.view(key)`` returns the view of ``key``, creating it (and starting
its subscription) on first use. Views are kept in LRU order: past
``max_views`` the least recently read is closed, and a reaper closes views
nobody read for ``idle_timeout`` (Consul's agent cache keeps idle entries
for a while too: a reader polling every minute keeps its view).

Every view's subscription loop is a task of the store's TaskGroup; closing a
view cancels its task; ``aclose`` cancels them all, bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import Unavailable
from agent.views.view import Source, View, ViewKey

__all__ = ["IDLE_TIMEOUT", "MAX_VIEWS", "ViewStore", "ViewStoreStats"]

logger = logging.getLogger(__name__)

#: Views at most; each costs one subscription on a server and its value here.
MAX_VIEWS = 4096
#: A view nobody read for this long is closed (10 min: a dashboard polling
#: every few minutes keeps its views; a one-off read does not pin one forever).
IDLE_TIMEOUT = 600.0
_REAP_EVERY = 10.0
_CLOSE_TIMEOUT = 2.0


@dataclass(slots=True)
class ViewStoreStats:
    """Counters of the store (per-view counters are summed at read time)."""

    created: int = 0
    expired: int = 0  # closed for idleness
    evicted: int = 0  # closed to stay within max_views
    hits: int = 0  # reads answered from a cached answer
    misses: int = 0  # reads that built their answer
    delegated: int = 0  # covered reads sent to a server (read-your-writes window)


class ViewStore:
    """See the module docstring. An async context manager."""

    def __init__(
        self,
        source: Source,
        *,
        hold_timeout: float,
        max_views: int = MAX_VIEWS,
        idle_timeout: float = IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.hold_timeout = hold_timeout
        self.max_views = max_views
        self.idle_timeout = idle_timeout
        self._clock = clock
        self.stats = ViewStoreStats()
        self._views: OrderedDict[ViewKey, View] = OrderedDict()
        self._tasks: dict[ViewKey, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="views")
        await self._started.wait()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._started.set()
            while True:
                await asyncio.sleep(_REAP_EVERY)
                self.reap()

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        self._group = None
        if runner is None:
            return
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await runner
        for view in self._views.values():
            view.close()
        self._views.clear()
        self._tasks.clear()

    async def __aenter__(self) -> ViewStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- views -----------------------------------------------------------

    def view(self, key: ViewKey) -> View:
        """The view of ``key``, created and subscribed on first use; marks it most recent."""
        found = self._views.get(key)
        if found is not None:
            self._views.move_to_end(key)
            return found
        if self._group is None:
            raise Unavailable("agent views are not running")
        found = View(key, self.source, hold_timeout=self.hold_timeout, clock=self._clock)
        self._views[key] = found
        self._tasks[key] = self._group.create_task(found.run(), name=f"view-{key.topic}")
        self.stats.created += 1
        while len(self._views) > self.max_views:
            oldest = next(iter(self._views))
            self._close(oldest)
            self.stats.evicted += 1
        return found

    def _close(self, key: ViewKey) -> None:
        view = self._views.pop(key, None)
        if view is not None:
            view.close()
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    def reap(self) -> int:
        """Close the views idle past ``idle_timeout`` (never while a blocking read waits)."""
        now = self._clock()
        idle = [
            k
            for k, v in self._views.items()
            if now - v.last_read > self.idle_timeout and not v.waiting
        ]
        for key in idle:
            self._close(key)
        self.stats.expired += len(idle)
        return len(idle)

    def views(self) -> list[View]:
        """Every open view, least recently read first."""
        return list(self._views.values())

    def __len__(self) -> int:
        return len(self._views)
