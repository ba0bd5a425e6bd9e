"""This agent's network coordinates, in place of Serf's coordinate client.

A ``CoordinateTracker`` holds one pool's Vivaldi client (LAN, or a server's
WAN) and the coordinates last heard from peers (Serf's ``coordCache``).
``observe`` feeds it a round-trip time measured by a call the membership
layer makes anyway: a client's heartbeat to its server (the response carries
the server's coordinate), a server's probe of another server (Status Ping),
a WAN heartbeat between servers. No call is added for coordinates alone.

``CoordinateSync`` is Consul's ``sendCoordinate``: every
``max(members / sync_coordinate_rate_target, sync_coordinate_interval_min)``
seconds (Consul's ``RateScaledInterval``: 64 updates a second for the whole
cluster, at least 15 s apart, so 10,000 nodes send every 156 s) plus a random
stagger of up to as much again, the agent sends its LAN coordinate to the
servers with ``Coordinate.Update`` and the agent token. A coordinate that did
not change since the last send is not sent again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator
from typing import Protocol

from google.protobuf.message import Message

from agent.coordinate import MAX_RTT, Client, Config, Coordinate, from_proto, to_proto
from agent.errors import PermissionDenied
from agent.metrics import Sample
from agent.rpc.methods import MethodSpec, method_spec
from agent.tasks import Background
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.coordinate.v1 import coordinate_pb2 as copb

__all__ = ["CoordinateSync", "CoordinateTracker", "coordinate_samples", "rate_scaled_interval"]

logger = logging.getLogger(__name__)

_UPDATE = method_spec("/consul.coordinate.v1.CoordinateService/Update")


class CoordinateTracker:
    """One pool's coordinate of this agent and the peers' it has heard."""

    def __init__(self, name: str, config: Config | None = None) -> None:
        self.name = name
        self.client = Client(config)
        #: Peer name -> the coordinate it last reported (ours included).
        self.cache: dict[str, Coordinate] = {name: self.client.get_coordinate()}
        #: Samples refused (bad coordinate or RTT), for the logs and metrics.
        self.rejected = 0

    @property
    def config(self) -> Config:
        return self.client.config

    def coordinate(self) -> Coordinate:
        return self.client.get_coordinate()

    def message(self) -> copb.Coord:
        return to_proto(self.client.coord)

    def observe(self, peer: str, coord: copb.Coord, rtt: float) -> None:
        """One sample: ``peer`` at ``coord``, ``rtt`` seconds away."""
        if peer == self.name:
            return
        other = from_proto(coord)
        try:
            mine = self.client.update(peer, other, min(max(rtt, 0.0), MAX_RTT))
        except ValueError as exc:
            self.rejected += 1
            logger.debug("coordinate sample refused peer=%s error=%s", peer, exc)
            return
        self.cache[peer] = other
        self.cache[self.name] = mine

    def remember(self, peer: str, coord: copb.Coord) -> None:
        """A peer's coordinate heard without an RTT (it sent us its own)."""
        other = from_proto(coord)
        if other.is_valid() and other.is_compatible_with(self.client.coord):
            self.cache[peer] = other

    def forget(self, peer: str) -> None:
        self.client.forget_node(peer)
        self.cache.pop(peer, None)


def rate_scaled_interval(rate: float, minimum: float, members: int) -> float:
    """Consul's ``lib.RateScaledInterval``: ``members / rate`` s, at least ``minimum``."""
    if rate <= 0:
        return minimum
    return max(minimum, members / rate)


class Invoker(Protocol):
    """How the sync reaches the servers (the agent's token-carrying invoker)."""

    async def rpc(self, spec: MethodSpec, request: Message) -> Message: ...


class CoordinateSync:
    """Send this agent's LAN coordinate to the servers, rate-scaled."""

    def __init__(
        self,
        tracker: CoordinateTracker,
        invoker: Invoker,
        *,
        node: str,
        datacenter: str,
        cluster_size: Callable[[], int],
        rate_target: float = 64.0,
        interval_min: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        self.tracker = tracker
        self.invoker = invoker
        self.node = node
        self.datacenter = datacenter
        self.cluster_size = cluster_size
        self.rate_target = rate_target
        self.interval_min = interval_min
        self.rng = rng or random.Random()
        self.sent = 0
        self.skipped = 0
        self._last: Coordinate | None = None
        self._loops = Background("coordinate-sync")

    async def start(self) -> None:
        self._loops.spawn(self._run(), "coordinate-sync")

    async def aclose(self) -> None:
        await self._loops.aclose()

    def interval(self) -> float:
        base = rate_scaled_interval(self.rate_target, self.interval_min, self.cluster_size())
        return base + self.rng.uniform(0, base)  # Consul's RandomStagger(intv)

    async def send_once(self) -> bool:
        """Send the coordinate if it changed; whether it was sent."""
        coord = self.tracker.coordinate()
        if coord == self._last:
            self.skipped += 1
            return False
        await self.invoker.rpc(
            _UPDATE,
            copb.UpdateRequest(
                write=qpb.WriteOptions(datacenter=self.datacenter),
                node=self.node,
                coord=to_proto(coord),
            ),
        )
        self._last = coord
        self.sent += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval())
            try:
                await self.send_once()
            except asyncio.CancelledError:
                raise
            except PermissionDenied:
                logger.warning("coordinate update blocked by ACLs node=%s", self.node)
            except Exception as exc:
                logger.warning("coordinate update failed node=%s error=%s", self.node, exc)


def coordinate_samples(
    tracker: CoordinateTracker, sync: CoordinateSync | None, pool: str = "lan"
) -> Iterator[Sample]:
    """This agent's coordinate activity, for /v1/agent/metrics."""
    labels = {"pool": pool}
    yield Sample(
        "consul_coordinate_samples",
        "counter",
        "Vivaldi updates from measured round-trip times",
        tracker.client.updates,
        labels,
    )
    yield Sample(
        "consul_coordinate_resets",
        "counter",
        "Times the coordinate went invalid and was reset",
        tracker.client.stats.resets,
        labels,
    )
    if sync is not None:
        yield Sample(
            "consul_coordinate_updates_sent",
            "counter",
            "Coordinate.Update calls sent to the servers",
            sync.sent,
        )
