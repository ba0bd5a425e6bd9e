"""An unmodified Consul client (py-consul) against the app, served by HTTPServer on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import consul
import pytest

from agent.http import HTTPServer, build_app
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from tests.http.fakes import FakeAgent, FakeInvoker


@pytest.fixture
async def server(invoker: FakeInvoker, fake_agent: FakeAgent) -> AsyncIterator[HTTPServer]:
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1")
    async with HTTPServer(app, "127.0.0.1", 0) as srv:
        yield srv


def _client(server: HTTPServer) -> consul.Consul:
    host, _, port = server.address.rpartition(":")
    return consul.Consul(host=host, port=int(port), connections_timeout=5)


async def test_kv_put_get_cas(server: HTTPServer) -> None:
    c = _client(server)

    def scenario() -> None:
        assert c.kv.put("app/greeting", "hello") is True
        index, pair = c.kv.get("app/greeting")
        assert pair is not None
        assert pair["Value"] == b"hello"
        assert int(index) >= 1
        assert c.kv.put("app/greeting", "lost", cas=pair["ModifyIndex"] + 100) is False
        assert c.kv.put("app/greeting", "won", cas=pair["ModifyIndex"]) is True
        index, missing = c.kv.get("app/missing")
        assert missing is None
        assert int(index) >= 1
        assert c.kv.put("app/other", b"\x01\x02") is True
        _, pairs = c.kv.get("app/", recurse=True)
        assert [p["Key"] for p in pairs] == ["app/greeting", "app/other"]
        _, keys = c.kv.get("", keys=True)
        assert keys == ["app/greeting", "app/other"]
        assert c.kv.delete("app/", recurse=True) is True
        assert c.kv.get("app/greeting")[1] is None

    await asyncio.to_thread(scenario)


async def test_agent_service_register_and_checks(server: HTTPServer, fake_agent: FakeAgent) -> None:
    c = _client(server)

    def scenario() -> None:
        ok = c.agent.service.register(
            "web",
            service_id="web-1",
            address="10.0.0.5",
            port=8080,
            tags=["v1"],
            meta={"team": "a"},
            check=consul.Check.ttl("10s"),
            extra_checks=[consul.Check.http("http://127.0.0.1:1/h", "5s", timeout="1s")],
            enable_tag_override=True,
            replace_existing_checks=True,
        )
        assert ok is True
        services = c.agent.services()
        assert services["web-1"]["Service"] == "web"
        assert services["web-1"]["Port"] == 8080
        assert services["web-1"]["Tags"] == ["v1"]
        assert c.agent.service_definition("web-1")["ID"] == "web-1"
        checks = c.agent.checks()
        assert set(checks) == {"service:web-1:1", "service:web-1:2"}
        assert c.agent.check.ttl_pass("service:web-1:1", "all good") is True
        assert c.agent.maintenance(True, "upgrade") is True
        assert c.agent.service.maintenance("web-1", False) is True
        me = c.agent.self()
        assert me["Config"]["Datacenter"] == "dc1"
        assert me["Member"]["Name"] == "node-1"
        assert c.agent.service.deregister("web-1") is True

    await asyncio.to_thread(scenario)
    reg = fake_agent.last(apb.RegisterServiceRequest)
    assert isinstance(reg, apb.RegisterServiceRequest)
    svc = reg.definition.service
    assert (svc.id, svc.address, svc.port, dict(svc.meta)) == (
        "web-1",
        "10.0.0.5",
        8080,
        {"team": "a"},
    )
    assert svc.enable_tag_override is True
    assert reg.replace_existing_checks is True
    ttl, http = reg.definition.checks
    assert ttl.definition.ttl.seconds == 10
    assert http.definition.http == "http://127.0.0.1:1/h"
    assert http.definition.interval.seconds == 5
    assert http.definition.timeout.seconds == 1
    upd = fake_agent.last(apb.UpdateTTLRequest)
    assert isinstance(upd, apb.UpdateTTLRequest)
    assert (upd.status, upd.output) == (pb.HEALTH_STATUS_PASSING, "all good")
    assert fake_agent.maintenance[0] == apb.MaintenanceRequest(enable=True, reason="upgrade")
    assert fake_agent.maintenance[1] == apb.MaintenanceRequest(enable=False, service_id="web-1")


async def test_catalog_and_health_reads(server: HTTPServer) -> None:
    c = _client(server)

    def scenario() -> None:
        index, node = c.catalog.node("nope")
        assert node is None
        assert int(index) >= 1
        _, nodes = c.catalog.nodes()
        assert nodes == []
        _, services = c.catalog.services()
        assert services == {}
        _, entries = c.health.service("web", passing=True, tag="v1")
        assert entries == []
        assert c.catalog.register("n1", "10.0.0.1", service={"Service": "redis", "Port": 1}) is True
        assert c.status.leader() == ""

    await asyncio.to_thread(scenario)


async def test_server_address_and_bounded_close(
    invoker: FakeInvoker, fake_agent: FakeAgent
) -> None:
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1")
    srv = HTTPServer(app, "127.0.0.1", 0, shutdown_timeout=0.5)
    await srv.start()
    host, _, port = srv.address.rpartition(":")
    assert host == "127.0.0.1"
    assert int(port) > 0
    # A blocking read in flight does not hold up close beyond the bound.
    gate, entered = asyncio.Event(), asyncio.Event()

    async def stuck(spec: object, request: object) -> object:
        entered.set()
        await gate.wait()
        raise AssertionError("unreachable")

    invoker.rpc = stuck  # type: ignore[method-assign,assignment]
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /v1/kv/k?index=5 HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        await entered.wait()
    async with asyncio.timeout(6):
        await srv.aclose()
    writer.close()
    await srv.aclose()  # idempotent


async def test_port_in_use_raises_and_cleans_up(
    invoker: FakeInvoker, fake_agent: FakeAgent
) -> None:
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1")
    async with HTTPServer(app, "127.0.0.1", 0) as first:
        port = int(first.address.rpartition(":")[2])
        second = HTTPServer(
            build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1"), "127.0.0.1", port
        )
        with pytest.raises(OSError):
            await second.start()
        assert second.address == ""
        await second.aclose()


async def test_leave_without_callback_is_500(invoker: FakeInvoker, fake_agent: FakeAgent) -> None:
    app = build_app(invoker, fake_agent, datacenter="dc1", node_name="node-1")
    async with HTTPServer(app, "127.0.0.1", 0) as srv:
        c = _client(srv)
        with pytest.raises(consul.ConsulException, match="Leave is not supported"):
            await asyncio.to_thread(c.agent.leave)
