"""/v1/agent/*: shapes, status codes, and the AgentService requests they make."""

from __future__ import annotations

import json

from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb
from tests.http.conftest import Client, Leaves
from tests.http.fakes import FakeAgent


async def test_self_has_config_member_stats(client: Client) -> None:
    resp = await client.get("/v1/agent/self")
    assert resp.status == 200
    body = await resp.json()
    assert body["Config"]["Datacenter"] == "dc1"
    assert body["Config"]["NodeName"] == "node-1"
    assert body["Config"]["Version"] == "1.22.0"
    assert body["Config"]["Server"] is False
    assert body["Config"]["NodeID"] == "abc"
    assert body["Member"]["Name"] == "node-1"
    assert body["Member"]["Addr"] == "127.0.0.1"
    assert body["Member"]["Port"] == 8502
    assert body["Member"]["Status"] == 1
    assert body["Stats"]["consul"] == {"known_servers": "1"}
    assert body["Stats"]["agent"] == {"checks": "0", "runtime": "python"}
    assert body["DebugConfig"]["Routers"][0]["Servers"][0]["Name"] == "s1"
    # Consul's top-level keys, exactly (clients check them).
    assert set(body) == {"Config", "Coord", "DebugConfig", "Member", "Meta", "Stats", "xDS"}


async def test_members_and_wan_flag(client: Client, fake_agent: FakeAgent) -> None:
    fake_agent.members = [
        mpb.Member(
            name="s1",
            address="10.0.0.1:8300",
            datacenter="dc1",
            role=mpb.MEMBER_ROLE_SERVER,
            status=mpb.MEMBER_STATUS_FAILED,
        )
    ]
    resp = await client.get("/v1/agent/members", params={"wan": "1"})
    assert resp.status == 200
    body = await resp.json()
    assert body[0]["Name"] == "s1"
    assert body[0]["Addr"] == "10.0.0.1"
    assert body[0]["Port"] == 8300
    assert body[0]["Status"] == 4
    assert body[0]["Tags"]["role"] == "consul"
    assert body[0]["Tags"]["dc"] == "dc1"
    assert fake_agent.last(apb.ListMembersRequest).wan is True
    resp = await client.get("/v1/agent/members")
    assert fake_agent.last(apb.ListMembersRequest).wan is False


async def test_empty_lists_are_lists_not_null(client: Client) -> None:
    assert await (await client.get("/v1/agent/members")).json() == []
    assert await (await client.get("/v1/agent/services")).json() == {}
    assert await (await client.get("/v1/agent/checks")).json() == {}


async def test_register_service_lowercase_keys(client: Client, fake_agent: FakeAgent) -> None:
    body = {
        "name": "web",
        "id": "web-1",
        "tags": ["a", "b"],
        "address": "10.0.0.5",
        "port": 8080,
        "meta": {"Version": "2"},
        "enable_tag_override": True,
        "weights": {"passing": 3, "warning": 1},
        "check": {"ttl": "10s", "DeregisterCriticalServiceAfter": "90m", "notes": "n"},
    }
    resp = await client.put(
        "/v1/agent/service/register",
        data=json.dumps(body),
        params={"replace-existing-checks": "true"},
        headers={"X-Consul-Token": "tok"},
    )
    assert resp.status == 200, await resp.text()
    req = fake_agent.last(apb.RegisterServiceRequest)
    assert isinstance(req, apb.RegisterServiceRequest)
    assert req.token == "tok"
    assert req.replace_existing_checks is True
    svc = req.definition.service
    assert (svc.id, svc.name, list(svc.tags), svc.address, svc.port) == (
        "web-1",
        "web",
        ["a", "b"],
        "10.0.0.5",
        8080,
    )
    assert dict(svc.meta) == {"Version": "2"}
    assert svc.enable_tag_override is True
    assert (svc.weights.passing, svc.weights.warning) == (3, 1)
    (check,) = req.definition.checks
    assert check.service_id == "web-1"
    assert check.notes == "n"
    assert check.definition.ttl.seconds == 10
    assert check.definition.deregister_critical_service_after.seconds == 90 * 60

    services = await (await client.get("/v1/agent/services")).json()
    assert services["web-1"]["Service"] == "web"
    assert services["web-1"]["Port"] == 8080
    assert services["web-1"]["Weights"] == {"Passing": 3, "Warning": 1}
    assert services["web-1"]["Datacenter"] == "dc1"
    one = await client.get("/v1/agent/service/web-1")
    assert one.status == 200
    assert (await one.json())["ID"] == "web-1"
    checks = await (await client.get("/v1/agent/checks")).json()
    assert checks["service:web-1"]["Status"] == "critical"
    assert checks["service:web-1"]["ServiceID"] == "web-1"


async def test_register_service_all_check_fields(client: Client, fake_agent: FakeAgent) -> None:
    body = {
        "Name": "api",
        "Checks": [
            {
                "CheckID": "api-http",
                "Name": "HTTP",
                "HTTP": "http://127.0.0.1:1/health",
                "Method": "POST",
                "Header": {"X-A": ["1", "2"]},
                "Interval": "5s",
                "Timeout": "1s",
                "SuccessBeforePassing": 2,
                "FailuresBeforeCritical": 3,
                "Status": "passing",
            },
            {"TCP": "127.0.0.1:1", "Interval": "10s"},
            {"GRPC": "127.0.0.1:1/svc", "GRPCUseTLS": True, "Interval": "10s"},
            {"Args": ["true"], "Interval": 2_000_000_000},
        ],
    }
    resp = await client.put("/v1/agent/service/register", data=json.dumps(body))
    assert resp.status == 200, await resp.text()
    req = fake_agent.last(apb.RegisterServiceRequest)
    assert isinstance(req, apb.RegisterServiceRequest)
    assert req.definition.service.id == "api"  # ID defaults to the name
    http, tcp, grpc, script = req.definition.checks
    assert http.check_id == "api-http"
    assert http.status == pb.HEALTH_STATUS_PASSING
    d = http.definition
    assert (d.http, d.method, list(d.headers["X-A"].values)) == (
        "http://127.0.0.1:1/health",
        "POST",
        ["1", "2"],
    )
    assert (d.interval.seconds, d.timeout.seconds) == (5, 1)
    assert (d.success_before_passing, d.failures_before_critical) == (2, 3)
    assert tcp.definition.tcp == "127.0.0.1:1"
    assert grpc.definition.grpc_use_tls is True
    assert list(script.definition.args) == ["true"]
    assert script.definition.interval.seconds == 2  # a JSON number is nanoseconds


async def test_unknown_service_is_404(client: Client) -> None:
    resp = await client.get("/v1/agent/service/nope")
    assert resp.status == 404
    assert "nope" in await resp.text()


async def test_deregister_service(client: Client, fake_agent: FakeAgent) -> None:
    fake_agent.services["x"] = pb.Service(id="x", name="x")
    resp = await client.put("/v1/agent/service/deregister/x")
    assert resp.status == 200
    assert "x" not in fake_agent.services
    resp = await client.put("/v1/agent/service/deregister/x")
    assert resp.status == 404
    assert await resp.text() == 'Unknown service ID "x"'


async def test_register_check_and_ttl_updates(client: Client, fake_agent: FakeAgent) -> None:
    body = {"name": "mem", "id": "mem-1", "ttl": "30s", "serviceid": "web", "notes": "n"}
    resp = await client.put("/v1/agent/check/register", data=json.dumps(body))
    assert resp.status == 200, await resp.text()
    req = fake_agent.last(apb.RegisterCheckRequest)
    assert isinstance(req, apb.RegisterCheckRequest)
    assert (req.check.check_id, req.check.name, req.check.service_id) == ("mem-1", "mem", "web")
    assert req.check.definition.ttl.seconds == 30

    for verb, status in (
        ("pass", pb.HEALTH_STATUS_PASSING),
        ("warn", pb.HEALTH_STATUS_WARNING),
        ("fail", pb.HEALTH_STATUS_CRITICAL),
    ):
        resp = await client.put(f"/v1/agent/check/{verb}/mem-1", params={"note": f"{verb}!"})
        assert resp.status == 200
        ttl = fake_agent.last(apb.UpdateTTLRequest)
        assert isinstance(ttl, apb.UpdateTTLRequest)
        assert (ttl.check_id, ttl.status, ttl.output) == ("mem-1", status, f"{verb}!")

    resp = await client.put(
        "/v1/agent/check/update/mem-1", data=json.dumps({"status": "warning", "output": "hi"})
    )
    assert resp.status == 200
    ttl = fake_agent.last(apb.UpdateTTLRequest)
    assert isinstance(ttl, apb.UpdateTTLRequest)
    assert (ttl.status, ttl.output) == (pb.HEALTH_STATUS_WARNING, "hi")

    resp = await client.put("/v1/agent/check/update/mem-1", data=json.dumps({"Status": "bad"}))
    assert resp.status == 400
    resp = await client.put("/v1/agent/check/pass/unknown")
    assert resp.status == 404

    resp = await client.put("/v1/agent/check/deregister/mem-1")
    assert resp.status == 200
    assert "mem-1" not in fake_agent.checks


async def test_check_register_requires_name(client: Client) -> None:
    resp = await client.put("/v1/agent/check/register", data=json.dumps({"TTL": "10s"}))
    assert resp.status == 400
    assert "Missing check name" in await resp.text()


async def test_maintenance(client: Client, fake_agent: FakeAgent) -> None:
    resp = await client.put("/v1/agent/maintenance", params={"enable": "True", "reason": "r"})
    assert resp.status == 200
    assert fake_agent.maintenance[-1] == apb.MaintenanceRequest(enable=True, reason="r")
    resp = await client.put("/v1/agent/service/maintenance/web", params={"enable": "false"})
    assert resp.status == 200
    assert fake_agent.maintenance[-1] == apb.MaintenanceRequest(enable=False, service_id="web")
    resp = await client.put("/v1/agent/maintenance")
    assert resp.status == 400
    assert await resp.text() == "Missing value for enable"
    resp = await client.put("/v1/agent/maintenance", params={"enable": "maybe"})
    assert resp.status == 400
    assert await resp.text() == "Invalid value for enable"


async def test_leave_calls_on_leave(client: Client, leaves: Leaves) -> None:
    resp = await client.put("/v1/agent/leave")
    assert resp.status == 200
    assert leaves.count == 1


async def test_filter_passed_to_agent(client: Client, fake_agent: FakeAgent) -> None:
    await client.get("/v1/agent/services", params={"filter": 'Service == "web"'})
    req = fake_agent.last(apb.ListServicesRequest)
    assert isinstance(req, apb.ListServicesRequest)
    assert req.filter == 'Service == "web"'
    await client.get("/v1/agent/checks", params={"filter": 'Status == "passing"'})
    creq = fake_agent.last(apb.ListChecksRequest)
    assert isinstance(creq, apb.ListChecksRequest)
    assert creq.filter == 'Status == "passing"'


async def test_agent_check_json_has_interval(client: Client, fake_agent: FakeAgent) -> None:
    check = pb.HealthCheck(node="node-1", check_id="c", name="c", status=pb.HEALTH_STATUS_PASSING)
    check.definition.interval.FromSeconds(90)
    check.definition.timeout.FromMilliseconds(500)
    fake_agent.checks["c"] = check
    body = await (await client.get("/v1/agent/checks")).json()
    assert body["c"]["Interval"] == "1m30s"
    assert body["c"]["Timeout"] == "500ms"
    assert body["c"]["Status"] == "passing"
