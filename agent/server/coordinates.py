"""The CoordinateService endpoint, its write batcher, and the servers' LAN probe.

Consul's ``Coordinate`` endpoint: ``Update`` only queues (the latest
coordinate per node and segment wins); the ``CoordinateBatcher`` writes the
queue once per ``coordinate_update_period`` (5 s), in transactions of
``coordinate_update_batch_size`` (128), at most
``coordinate_update_max_batches`` (5) of them. The queue holds at most
batch size x max batches distinct nodes; past that an update is refused with
Consul's "Coordinate update rate limit exceeded, increase
SyncCoordinateRateTarget" (429) and agents retry on their next round. The
state layer writes only the coordinates that changed, for nodes in the
catalog. So a datacenter's coordinate writes are at most one batch per period
per server whatever the number of agents or heartbeats (``consul_coordinate_*``
metrics count them).

``ServerProber`` gives servers a LAN coordinate: every probe interval it pings
one random other alive server of the datacenter (Status Ping, which answers
with the pinged server's coordinate) and feeds the round-trip time to the
tracker, as Serf's probes do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from agent.convert import check_name, query_opts
from agent.coordinate import Config, Coordinate, check, from_proto, to_proto
from agent.errors import InvalidArgument, RateLimited
from agent.membership.coordinates import CoordinateTracker
from agent.metrics import Sample
from agent.pool import ConnPool
from agent.rpc.methods import method_spec
from agent.state.coordinates import CoordinateState, NodeCoordinate
from agent.tasks import Background
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.coordinate.v1 import coordinate_pb2 as copb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.status.v1 import status_pb2 as spb

__all__ = [
    "BatchConfig",
    "CoordinateBatcher",
    "CoordinateEndpoint",
    "ServerProber",
    "batcher_samples",
]

logger = logging.getLogger(__name__)

_PING = method_spec("/consul.status.v1.StatusService/Ping")
PING_TIMEOUT = 2.0
RATE_LIMITED = "Coordinate update rate limit exceeded, increase SyncCoordinateRateTarget"


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Consul's ``coordinate_update_period``, ``_batch_size``, ``_max_batches``."""

    period: float = 5.0
    batch_size: int = 128
    max_batches: int = 5


class CoordinateBatcher:
    """The pending updates of one server, written once per period."""

    def __init__(self, state: CoordinateState, config: BatchConfig | None = None) -> None:
        self.state = state
        self.config = config or BatchConfig()
        self.pending: dict[tuple[str, str], Coordinate] = {}
        self.received = 0
        self.refused = 0
        self.flushes = 0
        self._loops = Background("coordinate-batcher")

    @property
    def max_queue(self) -> int:
        return self.config.batch_size * self.config.max_batches

    def queue(self, node: str, segment: str, coord: Coordinate) -> None:
        key = (node, segment)
        if key not in self.pending and len(self.pending) >= self.max_queue:
            self.refused += 1
            raise RateLimited(RATE_LIMITED)
        self.pending[key] = coord
        self.received += 1

    async def start(self) -> None:
        self._loops.spawn(self._run(), "coordinate-batcher")

    async def aclose(self) -> None:
        await self._loops.aclose()

    async def flush(self) -> int:
        """Write what is pending now; the number of coordinates written."""
        if not self.pending:
            return 0
        taken, self.pending = self.pending, {}
        updates = [NodeCoordinate(n, s, c) for (n, s), c in taken.items()]
        written, _ = await self.state.batch_update(updates, self.config.batch_size)
        self.flushes += 1
        return written

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.period)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("coordinate batch write failed error=%s", exc)


class CoordinateEndpoint:
    """``wan_coordinates``: datacenter -> {server node name: WAN coordinate}."""

    def __init__(
        self,
        state: CoordinateState,
        batcher: CoordinateBatcher,
        meta: Callable[[int], qpb.QueryMeta],
        wan_coordinates: Callable[[], Mapping[str, Mapping[str, Coordinate]]],
        config: Config | None = None,
    ) -> None:
        self.state = state
        self.batcher = batcher
        self._meta = meta
        self._wan = wan_coordinates
        self.config = config or Config()

    async def Update(self, req: copb.UpdateRequest) -> copb.UpdateResponse:
        check_name(req.node, "node")
        if not req.HasField("coord"):
            raise InvalidArgument("rejected bad coordinate: <nil>")
        coord = from_proto(req.coord)
        try:
            check(coord, self.config)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        self.batcher.queue(req.node, req.segment, coord)
        return copb.UpdateResponse()

    @staticmethod
    def _rows(rows: Iterable[NodeCoordinate]) -> list[copb.NodeCoordinate]:
        return [
            copb.NodeCoordinate(node=r.node, segment=r.segment, coord=to_proto(r.coord))
            for r in rows
        ]

    async def ListNodes(self, req: copb.ListNodesRequest) -> copb.ListNodesResponse:
        segment = req.segment if req.HasField("segment") else None
        read = await self.state.list_nodes(query_opts(req.options), segment)
        return copb.ListNodesResponse(
            meta=self._meta(read.index), coordinates=self._rows(read.value)
        )

    async def GetNode(self, req: copb.GetNodeRequest) -> copb.GetNodeResponse:
        check_name(req.node, "node")
        segment = req.segment if req.HasField("segment") else None
        read = await self.state.get_node(query_opts(req.options), req.node, segment)
        return copb.GetNodeResponse(meta=self._meta(read.index), coordinates=self._rows(read.value))

    async def ListDatacenters(
        self, req: copb.ListDatacentersRequest
    ) -> copb.ListDatacentersResponse:
        out = copb.ListDatacentersResponse()
        for dc, servers in sorted(self._wan().items()):
            entry = out.datacenters.add(datacenter=dc, area_id="wan")
            for node, coord in sorted(servers.items()):
                entry.coordinates.add(node=node, coord=to_proto(coord))
        return out


class ServerProber:
    """Ping one random other alive server per interval; feed the RTT to ``tracker``."""

    def __init__(
        self,
        tracker: CoordinateTracker,
        pool: ConnPool,
        members: Callable[[], Iterable[mpb.Member]],
        *,
        interval: float,
        rng: random.Random | None = None,
    ) -> None:
        self.tracker = tracker
        self.pool = pool
        self.members = members
        self.interval = interval
        self.rng = rng or random.Random()
        self.probes = 0
        self._loops = Background("coordinate-prober")

    async def start(self) -> None:
        self._loops.spawn(self._run(), "coordinate-prober")

    async def aclose(self) -> None:
        await self._loops.aclose()

    async def probe_once(self) -> bool:
        peers = [
            m
            for m in self.members()
            if m.role == mpb.MEMBER_ROLE_SERVER
            and m.status == mpb.MEMBER_STATUS_ALIVE
            and m.name != self.tracker.name
        ]
        if not peers:
            return False
        peer = self.rng.choice(peers)
        started = time.monotonic()
        resp = await self.pool.call(peer.address, _PING, spb.PingRequest(), PING_TIMEOUT)
        rtt = time.monotonic() - started
        assert isinstance(resp, spb.PingResponse)
        if resp.HasField("coordinate"):
            self.tracker.observe(peer.name, resp.coordinate, rtt)
        self.probes += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("coordinate probe failed error=%s", exc)


def batcher_samples(batcher: CoordinateBatcher) -> Iterator[Sample]:
    """The coordinate write rate of this server: what the store sees."""
    state = batcher.state
    yield Sample(
        "consul_coordinate_updates_received",
        "counter",
        "Coordinate.Update calls queued by this server",
        batcher.received,
    )
    yield Sample(
        "consul_coordinate_updates_refused",
        "counter",
        "Coordinate.Update calls refused: queue full (rate limit)",
        batcher.refused,
    )
    yield Sample(
        "consul_coordinate_batch_writes",
        "counter",
        "Store transactions writing coordinates (at most max_batches per period)",
        state.batches_written,
    )
    yield Sample(
        "consul_coordinate_writes",
        "counter",
        "Coordinates written to the store (changed ones only)",
        state.coordinates_written,
    )
    yield Sample(
        "consul_coordinate_pending",
        "gauge",
        "Coordinates queued for the next batch",
        len(batcher.pending),
    )
