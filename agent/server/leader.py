"""Store-backed leader election: one leader per datacenter.

The leader holds ``leader/`` bound to a lease it keeps alive (TTL ``ttl``
seconds; renewed every ttl/3). Candidates create the key only if it is absent
(a compare on modify index 0) and otherwise wait for it to change. A leader
whose renewal fails steps down at once; its leader-only work is cancelled
through ``on_lost``. Everyone tracks who leads, for Status.Leader and the
``known_leader`` of every read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agent.errors import StoreError
from agent.state import keys
from agent.store import Compare, Put, Store
from agent.tasks import Background, cancel_and_wait

__all__ = ["LeaderElection"]

logger = logging.getLogger(__name__)


class LeaderElection:
    """Campaign for, hold and watch the datacenter's leadership."""

    def __init__(
        self,
        store: Store,
        name: str,
        address: str,
        *,
        ttl: int = 5,
        on_elected: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.address = address
        self.ttl = max(1, ttl)
        self.on_elected = on_elected
        self.is_leader = False
        self.leader_name = ""
        self.leader_address = ""
        self._loops = Background("leader-election")
        self._lease = 0
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self._loops.spawn(self._run(), "leader-election")

    async def aclose(self) -> None:
        await self._loops.aclose()
        if self._lease:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.revoke_lease(self._lease), 2.0)
        self.is_leader = False

    @property
    def known_leader(self) -> bool:
        return bool(self.leader_address)

    async def wait_for_leader(self, timeout: float) -> bool:
        """True once some server leads (bounded by ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.known_leader:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # not wait_for: 3.11's can eat a cancel
                    await self._changed.wait()
        return True

    async def _refresh(self) -> int:
        entry, index = await self.store.get(keys.LEADER)
        if entry is None:
            self.leader_name = self.leader_address = ""
        else:
            info = json.loads(entry.value)
            self.leader_name, self.leader_address = info["name"], info["address"]
        self._changed.set()
        return index

    async def _run(self) -> None:
        value = json.dumps({"name": self.name, "address": self.address}).encode()
        while True:
            try:
                index = await self._refresh()
                if not self.leader_address:
                    lease = await self.store.grant_lease(self.ttl)
                    won, index = await self.store.txn(
                        [Compare(keys.LEADER, 0)], [Put(keys.LEADER, value, lease=lease)]
                    )
                    if won:
                        self._lease = lease
                        await self._lead()
                        continue
                    await self.store.revoke_lease(lease)
                    index = await self._refresh()
                await self.store.wait([keys.LEADER], index, self.ttl)
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                logger.warning("leader election: store error=%s", exc)
                self.leader_name = self.leader_address = ""
                await asyncio.sleep(min(1.0, self.ttl / 3))

    async def _lead(self) -> None:
        self.is_leader = True
        await self._refresh()
        logger.info("leadership acquired name=%s", self.name)
        work: asyncio.Task[None] | None = (
            asyncio.create_task(self.on_elected()) if self.on_elected else None
        )
        try:
            while await self.store.keepalive(self._lease):
                await asyncio.sleep(self.ttl / 3)
            logger.warning("leadership lost: lease lapsed name=%s", self.name)
        except StoreError as exc:
            logger.warning("leadership lost: store error=%s", exc)
        finally:
            self.is_leader = False
            self._lease = 0
            if work is not None:
                await cancel_and_wait(work)
            self.leader_name = self.leader_address = ""
