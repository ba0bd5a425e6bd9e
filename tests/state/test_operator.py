"""Operator state on both stores: the autopilot configuration (CAS), the usage count's cache."""

from __future__ import annotations

import pytest

from agent.errors import InvalidArgument
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.operator import (
    AUTOPILOT_DEFAULTS,
    AutopilotConfigs,
    UsageCounter,
    decode_autopilot,
)
from agent.store import Store
from generated.consul.common.v1 import types_pb2 as pb


async def test_autopilot_defaults_then_cas_round_trip(store: Store) -> None:
    configs = AutopilotConfigs(store)
    first = await configs.get(QueryOpts())
    assert {k: first.value[k] for k in AUTOPILOT_DEFAULTS} == AUTOPILOT_DEFAULTS
    assert first.value["CreateIndex"] == first.value["ModifyIndex"] == 0
    ok, index = await configs.set({"maxtrailinglogs": 10, "LastContactThreshold": 5e8}, cas=0)
    assert ok
    got = (await configs.get(QueryOpts())).value
    # A PUT replaces the whole document, as Consul's: what is left out is zero.
    assert got["MaxTrailingLogs"] == 10 and got["LastContactThreshold"] == "500ms"
    assert got["CleanupDeadServers"] is False and got["ServerStabilizationTime"] == "0s"
    assert got["ModifyIndex"] == index
    assert (await configs.set({"MinQuorum": 3}, cas=index - 1))[0] is False
    assert (await configs.get(QueryOpts())).value["MinQuorum"] == 0
    assert (await configs.set({"MinQuorum": 3}, cas=index))[0] is True
    assert (await configs.get(QueryOpts())).value["MinQuorum"] == 3


def test_autopilot_decoding_refuses_bad_fields() -> None:
    for bad in ({"MaxTrailingLogs": -1}, {"CleanupDeadServers": "yes"},
                {"LastContactThreshold": "soon"}, {"RedundancyZoneTag": 5}, []):  # fmt: skip
        with pytest.raises(InvalidArgument, match="Error parsing autopilot config"):
            decode_autopilot(bad)
    assert decode_autopilot({"ServerStabilizationTime": "1m30s"})["ServerStabilizationTime"] == (
        "1m30s"
    )


async def test_usage_counts_once_per_catalog_change(store: Store) -> None:
    catalog = Catalog(store)
    counter = UsageCounter(store)
    node = pb.Node(name="n1", address="10.0.0.1")
    await catalog.register(node, pb.Service(id="web-1", name="web", port=80))
    await catalog.register(node, pb.Service(id="web-2", name="web", port=81))
    await catalog.register(node, pb.Service(id="gw", name="gw", kind="mesh-gateway", port=443))
    first = (await counter.usage()).value
    assert first["Services"] == 2 and first["ServiceInstances"] == 3
    assert first["BillableServiceInstances"] == 2
    assert first["ConnectServiceInstances"]["mesh-gateway"] == 1 and first["Nodes"] == 1
    for _ in range(5):
        assert (await counter.usage()).value == first
    assert counter.recounts == 1  # the cache held: no scan for unchanged reads
    await catalog.register(pb.Node(name="n2", address="10.0.0.2"))
    assert (await counter.usage()).value["Nodes"] == 2
    assert counter.recounts == 2
