"""The enforcement table with a fake resolver: writes checked first, reads filtered."""

from __future__ import annotations

from typing import Any

import pytest

from agent.acl.authorizer import Authorizer
from agent.acl.enforce import Gate, filter_kv
from agent.acl.rules import parse_rules
from agent.errors import PermissionDenied
from agent.rpc.token import request_token
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.txn.v1 import txn_pb2 as tpb

RULES = """
key_prefix "app/" { policy = "write" }
key_prefix "app/ro/" { policy = "read" }
key_prefix "pub/" { policy = "list" }
service_prefix "" { policy = "read" }
service "web" { policy = "write" }
node_prefix "n" { policy = "read" }
"""


class FakeResolver:
    def __init__(self, *, key_list: bool = False) -> None:
        self.enabled = True
        self.key_list = key_list
        self.seen: list[str] = []

    async def resolve(self, token: str) -> Authorizer:
        self.seen.append(token)
        return Authorizer(
            parse_rules(RULES), default_allow=False, accessor="acc", key_list_policy=self.key_list
        )


class Calls:
    def __init__(self, response: Any = None) -> None:
        self.count = 0
        self.response = response

    async def __call__(self, request: Any) -> Any:
        self.count += 1
        out = type(self.response)()
        out.CopyFrom(self.response)
        return out


def gate(**kw: bool) -> tuple[Gate, FakeResolver]:
    resolver = FakeResolver(**kw)
    return Gate(resolver), resolver  # type: ignore[arg-type]


async def test_denied_write_never_reaches_the_endpoint() -> None:
    g, _ = gate()
    put = Calls(kpb.PutResponse(applied=True))
    with pytest.raises(PermissionDenied, match="lacks permission 'key:write' on \"app/ro/x\""):
        await g.call("/consul.kv.v1.KVService/Put", put, kpb.PutRequest(key="app/ro/x"))
    assert put.count == 0
    await g.call("/consul.kv.v1.KVService/Put", put, kpb.PutRequest(key="app/x"))
    assert put.count == 1


async def test_recursive_delete_needs_write_beneath() -> None:
    g, _ = gate()
    delete = Calls(kpb.DeleteResponse())
    with pytest.raises(PermissionDenied):
        await g.call(
            "/consul.kv.v1.KVService/Delete", delete, kpb.DeleteRequest(key="app/", recurse=True)
        )
    await g.call(
        "/consul.kv.v1.KVService/Delete", delete, kpb.DeleteRequest(key="app/x/", recurse=True)
    )
    assert delete.count == 1


async def test_kv_list_filters_and_marks_the_answer() -> None:
    g, _ = gate()
    pairs = [kpb.KVPair(key=k) for k in ("app/a", "secret/b", "pub/c")]
    listed = Calls(kpb.ListResponse(meta=qpb.QueryMeta(index=5), pairs=pairs))
    resp = await g.call("/consul.kv.v1.KVService/List", listed, kpb.ListRequest(prefix=""))
    assert [p.key for p in resp.pairs] == ["app/a", "pub/c"]
    assert resp.meta.results_filtered_by_acls


async def test_key_list_policy_needs_list_on_the_prefix() -> None:
    g, _ = gate(key_list=True)
    listed = Calls(kpb.ListResponse(meta=qpb.QueryMeta(index=5)))
    with pytest.raises(PermissionDenied, match="key:list"):
        await g.call("/consul.kv.v1.KVService/List", listed, kpb.ListRequest(prefix="app/ro/"))
    await g.call("/consul.kv.v1.KVService/List", listed, kpb.ListRequest(prefix="pub/"))
    g2, _ = gate(key_list=False)
    await g2.call("/consul.kv.v1.KVService/List", listed, kpb.ListRequest(prefix="app/ro/"))


async def test_txn_checks_every_op() -> None:
    g, _ = gate()
    txn = Calls(tpb.TxnResponse())
    ops = [tpb.KVOp(verb="get", key="app/ro/a"), tpb.KVOp(verb="set", key="app/ro/b")]
    with pytest.raises(PermissionDenied, match="app/ro/b"):
        await g.call("/consul.txn.v1.TxnService/Txn", txn, tpb.TxnRequest(ops=ops))
    assert txn.count == 0


async def test_catalog_register_needs_node_and_service_write() -> None:
    g, _ = gate()
    reg = Calls(cpb.RegisterResponse())
    req = cpb.RegisterRequest(node=pb.Node(name="n1"), service=pb.Service(name="web"))
    with pytest.raises(PermissionDenied, match="node:write"):
        await g.call("/consul.catalog.v1.CatalogService/Register", reg, req)
    req.skip_node_update = True
    await g.call("/consul.catalog.v1.CatalogService/Register", reg, req)
    req.service.name = "db"
    with pytest.raises(PermissionDenied, match="service:write"):
        await g.call("/consul.catalog.v1.CatalogService/Register", reg, req)


async def test_token_from_request_then_call_context() -> None:
    g, resolver = gate()
    get = Calls(kpb.GetResponse())
    await g.call(
        "/consul.kv.v1.KVService/Get",
        get,
        kpb.GetRequest(key="app/x", options=qpb.QueryOptions(token="from-request")),
    )
    reset = request_token.set("from-metadata")
    try:
        await g.call("/consul.kv.v1.KVService/Get", get, kpb.GetRequest(key="app/x"))
    finally:
        request_token.reset(reset)
    assert resolver.seen == ["from-request", "from-metadata"]


async def test_unchecked_methods_pass_through() -> None:
    g, resolver = gate()
    ping = Calls(cpb.ListDatacentersResponse())
    await g.call(
        "/consul.catalog.v1.CatalogService/ListDatacenters", ping, cpb.ListDatacentersRequest()
    )
    assert resolver.seen == []


def test_filter_functions_are_usable_alone() -> None:
    authz = Authorizer(parse_rules(RULES), default_allow=False)
    kept, cut = filter_kv(authz, [kpb.KVPair(key="app/a"), kpb.KVPair(key="zzz")])
    assert [p.key for p in kept] == ["app/a"] and cut


async def test_snapshots_need_a_management_token() -> None:
    from generated.consul.snapshot.v1 import snapshot_pb2 as snpb

    g, _ = gate()
    save = Calls(snpb.SaveResponse())
    with pytest.raises(PermissionDenied, match="acl:write"):
        await g.call("/consul.snapshot.v1.SnapshotService/Save", save, snpb.SaveRequest())
    assert save.count == 0


async def test_config_entries_belong_to_their_service_or_the_mesh() -> None:
    from generated.consul.config.v1 import config_pb2 as cfpb

    g, _ = gate()
    apply = Calls(cfpb.ApplyResponse())
    web = b'{"Kind": "service-defaults", "Name": "web"}'
    db = b'{"Kind": "service-defaults", "Name": "db"}'
    await g.call("/consul.config.v1.ConfigService/Apply", apply, cfpb.ApplyRequest(entry_json=web))
    with pytest.raises(PermissionDenied, match='service:write\' on "db"'):
        await g.call(
            "/consul.config.v1.ConfigService/Apply", apply, cfpb.ApplyRequest(entry_json=db)
        )
    mesh = b'{"Kind": "proxy-defaults", "Name": "global"}'
    with pytest.raises(PermissionDenied, match="mesh:write"):
        await g.call(
            "/consul.config.v1.ConfigService/Apply", apply, cfpb.ApplyRequest(entry_json=mesh)
        )
    listed = Calls(cfpb.ListResponse(meta=qpb.QueryMeta(index=3), entries_json=[web, db, mesh]))
    resp = await g.call("/consul.config.v1.ConfigService/List", listed, cfpb.ListRequest())
    assert list(resp.entries_json) == [web, db]  # service_prefix "" read; no mesh rule
    assert resp.meta.results_filtered_by_acls


def test_mesh_falls_back_to_operator() -> None:
    from agent.acl.rules import Access

    a = Authorizer(parse_rules('operator = "write"'), default_allow=False)
    assert a.allowed("mesh", None, Access.WRITE)
    b = Authorizer(parse_rules('operator = "write"\nmesh = "read"'), default_allow=False)
    assert not b.allowed("mesh", None, Access.WRITE)
