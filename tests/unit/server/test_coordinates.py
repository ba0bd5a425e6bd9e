"""The server side of coordinates with small fakes: Update's validation and
queueing, ListDatacenters' shape, and the LAN probe of another server."""

from __future__ import annotations

import random
from typing import Any

import pytest

from agent.coordinate import Coordinate, to_proto
from agent.errors import InvalidArgument
from agent.membership.coordinates import CoordinateTracker
from agent.server.coordinates import CoordinateBatcher, CoordinateEndpoint, ServerProber
from agent.state.coordinates import CoordinateState
from agent.store.memory import MemoryStore
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.coordinate.v1 import coordinate_pb2 as copb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.status.v1 import status_pb2 as spb


def at(x: float) -> Coordinate:
    c = Coordinate.new()
    c.vec[0] = x
    return c


def endpoint(wan: dict[str, dict[str, Coordinate]] | None = None) -> CoordinateEndpoint:
    state = CoordinateState(MemoryStore())
    return CoordinateEndpoint(
        state, CoordinateBatcher(state), lambda i: qpb.QueryMeta(index=i), lambda: wan or {}
    )


async def test_update_validates_then_queues() -> None:
    ep = endpoint()
    with pytest.raises(InvalidArgument, match="rejected bad coordinate: <nil>"):
        await ep.Update(copb.UpdateRequest(node="n1"))
    with pytest.raises(InvalidArgument, match="rejected bad coordinate"):
        await ep.Update(copb.UpdateRequest(node="n1", coord=copb.Coord(vecs=[1.0, 2.0])))
    with pytest.raises(InvalidArgument, match="rejected bad coordinate"):
        nan = to_proto(at(float("nan")))
        await ep.Update(copb.UpdateRequest(node="n1", coord=nan))
    with pytest.raises(InvalidArgument, match="Must provide node"):
        await ep.Update(copb.UpdateRequest(coord=to_proto(at(0.1))))
    await ep.Update(copb.UpdateRequest(node="n1", segment="s", coord=to_proto(at(0.1))))
    assert ep.batcher.pending == {("n1", "s"): at(0.1)}


async def test_list_datacenters_in_consuls_shape() -> None:
    ep = endpoint({"dc2": {"b": at(0.2), "a": at(0.1)}, "dc1": {"s1": at(0.0)}})
    resp = await ep.ListDatacenters(copb.ListDatacentersRequest())
    assert [(d.datacenter, d.area_id) for d in resp.datacenters] == [
        ("dc1", "wan"),
        ("dc2", "wan"),
    ]
    assert [c.node for c in resp.datacenters[1].coordinates] == ["a", "b"]


class FakePool:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, address: str, spec: Any, request: Any, timeout: float) -> Any:
        self.calls.append(address)
        return spb.PingResponse(name="s2", coordinate=to_proto(at(0.002)))


def member(name: str, role: int, status: int = mpb.MEMBER_STATUS_ALIVE) -> mpb.Member:
    return mpb.Member(name=name, address=f"{name}:8300", role=role, status=status)  # type: ignore[arg-type]


async def test_prober_pings_another_alive_server_and_learns_from_it() -> None:
    tracker = CoordinateTracker("s1")
    pool = FakePool()
    members = [
        member("s1", mpb.MEMBER_ROLE_SERVER),
        member("s2", mpb.MEMBER_ROLE_SERVER),
        member("s3", mpb.MEMBER_ROLE_SERVER, mpb.MEMBER_STATUS_FAILED),
        member("c1", mpb.MEMBER_ROLE_NODE),
    ]
    prober = ServerProber(
        tracker,
        pool,
        lambda: members,
        interval=1.0,
        rng=random.Random(3),  # type: ignore[arg-type]
    )
    for _ in range(5):
        assert await prober.probe_once()
    assert set(pool.calls) == {"s2:8300"}  # never itself, a failed server, or a client
    assert tracker.client.updates == 5 and "s2" in tracker.cache
    alone = ServerProber(tracker, pool, lambda: members[:1], interval=1.0)  # type: ignore[arg-type]
    assert not await alone.probe_once()
