"""Catalog state on both stores: registration, per-resource indexes, blocking reads."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import ConsulError, InvalidArgument
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.store import Store
from generated.consul.common.v1 import types_pb2 as pb

PASS = pb.HEALTH_STATUS_PASSING
CRIT = pb.HEALTH_STATUS_CRITICAL


def node(name: str, addr: str = "10.0.0.1") -> pb.Node:
    return pb.Node(name=name, address=addr)


def svc(name: str, sid: str = "", tags: tuple[str, ...] = ()) -> pb.Service:
    return pb.Service(id=sid or name, name=name, tags=list(tags), port=80)


def check(cid: str, status: int = PASS, service_id: str = "") -> pb.HealthCheck:
    return pb.HealthCheck(check_id=cid, name=cid, status=status, service_id=service_id)


async def test_register_and_read(store: Store) -> None:
    cat = Catalog(store)
    await cat.register(node("n1"), svc("web", tags=("v1",)), [check("c1", service_id="web")])
    await cat.register(node("n2"), svc("web", tags=("v2",)), [check("c2", CRIT, "web")])
    nodes = await cat.list_nodes(QueryOpts())
    assert [n.name for n in nodes.value] == ["n1", "n2"]
    services = await cat.list_services(QueryOpts())
    assert services.value == {"web": ["v1", "v2"]}
    inst = await cat.service_instances(QueryOpts(), "web", tags=["v2"])
    assert [n.name for n, _ in inst.value] == ["n2"]
    healthy = await cat.service_health(QueryOpts(), "web", passing_only=True)
    assert [e.node.name for e in healthy.value] == ["n1"]
    got = await cat.get_node(QueryOpts(), "n1")
    assert got.value[0] is not None and [s.id for s in got.value[1]] == ["web"]
    assert got.value[0].create_index > 0


async def test_node_check_affects_service_health(store: Store) -> None:
    cat = Catalog(store)
    await cat.register(node("n1"), svc("web"), [check("serfHealth")])
    before = await cat.service_health(QueryOpts(), "web", passing_only=True)
    assert len(before.value) == 1
    await cat.register(node("n1"), None, [check("serfHealth", CRIT)])
    after = await cat.service_health(QueryOpts(), "web", passing_only=True)
    assert after.value == [] and after.index > before.index


async def test_unchanged_register_writes_nothing(store: Store) -> None:
    cat = Catalog(store)
    i1 = await cat.register(node("n1"), svc("web"), [check("c", service_id="web")])
    r1 = await cat.service_health(QueryOpts(), "web")
    i2 = await cat.register(node("n1"), svc("web"), [check("c", service_id="web")])
    r2 = await cat.service_health(QueryOpts(), "web")
    assert r1.index == r2.index and i2 == i1


async def test_per_service_index_and_blocking(store: Store) -> None:
    cat = Catalog(store)
    await cat.register(node("n1"), svc("a"))
    await cat.register(node("n1"), svc("b"))
    a = await cat.service_health(QueryOpts(), "a")
    # A write to b does not wake a blocking read on a.
    waiter = asyncio.create_task(
        cat.service_health(QueryOpts(min_index=a.index, max_wait=0.6), "a")
    )
    await asyncio.sleep(0.1)
    await cat.register(node("n2"), svc("b", "b2"))
    res = await asyncio.wait_for(waiter, 5)
    assert res.index == a.index
    # A write to a does, promptly.
    waiter = asyncio.create_task(cat.service_health(QueryOpts(min_index=a.index, max_wait=30), "a"))
    await asyncio.sleep(0.1)
    await cat.register(node("n2"), svc("a", "a2"))
    res = await asyncio.wait_for(waiter, 5)
    assert res.index > a.index and len(res.value) == 2


async def test_deregister_service_node_and_check(store: Store) -> None:
    cat = Catalog(store)
    await cat.register(node("n1"), svc("web"), [check("c1", service_id="web"), check("nc")])
    await cat.register(node("n1"), svc("db"))
    before = await cat.service_instances(QueryOpts(), "web")
    await cat.deregister("n1", service_id="web")
    after = await cat.service_instances(QueryOpts(), "web")
    assert after.value == [] and after.index > before.index
    checks = await cat.node_checks(QueryOpts(), "n1")
    assert [c.check_id for c in checks.value] == ["nc"]
    await cat.deregister("n1", check_id="nc")
    assert (await cat.node_checks(QueryOpts(), "n1")).value == []
    await cat.deregister("n1")
    assert (await cat.get_node(QueryOpts(), "n1")).value[0] is None
    assert (await cat.service_instances(QueryOpts(), "db")).value == []


async def test_register_validation(store: Store) -> None:
    cat = Catalog(store)
    with pytest.raises(InvalidArgument):
        await cat.register(pb.Node(name="", address="x"))
    # Consul's state store: ErrMissingService, a 500 over HTTP.
    with pytest.raises(ConsulError, match=r"^Missing service registration$") as err:
        await cat.register(node("n1"), None, [check("c", service_id="missing")])
    assert type(err.value) is ConsulError


async def test_concurrent_registrations_on_one_node_all_land(store: Store) -> None:
    cat = Catalog(store)
    await asyncio.gather(*(cat.register(node("n1"), svc(f"s{i}")) for i in range(10)))
    got = await cat.get_node(QueryOpts(), "n1")
    assert sorted(s.id for s in got.value[1]) == sorted(f"s{i}" for i in range(10))
