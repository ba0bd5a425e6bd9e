"""The RPC method table built from the generated descriptors."""

from __future__ import annotations

import pytest

from agent.rpc import all_methods, method_spec, methods_of, request_datacenter, request_wait
from agent.rpc.methods import (
    CLIENT_FORWARDED_SERVICES,
    DEFAULT_BLOCKING_WAIT,
    MAX_BLOCKING_WAIT,
    with_datacenter,
)
from generated.consul.catalog.v1 import catalog_pb2
from generated.consul.kv.v1 import kv_pb2
from generated.consul.membership.v1 import membership_pb2
from generated.consul.status.v1 import status_pb2


def test_spec_of_a_read() -> None:
    spec = method_spec("/consul.catalog.v1.CatalogService/ListNodes")
    assert spec.request_type is catalog_pb2.ListNodesRequest
    assert spec.response_type is catalog_pb2.ListNodesResponse
    assert spec.read is True
    assert spec.server_streaming is False
    assert spec.service == "consul.catalog.v1.CatalogService"
    assert spec.name == "ListNodes"


def test_writes_are_not_reads() -> None:
    for path in (
        "/consul.catalog.v1.CatalogService/Register",
        "/consul.catalog.v1.CatalogService/Deregister",
        "/consul.kv.v1.KVService/Put",
        "/consul.kv.v1.KVService/Delete",
        "/consul.membership.v1.MembershipService/Join",
    ):
        assert method_spec(path).read is False, path


def test_streaming_method() -> None:
    spec = method_spec("/consul.membership.v1.MembershipService/WatchMembers")
    assert spec.server_streaming and spec.read
    assert spec.response_type is membership_pb2.WatchMembersResponse


def test_table_covers_every_service() -> None:
    services = {m.service for m in all_methods()}
    assert services == {
        "consul.catalog.v1.CatalogService",
        "consul.health.v1.HealthService",
        "consul.kv.v1.KVService",
        "consul.status.v1.StatusService",
        "consul.membership.v1.MembershipService",
        "consul.session.v1.SessionService",
        "consul.event.v1.EventService",
        "consul.txn.v1.TxnService",
        "consul.snapshot.v1.SnapshotService",
        "consul.config.v1.ConfigService",
        "consul.acl.v1.ACLService",
        "consul.query.v1.PreparedQueryService",
        "consul.operator.v1.OperatorService",
        "consul.subscribe.v1.SubscribeService",
        "consul.coordinate.v1.CoordinateService",
    }
    forwarded = {s.full_name for s in CLIENT_FORWARDED_SERVICES}
    assert "consul.subscribe.v1.SubscribeService" not in forwarded  # agents' own business
    assert "consul.membership.v1.MembershipService" not in forwarded
    status = methods_of(status_pb2.DESCRIPTOR.services_by_name["StatusService"])
    assert [m.name for m in status] == ["Ping", "Leader", "Peers"]


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown RPC method"):
        method_spec("/nope.Service/Thing")


def test_request_datacenter() -> None:
    assert request_datacenter(catalog_pb2.ListNodesRequest()) == ""
    read = catalog_pb2.ListNodesRequest()
    read.options.datacenter = "dc2"
    assert request_datacenter(read) == "dc2"
    write = kv_pb2.PutRequest()
    write.write.datacenter = "dc3"
    assert request_datacenter(write) == "dc3"
    assert request_datacenter(status_pb2.LeaderRequest(datacenter="dc4")) == "dc4"
    assert request_datacenter(status_pb2.PingRequest()) == ""


def test_with_datacenter_copies_only_when_needed() -> None:
    req = catalog_pb2.ListNodesRequest()
    filled = with_datacenter(req, "dc2")
    assert request_datacenter(filled) == "dc2" and request_datacenter(req) == ""
    assert with_datacenter(filled, "dc9") is filled
    put = with_datacenter(kv_pb2.PutRequest(key="k"), "dc5")
    assert request_datacenter(put) == "dc5"
    assert request_datacenter(with_datacenter(status_pb2.PeersRequest(), "dc6")) == "dc6"
    ping = status_pb2.PingRequest()
    assert with_datacenter(ping, "dc1") is ping


def test_request_wait() -> None:
    req = catalog_pb2.ListNodesRequest()
    assert request_wait(req) == 0.0
    req.options.max_wait.seconds = 30  # no min_index: not blocking
    assert request_wait(req) == 0.0
    req.options.min_index = 4
    assert request_wait(req) == 30.0
    req.options.max_wait.seconds, req.options.max_wait.nanos = 0, 500_000_000
    assert request_wait(req) == 0.5
    req.options.ClearField("max_wait")
    assert request_wait(req) == DEFAULT_BLOCKING_WAIT
    req.options.max_wait.seconds = 3600
    assert request_wait(req) == MAX_BLOCKING_WAIT
    assert request_wait(kv_pb2.PutRequest()) == 0.0
