"""The servers' WAN: links to other datacenters, and forwarding to them.

Every server keeps one ``WanLink`` (a ``MembershipClient`` in WAN mode) per
remote datacenter it knows: it joins that datacenter's WAN pool (recorded in
that datacenter's store, kept alive by heartbeats), and watches its WAN view,
which feeds the Manager of that datacenter in this server's WAN router.
Datacenters are discovered from ``--retry-join-wan`` seeds (a Ping tells
their datacenter), from the views of linked datacenters (a datacenter that
joined one we link to), and from the remote servers that joined us: so the
links close into a full mesh, and every server of every datacenter learns
every other datacenter's servers, and loses them on leave or failure.

``WanForwarder`` sends a request for another datacenter to its first server,
rotating on failure as the LAN client does (a failed server is rotated away
from, not removed, until membership says it failed): unknown datacenter ->
``No path to datacenter``; known but unreachable -> ``Remote DC has no server
currently reachable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from google.protobuf.message import Message

from agent.client import Client
from agent.errors import ConsulError, NoServers, RemoteDCUnreachable, Unavailable
from agent.membership.client import MembershipClient
from agent.membership.coordinates import CoordinateTracker
from agent.membership.hub import MemberHub
from agent.pool import ConnPool
from agent.router import Router
from agent.rpc.methods import MethodSpec, method_spec
from agent.tasks import Background
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.status.v1 import status_pb2 as spb

__all__ = ["WanForwarder", "WanLinks"]

logger = logging.getLogger(__name__)

_PING = method_spec("/consul.status.v1.StatusService/Ping")
WAN_HOLD_TIMEOUT = 3.0
SEED_RETRY = 1.0


class WanForwarder:
    """Forwards a request to a server of another datacenter."""

    def __init__(self, router: Router, pool: ConnPool) -> None:
        self.router = router
        self.pool = pool
        self._clients: dict[str, Client] = {}

    async def __call__(self, spec: MethodSpec, request: Message, datacenter: str) -> Message:
        manager, _ = self.router.find_route(datacenter)
        client = self._clients.get(datacenter)
        if client is None:
            client = Client(manager, self.pool, hold_timeout=WAN_HOLD_TIMEOUT)
            self._clients[datacenter] = client
        try:
            return await client.rpc(spec, request)
        except NoServers as exc:
            raise RemoteDCUnreachable() from exc
        except Unavailable as exc:
            if type(exc) is Unavailable:  # a transport failure, not a server's answer
                raise RemoteDCUnreachable(
                    f"Remote DC has no server currently reachable: {exc.message}"
                ) from exc
            raise


class WanLinks:
    """This server's links to every other datacenter."""

    def __init__(
        self,
        *,
        member: Callable[[], mpb.Member],
        router: Router,
        pool: ConnPool,
        seeds: list[str],
        wan_hub: MemberHub,
        heartbeat_interval: float,
        coordinates: CoordinateTracker | None = None,
    ) -> None:
        self.member = member
        #: This server's WAN coordinate, fed by every link's heartbeats.
        self.coordinates = coordinates
        self.router = router
        self.pool = pool
        self.seeds = list(seeds)
        self.wan_hub = wan_hub
        self.heartbeat_interval = heartbeat_interval
        self.links: dict[str, MembershipClient] = {}
        self._loops = Background("wan-links")
        self._closing = False

    @property
    def local_dc(self) -> str:
        return self.router.local_datacenter

    def datacenters(self) -> list[str]:
        """Remote datacenters with at least one known server."""
        return [
            dc
            for dc in self.router.datacenters()
            if dc != self.local_dc and self.router.manager(dc).num_servers
        ]

    async def start(self) -> None:
        self._loops.spawn(self._seed_loop(), "wan-seeds")
        self._loops.spawn(self._joined_us_loop(), "wan-joined-us")

    async def aclose(self) -> None:
        self._closing = True
        await self._loops.aclose()
        await asyncio.gather(
            *(link.aclose(leave=True) for link in self.links.values()), return_exceptions=True
        )

    def ensure_link(self, datacenter: str, seeds: list[str]) -> None:
        """Link to ``datacenter`` (seeded with ``seeds``) unless already linked."""
        if self._closing or datacenter == self.local_dc:
            return
        link = self.links.get(datacenter)
        if link is not None:
            for seed in seeds:
                if seed not in link.seeds:
                    link.seeds.append(seed)
            return
        logger.info("linking to datacenter=%s seeds=%s", datacenter, ",".join(seeds))
        link = MembershipClient(
            self.member,
            self.router,
            self.pool,
            seeds,
            heartbeat_interval=self.heartbeat_interval,
            datacenter=datacenter,
            wan=True,
            on_foreign_server=self._foreign,
            coordinates=self.coordinates,
        )
        self.links[datacenter] = link
        # start() only spawns the link's own loops (they live in the link).
        self._loops.spawn(link.start(), f"wan-link-{datacenter}")

    async def add_seed(self, address: str) -> None:
        """``/v1/agent/join/<address>?wan``: Ping ``address`` (a server of another
        datacenter), then link to its datacenter through it."""
        try:
            resp = await self.pool.call(address, _PING, spb.PingRequest(), 5.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ConsulError(f"Error joining address {address!r}: {exc}") from None
        assert isinstance(resp, spb.PingResponse)
        self.ensure_link(resp.datacenter, [address])

    def _foreign(self, m: mpb.Member) -> None:
        if m.status == mpb.MEMBER_STATUS_ALIVE:
            self.ensure_link(m.datacenter, [m.address])

    async def _seed_loop(self) -> None:
        """Learn each seed's datacenter (a Ping), then link to it."""
        pending = list(self.seeds)
        while pending:
            for seed in list(pending):
                try:
                    resp = await self.pool.call(seed, _PING, spb.PingRequest(), 2.0)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.debug("wan seed not answering seed=%s error=%s", seed, exc)
                    continue
                assert isinstance(resp, spb.PingResponse)
                pending.remove(seed)
                self.ensure_link(resp.datacenter, [seed])
            if pending:
                await asyncio.sleep(SEED_RETRY)

    async def _joined_us_loop(self) -> None:
        """Link back to the datacenters whose servers joined us."""
        sub = self.wan_hub.subscribe()
        try:
            for m in sub.snapshot.members:
                self._foreign(m)
            while True:
                item = await sub.queue.get()
                if item is None:
                    return
                for m in item.members:
                    self._foreign(m)
        finally:
            self.wan_hub.unsubscribe(sub)
