"""Router: one Manager per datacenter, and the route to a datacenter.

A client agent only ever uses the Manager of its own datacenter (its servers
forward elsewhere). A server agent also keeps the Managers of the other
datacenters (the WAN side) and uses ``find_route`` to forward a request.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from agent.errors import NoPathToDatacenter, RemoteDCUnreachable
from agent.router.manager import Manager, ManagerState, Pinger
from agent.router.server import Server

__all__ = ["Router"]


class Router:
    """The Managers of every known datacenter, local one included."""

    def __init__(
        self,
        local_datacenter: str,
        pinger: Pinger,
        *,
        self_name: str | None = None,
        member_count: Callable[[], int] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        fixed_interval: float | None = None,
    ) -> None:
        if not local_datacenter:
            raise ValueError("local datacenter must not be empty")
        self.local_datacenter = local_datacenter
        self._pinger = pinger
        self._self_name = self_name
        self._member_count = member_count
        self._rng = rng or random.Random()
        self._clock = clock
        self._fixed_interval = fixed_interval
        self._managers: dict[str, Manager] = {}
        self._started = False
        self.manager(local_datacenter)

    # -- managers ----------------------------------------------------------

    def manager(self, datacenter: str) -> Manager:
        """The Manager of ``datacenter``, created (and started, if the router
        runs) on first use."""
        if not datacenter:
            raise ValueError("datacenter must not be empty")
        found = self._managers.get(datacenter)
        if found is None:
            found = Manager(
                datacenter,
                self._pinger,
                self_name=self._self_name if datacenter == self.local_datacenter else None,
                member_count=self._member_count,
                rng=random.Random(self._rng.random()),
                clock=self._clock,
                fixed_interval=self._fixed_interval,
            )
            self._managers[datacenter] = found
            if self._started:
                found.start()
        return found

    @property
    def local(self) -> Manager:
        return self._managers[self.local_datacenter]

    def datacenters(self) -> list[str]:
        """Names of the datacenters with a manager, sorted."""
        return sorted(self._managers)

    def add_server(self, server: Server) -> None:
        self.manager(server.datacenter).add_server(server)

    def remove_server(self, server: Server) -> None:
        found = self._managers.get(server.datacenter)
        if found is not None:
            found.remove_server(server)

    def notify_failed_server(self, server: Server) -> None:
        found = self._managers.get(server.datacenter)
        if found is not None:
            found.notify_failed_server(server)

    def find_server(self) -> Server | None:
        """The first server of the local datacenter, or None."""
        return self.local.find_server()

    def find_route(self, datacenter: str) -> tuple[Manager, Server]:
        """The manager and server to send a request for ``datacenter`` to.

        Raises NoPathToDatacenter when no server of it is known at all, and
        RemoteDCUnreachable when its servers are known but all offline.
        """
        found = self._managers.get(datacenter)
        server = found.find_server() if found is not None else None
        if found is None or server is None:
            raise NoPathToDatacenter()
        if found.offline:
            raise RemoteDCUnreachable()
        return found, server

    def state(self) -> dict[str, ManagerState]:
        """A snapshot of every manager, by datacenter."""
        return {dc: self._managers[dc].state() for dc in sorted(self._managers)}

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start every manager's rebalance loop (and those created later)."""
        self._started = True
        for found in self._managers.values():
            found.start()

    async def aclose(self) -> None:
        self._started = False
        await asyncio.gather(*(m.aclose() for m in self._managers.values()))

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
