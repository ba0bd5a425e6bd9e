"""Client side of membership, in place of Serf's LAN gossip.

A ``MembershipClient`` joins this agent as a member (role ``node``), keeps it
alive with heartbeats, and holds one ``WatchMembers`` stream open to one
server: the router's first server, or, while the router knows none, the next
``--retry-join`` address. A failed call or a broken stream rotates the router
by the same rule as ``Client.rpc`` (``agent.pool.is_transport_failure``).
The snapshot and the events drive the router, as Consul's
``lanEventHandler`` does: JOIN/UPDATE of a server of our datacenter →
``add_server``; LEAVE/FAILED/REAP → ``remove_server``; a server of another
datacenter is logged and skipped. A broken stream is reported to the router
(which rotates away from that server) and reopened, with backoff, on the next
server; the new snapshot replaces what the old stream had said.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import grpc
from google.protobuf.message import Message

from agent.durations import duration_seconds
from agent.errors import ConsulError
from agent.membership.coordinates import CoordinateTracker
from agent.pool import ConnPool, is_transport_failure
from agent.router import Manager, Router, Server
from agent.rpc.methods import MethodSpec, method_spec
from agent.tasks import Background
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["MembershipClient"]

logger = logging.getLogger(__name__)

_JOIN = method_spec("/consul.membership.v1.MembershipService/Join")
_HEARTBEAT = method_spec("/consul.membership.v1.MembershipService/Heartbeat")
_LEAVE = method_spec("/consul.membership.v1.MembershipService/Leave")
_WATCH = method_spec("/consul.membership.v1.MembershipService/WatchMembers")

CALL_TIMEOUT = 5.0
MAX_BACKOFF = 5.0
ALIVE = mpb.MEMBER_STATUS_ALIVE


class MembershipClient:
    """Join, heartbeat, and watch the member list through the router."""

    def __init__(
        self,
        member: Callable[[], mpb.Member],
        router: Router,
        pool: ConnPool,
        seeds: list[str],
        *,
        heartbeat_interval: float = 2.5,
        on_servers_changed: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        datacenter: str | None = None,
        wan: bool = False,
        on_foreign_server: Callable[[mpb.Member], None] | None = None,
        coordinates: CoordinateTracker | None = None,
    ) -> None:
        """``wan``: this is a WAN link of a server to ``datacenter``'s servers
        (their WAN view); servers of further datacenters it reports go to
        ``on_foreign_server`` instead of being skipped. ``coordinates``: the
        tracker each heartbeat's round-trip time (and the coordinate the
        server answers with) is fed to."""
        self.member = member
        self.router = router
        self.pool = pool
        self.seeds = list(seeds)
        self.heartbeat_interval = heartbeat_interval
        self.on_servers_changed = on_servers_changed
        self.rng = rng or random.Random()
        self._datacenter = datacenter or router.local_datacenter
        self.wan = wan
        self.on_foreign_server = on_foreign_server
        self.coordinates = coordinates
        self.members: dict[str, mpb.Member] = {}
        self.joined = asyncio.Event()
        self.events = 0
        self.reconnects = 0
        self._seed_turn = 0
        self._seeded = asyncio.Event()  # set while there is a seed or a known server
        if self.seeds:
            self._seeded.set()
        self._loops = Background("membership")

    @property
    def datacenter(self) -> str:
        """The datacenter whose servers this client follows."""
        return self._datacenter

    @property
    def manager(self) -> Manager:
        return self.router.manager(self._datacenter)

    async def start(self) -> None:
        self._loops.spawn(self._watch_loop(), "membership-watch")
        self._loops.spawn(self._heartbeat_loop(), "membership-heartbeat")

    async def aclose(self, *, leave: bool = True) -> None:
        await self._loops.aclose()
        if leave and self.joined.is_set():
            name = self.member().name
            try:
                await self._call(
                    _LEAVE, mpb.LeaveRequest(name=name, datacenter=self.datacenter, wan=self.wan)
                )
                logger.info("left the cluster gracefully node=%s", name)
            except Exception as exc:
                logger.warning("graceful leave failed error=%s", exc)

    async def join_address(self, address: str) -> None:
        """``consul-grpc join ADDRESS`` / ``/v1/agent/join/ADDRESS``: join through
        ``address`` now (its error is the caller's), and keep it as a seed, so an
        agent started with no server to join (as Consul's may be) finds the
        cluster; the watch then follows the router as usual."""
        try:
            await self._join(address)
        except grpc.aio.AioRpcError as exc:
            raise ConsulError(f"Error joining address {address!r}: {exc.details()}") from None
        except (ConnectionError, OSError) as exc:
            raise ConsulError(f"Error joining address {address!r}: {exc}") from None
        if address not in self.seeds:
            self.seeds.append(address)
        self._seeded.set()

    # ----- choosing a server ---------------------------------------------

    def _target(self) -> tuple[str, Server | None]:
        """The router's first server, else the next seed address."""
        server = self.manager.find_server()
        if server is not None:
            return server.address, server
        if not self.seeds:
            raise RuntimeError("no servers known and no --retry-join addresses")
        address = self.seeds[self._seed_turn % len(self.seeds)]
        self._seed_turn += 1
        return address, None

    def _failed(self, server: Server | None, address: str, exc: BaseException) -> None:
        """Rotate away from ``server`` if ``exc`` is a transport failure.

        Membership calls are all safe to repeat (join, heartbeat, leave and the
        watch are idempotent), so they count as reads.
        """
        if not is_transport_failure(exc, read=True):
            return
        self.pool.mark_failed(address)
        if server is not None:
            self.router.notify_failed_server(server)

    async def _call(self, spec: MethodSpec, request: Message) -> Message:
        return (await self._timed_call(spec, request))[0]

    async def _timed_call(self, spec: MethodSpec, request: Message) -> tuple[Message, str, float]:
        """The response, the name (else address) of the server, the round-trip time."""
        address, server = self._target()
        started = time.monotonic()
        try:
            resp = await self.pool.call(address, spec, request, CALL_TIMEOUT)
        except (grpc.aio.AioRpcError, ConnectionError) as exc:
            self._failed(server, address, exc)
            raise
        return resp, server.name if server is not None else address, time.monotonic() - started

    # ----- join and heartbeat ------------------------------------------

    async def _join(self, address: str) -> None:
        resp = await self.pool.call(
            address, _JOIN, mpb.JoinRequest(member=self.member(), wan=self.wan), CALL_TIMEOUT
        )
        assert isinstance(resp, mpb.JoinResponse)
        if resp.HasField("heartbeat_interval"):
            self.heartbeat_interval = max(0.1, duration_seconds(resp.heartbeat_interval))
        self.joined.set()
        logger.info("joined the cluster via=%s heartbeat=%.2fs", address, self.heartbeat_interval)

    async def _heartbeat_loop(self) -> None:
        await self.joined.wait()
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            name = self.member().name
            try:
                tracker = self.coordinates
                request = mpb.HeartbeatRequest(name=name, datacenter=self.datacenter, wan=self.wan)
                if tracker is not None:
                    request.coordinate.CopyFrom(tracker.message())
                resp, peer, rtt = await self._timed_call(_HEARTBEAT, request)
                assert isinstance(resp, mpb.HeartbeatResponse)
                if tracker is not None and resp.HasField("coordinate"):
                    tracker.observe(peer, resp.coordinate, rtt)
                if not resp.known:
                    logger.warning("servers forgot this member; joining again node=%s", name)
                    address, _ = self._target()
                    await self._join(address)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("heartbeat failed error=%s", exc)

    # ----- the watch ---------------------------------------------------

    async def _watch_loop(self) -> None:
        backoff = 0.05
        while True:
            if not self.seeds and self.manager.find_server() is None:
                logger.info("no servers known and no address to join: waiting for a join")
                self._seeded.clear()
                await self._seeded.wait()
            address, server = self._target()
            try:
                if not self.joined.is_set():
                    await self._join(address)
                async for msg in self.pool.stream(
                    address, _WATCH, mpb.WatchMembersRequest(wan=self.wan)
                ):
                    assert isinstance(msg, mpb.WatchMembersResponse)
                    self._apply(msg)
                    backoff = 0.05
                logger.info("membership stream ended by server=%s; reconnecting", address)
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, ConnectionError) as exc:
                detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
                logger.warning("membership stream broke server=%s error=%s", address, detail)
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ):
                    logger.error("join refused: %s", detail)
                self._failed(server, address, exc)
            except Exception:
                logger.exception("membership stream failed server=%s", address)
            self.reconnects += 1
            await asyncio.sleep(backoff * (1 + self.rng.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _server_of(self, m: mpb.Member) -> Server | None:
        if m.role != mpb.MEMBER_ROLE_SERVER:
            return None
        if m.datacenter != self.datacenter:
            if self.on_foreign_server is not None:
                self.on_foreign_server(m)
                return None
            logger.warning(
                "member of another datacenter skipped name=%s datacenter=%s", m.name, m.datacenter
            )
            return None
        try:
            return Server(m.name, m.address, m.datacenter)
        except ValueError as exc:
            logger.warning("bad server member skipped name=%s error=%s", m.name, exc)
            return None

    def _apply(self, msg: mpb.WatchMembersResponse) -> None:
        self.events += 1
        manager = self.manager
        if msg.type == mpb.MEMBER_EVENT_TYPE_SNAPSHOT:
            self.members = {m.name: m for m in msg.members}
            alive = {}
            for m in msg.members:
                server = self._server_of(m) if m.status == ALIVE else None
                if server is not None:
                    alive[server.name] = server
            for known in manager.servers:
                if known.name not in alive:
                    manager.remove_server(known)
            for server in alive.values():
                manager.add_server(server)
        else:
            for m in msg.members:
                if msg.type == mpb.MEMBER_EVENT_TYPE_REAP:
                    self.members.pop(m.name, None)
                else:
                    self.members[m.name] = m
                server = self._server_of(m)
                if server is None:
                    continue
                if msg.type in (mpb.MEMBER_EVENT_TYPE_JOIN, mpb.MEMBER_EVENT_TYPE_UPDATE):
                    manager.add_server(server)
                else:
                    manager.remove_server(server)
        if self.on_servers_changed is not None:
            self.on_servers_changed()
