"""Manager: the ordered server list of one datacenter, as Consul's router.Manager.

The first server of the list is the one every RPC goes to. The list is an
immutable tuple: readers (``find_server``, ``servers``) take it without a lock;
writers copy it, change the copy and publish it whole under ``_list_lock``.
Work that awaits (the pings of a rebalance) happens outside the lock on a
private copy, which is then reconciled with whatever changed meanwhile.

Rules (DESIGN.md section 2):

- ``find_server()`` returns the first server, or None; it never looks at ``offline``.
- ``add_server(s)`` replaces a server of the same name in place, else appends;
  the manager is then online.
- ``remove_server(s)`` removes by name; the others keep their order.
- ``notify_failed_server(s)`` moves the first server to the end, only when there
  is more than one server, ``s`` is the first, and no other caller is rotating
  right now (a try-lock: a second caller returns at once, it never queues, so a
  burst of failed calls moves the list by one, not by the size of the burst).
- ``rebalance_servers()`` shuffles, then pings from the front until a server
  answers; none answers: ``offline`` and the list stays as it was.
- Start: no servers, offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from agent.router.server import Server
from agent.tasks import Background

__all__ = [
    "MIN_REBALANCE_INTERVAL",
    "REBALANCE_CONNS_PER_SEC_PER_SERVER",
    "REBALANCE_JITTER",
    "Manager",
    "ManagerState",
    "Pinger",
]

logger = logging.getLogger(__name__)

# A client keeps its first server at least this long (Consul's
# clientRPCMinReuseDuration), plus a random share of REBALANCE_JITTER so that
# the clients of a cluster do not all move at once.
MIN_REBALANCE_INTERVAL = 120.0
REBALANCE_JITTER = 60.0
# The rebalance rate the servers of a datacenter absorb together: each server
# takes about 64 new client connections per second. With many clients the
# interval grows so that the whole cluster stays under that rate.
REBALANCE_CONNS_PER_SEC_PER_SERVER = 64


class Pinger(Protocol):
    """Probes a server; the connection pool satisfies this without importing it."""

    async def ping(self, server: Server) -> bool: ...


@dataclass(frozen=True, slots=True)
class ManagerState:
    """A snapshot of one manager, for introspection."""

    datacenter: str
    servers: tuple[Server, ...]
    offline: bool
    next_rebalance: float
    rebalance_in: float

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "Datacenter": self.datacenter,
            "Servers": [
                {"Name": s.name, "Address": s.address, "Datacenter": s.datacenter}
                for s in self.servers
            ],
            "Offline": self.offline,
            "RebalanceIn": round(self.rebalance_in, 3),
        }


class Manager:
    """The server list of one datacenter, with its rebalance loop."""

    def __init__(
        self,
        datacenter: str,
        pinger: Pinger,
        *,
        self_name: str | None = None,
        member_count: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        fixed_interval: float | None = None,
    ) -> None:
        """``fixed_interval``: the test hook (``--rebalance-interval``) that
        replaces the computed interval. ``self_name``: on a server agent, its
        own name (treated as healthy
        without a ping). ``member_count``: how many LAN members the datacenter
        has, for the rebalance interval. ``clock``: monotonic seconds."""
        self.datacenter = datacenter
        self._fixed_interval = fixed_interval
        self._pinger = pinger
        self._self_name = self_name or None
        self._member_count = member_count or (lambda: 0)
        self._rng = rng or random.Random()
        self._clock = clock
        # Published state: replaced whole, read without a lock.
        self._servers: tuple[Server, ...] = ()
        self._offline = True
        # Writers of _servers take this lock; readers never do.
        self._list_lock = threading.Lock()
        # Held while one caller rotates on a failure; others skip, never wait.
        self._notify_failed_barrier = threading.Lock()
        self.next_rebalance = self._clock() + MIN_REBALANCE_INTERVAL
        self.rebalances = 0
        self._wake = asyncio.Event()
        self._loops = Background(f"rebalance-{datacenter}")

    # -- readers (no lock) -------------------------------------------------

    @property
    def servers(self) -> tuple[Server, ...]:
        """The current list, first server first."""
        return self._servers

    @property
    def offline(self) -> bool:
        """True at start and after a rebalance found no healthy server."""
        return self._offline

    @property
    def num_servers(self) -> int:
        return len(self._servers)

    def find_server(self) -> Server | None:
        """The server RPCs go to: the first of the list, or None if there is none.

        It does not look at ``offline``: a client with only unhealthy servers
        still tries them (the call will tell).
        """
        servers = self._servers
        return servers[0] if servers else None

    def state(self) -> ManagerState:
        now = self._clock()
        return ManagerState(
            datacenter=self.datacenter,
            servers=self._servers,
            offline=self._offline,
            next_rebalance=self.next_rebalance,
            rebalance_in=max(self.next_rebalance - now, 0.0),
        )

    # -- writers (copy, change, publish under _list_lock) ------------------

    def add_server(self, server: Server) -> None:
        """Add ``server``, or replace the one of the same name where it stands."""
        with self._list_lock:
            servers = list(self._servers)
            for i, known in enumerate(servers):
                if known.name == server.name:
                    servers[i] = server
                    break
            else:
                servers.append(server)
                logger.info(
                    "added server name=%s address=%s dc=%s",
                    server.name,
                    server.address,
                    server.datacenter,
                )
            self._servers = tuple(servers)
            self._offline = False

    def remove_server(self, server: Server) -> None:
        """Remove the server of ``server``'s name, if known; the rest keep their order."""
        with self._list_lock:
            servers = tuple(s for s in self._servers if s.name != server.name)
            if len(servers) != len(self._servers):
                logger.info("removed server name=%s dc=%s", server.name, self.datacenter)
            self._servers = servers

    def notify_failed_server(self, server: Server) -> None:
        """Move ``server`` to the end of the list if it is first (the RPC path failed on it).

        Checked without a lock first, then again under the list lock; the try-lock
        makes concurrent failure reports rotate once, not once each.
        """
        servers = self._servers
        if len(servers) <= 1 or servers[0].name != server.name:
            return
        if not self._notify_failed_barrier.acquire(blocking=False):
            return
        try:
            with self._list_lock:
                servers = self._servers
                if len(servers) > 1 and servers[0].name == server.name:
                    self._servers = (*servers[1:], servers[0])
                    logger.info(
                        "cycled away from failed server name=%s next=%s",
                        server.name,
                        self._servers[0].name,
                    )
        finally:
            self._notify_failed_barrier.release()

    # -- rebalance ---------------------------------------------------------

    async def _healthy(self, server: Server) -> bool:
        if self._self_name is not None and server.name == self._self_name:
            return True
        try:
            return bool(await self._pinger.ping(server))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("ping raised name=%s error=%r", server.name, exc)
            return False

    async def rebalance_servers(self) -> bool:
        """Shuffle the list and put a healthy server first; True if published.

        Pings run on a private copy without the lock; then the copy is
        reconciled with adds and removes made meanwhile.
        """
        servers = list(self._servers)
        self._rng.shuffle(servers)
        healthy = False
        for _ in range(len(servers)):
            if await self._healthy(servers[0]):
                healthy = True
                break
            servers.append(servers.pop(0))
        if not healthy:
            self._offline = True
            logger.warning(
                "no healthy server found dc=%s servers=%d", self.datacenter, len(servers)
            )
            return False
        self._offline = False
        if not self._reconcile(servers):
            logger.debug("rebalance dropped: chosen server left meanwhile dc=%s", self.datacenter)
            return False
        return True

    def _reconcile(self, shuffled: list[Server]) -> bool:
        """Publish ``shuffled`` merged with changes made while it was pinged.

        Servers removed meanwhile are dropped, servers added meanwhile are
        appended (in the order they were added), servers replaced meanwhile
        take their new version. If the chosen first server was removed, the
        current list is kept and False returned.
        """
        with self._list_lock:
            current = self._servers
            by_name = {s.name: s for s in current}
            if not shuffled or shuffled[0].name not in by_name:
                return False
            shuffled_names = {s.name for s in shuffled}
            merged = [by_name[s.name] for s in shuffled if s.name in by_name]
            merged.extend(s for s in current if s.name not in shuffled_names)
            self._servers = tuple(merged)
            return True

    # -- rebalance timer ---------------------------------------------------

    def rebalance_interval(self) -> float:
        """Seconds until the next rebalance.

        ``max(members / (servers * 64), 120 + U[0, 60))``: 10,000 members and 3
        servers give 10000 / 192 = 52 s, below the floor, so 120-180 s; 100,000
        members and 3 servers give 100000 / 192 = 521 s, about 8.7 min.
        """
        if self._fixed_interval is not None:
            return self._fixed_interval
        jittered_floor = MIN_REBALANCE_INTERVAL + self._rng.uniform(0.0, REBALANCE_JITTER)
        num_servers = len(self._servers)
        if num_servers == 0:
            return jittered_floor
        members = max(self._member_count(), 0)
        scaled = members / (num_servers * REBALANCE_CONNS_PER_SEC_PER_SERVER)
        return max(scaled, jittered_floor)

    def reset_rebalance_timer(self) -> float:
        """Set the next rebalance one interval from now; returns the interval."""
        interval = self.rebalance_interval()
        self.next_rebalance = self._clock() + interval
        self._wake.set()
        return interval

    def set_rebalance_timer(self, seconds: float) -> None:
        """Test hook: rebalance ``seconds`` from now (0: at once)."""
        self.next_rebalance = self._clock() + max(seconds, 0.0)
        self._wake.set()

    def trigger_rebalance(self) -> None:
        """Rebalance as soon as the loop runs."""
        self.set_rebalance_timer(0.0)

    # -- loop --------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the rebalance loop; idempotent."""
        if not self._loops.running:
            self.reset_rebalance_timer()
            self._loops.spawn(self._run(), f"rebalance-{self.datacenter}")

    async def aclose(self) -> None:
        """Stop the rebalance loop (a ping in progress is cancelled)."""
        await self._loops.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = self.next_rebalance - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            try:
                await self.rebalance_servers()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("rebalance failed dc=%s", self.datacenter)
            self.rebalances += 1
            self.reset_rebalance_timer()
