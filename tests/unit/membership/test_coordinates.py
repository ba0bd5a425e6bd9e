"""The agent side of coordinates: the tracker (Serf's coordinate client and
cache), Consul's rate-scaled send interval, and the sync that sends only a
changed coordinate."""

from __future__ import annotations

import random

from google.protobuf.message import Message

from agent.coordinate import Coordinate, to_proto
from agent.membership.coordinates import CoordinateSync, CoordinateTracker, rate_scaled_interval
from agent.rpc.methods import MethodSpec
from generated.consul.coordinate.v1 import coordinate_pb2 as copb


def at(x: float) -> copb.Coord:
    c = Coordinate.new()
    c.vec[0] = x
    return to_proto(c)


def test_observe_moves_our_coordinate_and_caches_the_peer() -> None:
    t = CoordinateTracker("me")
    t.observe("server", at(0.010), 0.020)
    assert t.client.updates == 1
    assert t.coordinate() != Coordinate.new()
    assert t.cache["server"].vec[0] == 0.010 and t.cache["me"] == t.coordinate()
    t.forget("server")
    assert "server" not in t.cache and "server" not in t.client.latency_filter_samples


def test_bad_samples_are_refused_and_counted() -> None:
    t = CoordinateTracker("me")
    t.observe("p", copb.Coord(vecs=[0.0, 1.0]), 0.01)  # wrong dimensionality
    t.observe("p", at(float("nan")), 0.01)
    assert t.rejected == 2 and t.client.updates == 0 and "p" not in t.cache
    t.observe("me", at(0.5), 0.01)  # ourselves: ignored
    assert t.client.updates == 0
    t.remember("p", copb.Coord(vecs=[1.0]))  # never cached either
    assert "p" not in t.cache


def test_rate_scaled_interval_is_consuls() -> None:
    assert rate_scaled_interval(64.0, 15.0, 10) == 15.0
    assert rate_scaled_interval(64.0, 15.0, 10_000) == 10_000 / 64.0  # 156 s
    assert rate_scaled_interval(0.0, 15.0, 10_000) == 15.0


class FakeInvoker:
    def __init__(self) -> None:
        self.sent: list[copb.UpdateRequest] = []

    async def rpc(self, spec: MethodSpec, request: Message) -> Message:
        assert spec.path.endswith("CoordinateService/Update")
        assert isinstance(request, copb.UpdateRequest)
        self.sent.append(request)
        return copb.UpdateResponse()


async def test_sync_sends_only_a_changed_coordinate() -> None:
    t = CoordinateTracker("me")
    inv = FakeInvoker()
    sync = CoordinateSync(
        t, inv, node="me", datacenter="dc1", cluster_size=lambda: 1, rng=random.Random(1)
    )
    assert await sync.send_once()
    assert not await sync.send_once()  # unchanged: nothing sent
    t.observe("server", at(0.010), 0.020)
    assert await sync.send_once()
    assert [r.node for r in inv.sent] == ["me", "me"]
    assert inv.sent[0].write.datacenter == "dc1" and len(inv.sent[1].coord.vecs) == 8
    assert (sync.sent, sync.skipped) == (2, 1)
    # The interval: at least interval_min, plus a stagger of at most as much again.
    assert all(15.0 <= sync.interval() <= 30.0 for _ in range(20))
