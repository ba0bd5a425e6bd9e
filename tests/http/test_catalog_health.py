"""/v1/catalog/* and /v1/health/*: requests sent to the servers and Consul's shapes back."""

from __future__ import annotations

import json

from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from tests.http.conftest import Client
from tests.http.fakes import FakeInvoker

CATALOG = "/consul.catalog.v1.CatalogService/"
HEALTH = "/consul.health.v1.HealthService/"

NODE = pb.Node(
    id="n-id", name="n1", address="10.0.0.1", datacenter="dc1", create_index=3, modify_index=4
)
SVC = pb.Service(id="web-1", name="web", tags=["v1"], port=80, create_index=5, modify_index=6)
CHECK = pb.HealthCheck(
    node="n1",
    check_id="service:web-1",
    name="web check",
    status=pb.HEALTH_STATUS_PASSING,
    service_id="web-1",
    service_name="web",
)


def meta(index: int = 42) -> qpb.QueryMeta:
    m = qpb.QueryMeta(index=index, known_leader=True)
    m.last_contact.FromMilliseconds(25)
    return m


async def test_catalog_register_body(client: Client, invoker: FakeInvoker) -> None:
    body = {
        "datacenter": "dc2",
        "node": "n1",
        "address": "10.0.0.1",
        "NodeMeta": {"rack": "r1"},
        "TaggedAddresses": {"wan": "1.2.3.4"},
        "service": {"Service": "redis", "ID": "redis1", "Tags": ["primary"], "Port": 8000},
        "check": {
            "Node": "n1",
            "CheckID": "service:redis1",
            "Name": "r",
            "Status": "passing",
            "ServiceID": "redis1",
        },
        "WriteRequest": {"Token": "body-token"},
        "SkipNodeUpdate": True,
    }
    resp = await client.put("/v1/catalog/register", data=json.dumps(body))
    assert resp.status == 200, await resp.text()
    assert await resp.json() is True
    req = invoker.last("Register")
    assert isinstance(req, cpb.RegisterRequest)
    assert req.write == qpb.WriteOptions(datacenter="dc2", token="body-token")
    assert (req.node.name, req.node.address, dict(req.node.meta)) == (
        "n1",
        "10.0.0.1",
        {"rack": "r1"},
    )
    assert dict(req.node.tagged_addresses) == {"wan": "1.2.3.4"}
    assert (req.service.id, req.service.name, req.service.port) == ("redis1", "redis", 8000)
    assert req.checks[0].status == pb.HEALTH_STATUS_PASSING
    assert req.checks[0].service_id == "redis1"
    assert req.skip_node_update is True


async def test_catalog_register_header_token_and_dc_param(
    client: Client, invoker: FakeInvoker
) -> None:
    body = {"Node": "n1", "Address": "a"}
    resp = await client.put(
        "/v1/catalog/register?dc=dc3", data=json.dumps(body), headers={"X-Consul-Token": "t"}
    )
    assert resp.status == 200
    req = invoker.last("Register")
    assert isinstance(req, cpb.RegisterRequest)
    assert req.write == qpb.WriteOptions(datacenter="dc3", token="t")


async def test_catalog_deregister(client: Client, invoker: FakeInvoker) -> None:
    body = {"Node": "n1", "ServiceID": "redis1"}
    resp = await client.put("/v1/catalog/deregister", data=json.dumps(body))
    assert resp.status == 200
    assert await resp.json() is True
    req = invoker.last("Deregister")
    assert isinstance(req, cpb.DeregisterRequest)
    assert (req.node, req.service_id, req.check_id) == ("n1", "redis1", "")


async def test_datacenters(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "ListDatacenters"] = cpb.ListDatacentersResponse(
        datacenters=["dc1", "dc2"]
    )
    resp = await client.get("/v1/catalog/datacenters")
    assert await resp.json() == ["dc1", "dc2"]


async def test_nodes_with_headers(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "ListNodes"] = cpb.ListNodesResponse(meta=meta(), nodes=[NODE])
    resp = await client.get("/v1/catalog/nodes", params={"node-meta": "rack:r1"})
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == "42"
    assert resp.headers["X-Consul-KnownLeader"] == "true"
    assert resp.headers["X-Consul-LastContact"] == "25"
    (node,) = await resp.json()
    assert node["Node"] == "n1"
    assert node["ID"] == "n-id"
    assert node["Address"] == "10.0.0.1"
    assert node["Meta"] == {}
    assert node["CreateIndex"] == 3
    req = invoker.last("ListNodes")
    assert isinstance(req, cpb.ListNodesRequest)
    assert dict(req.node_meta) == {"rack": "r1"}


async def test_empty_reads_are_lists(client: Client) -> None:
    for path in (
        "/v1/catalog/nodes",
        "/v1/catalog/service/web",
        "/v1/health/node/n1",
        "/v1/health/checks/web",
        "/v1/health/service/web",
        "/v1/health/state/any",
    ):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert await resp.json() == [], path
        assert resp.headers["X-Consul-Index"] == "1", path  # never 0
    resp = await client.get("/v1/catalog/services")
    assert await resp.json() == {}


async def test_services_map(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "ListServices"] = cpb.ListServicesResponse(
        meta=meta(),
        services=[
            cpb.ServiceSummary(name="consul"),
            cpb.ServiceSummary(name="web", tags=["a", "b"]),
        ],
    )
    resp = await client.get("/v1/catalog/services")
    assert await resp.json() == {"consul": [], "web": ["a", "b"]}


async def test_catalog_service_with_tags(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "ListServiceInstances"] = cpb.ListServiceInstancesResponse(
        meta=meta(), instances=[pb.ServiceInstance(node=NODE, service=SVC)]
    )
    resp = await client.get("/v1/catalog/service/web?tag=v1&tag=blue")
    (inst,) = await resp.json()
    assert inst["Node"] == "n1"
    assert inst["ServiceID"] == "web-1"
    assert inst["ServiceName"] == "web"
    assert inst["ServiceTags"] == ["v1"]
    assert inst["ServicePort"] == 80
    assert inst["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    req = invoker.last("ListServiceInstances")
    assert isinstance(req, cpb.ListServiceInstancesRequest)
    assert req.service == "web"
    assert list(req.tags) == ["v1", "blue"]


async def test_catalog_node(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "GetNode"] = cpb.GetNodeResponse(
        meta=meta(), node=NODE, services=[SVC]
    )
    body = await (await client.get("/v1/catalog/node/n1")).json()
    assert body["Node"]["Node"] == "n1"
    assert body["Services"]["web-1"]["Service"] == "web"
    assert body["Services"]["web-1"]["Tags"] == ["v1"]


async def test_catalog_unknown_node_is_null(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "GetNode"] = cpb.GetNodeResponse(meta=meta(7))
    resp = await client.get("/v1/catalog/node/nope")
    assert resp.status == 200
    assert await resp.text() == "null"
    assert resp.headers["X-Consul-Index"] == "7"


async def test_health_service_passing_and_tags(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[HEALTH + "ServiceHealth"] = hpb.ServiceHealthResponse(
        meta=meta(), entries=[pb.ServiceEntry(node=NODE, service=SVC, checks=[CHECK])]
    )
    resp = await client.get("/v1/health/service/web?passing&tag=v1&node-meta=a:b")
    (entry,) = await resp.json()
    assert entry["Node"]["Node"] == "n1"
    assert entry["Service"]["ID"] == "web-1"
    assert entry["Checks"][0]["CheckID"] == "service:web-1"
    assert entry["Checks"][0]["Status"] == "passing"
    req = invoker.last("ServiceHealth")
    assert isinstance(req, hpb.ServiceHealthRequest)
    assert (req.service, req.passing_only, list(req.tags)) == ("web", True, ["v1"])
    assert dict(req.node_meta) == {"a": "b"}
    await client.get("/v1/health/service/web?passing=false")
    req = invoker.last("ServiceHealth")
    assert isinstance(req, hpb.ServiceHealthRequest)
    assert req.passing_only is False
    await client.get("/v1/health/service/web")
    req = invoker.last("ServiceHealth")
    assert isinstance(req, hpb.ServiceHealthRequest)
    assert req.passing_only is False


async def test_health_node_and_checks(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[HEALTH + "NodeChecks"] = hpb.NodeChecksResponse(meta=meta(), checks=[CHECK])
    invoker.canned[HEALTH + "ServiceChecks"] = hpb.ServiceChecksResponse(
        meta=meta(), checks=[CHECK]
    )
    (c,) = await (await client.get("/v1/health/node/n1")).json()
    assert c["Node"] == "n1"
    assert c["ServiceName"] == "web"
    req = invoker.last("NodeChecks")
    assert isinstance(req, hpb.NodeChecksRequest)
    assert req.node == "n1"
    (c,) = await (await client.get("/v1/health/checks/web")).json()
    assert c["CheckID"] == "service:web-1"
    sreq = invoker.last("ServiceChecks")
    assert isinstance(sreq, hpb.ServiceChecksRequest)
    assert sreq.service == "web"


async def test_health_state(client: Client, invoker: FakeInvoker) -> None:
    for name, state in (
        ("any", pb.HEALTH_STATUS_UNSPECIFIED),
        ("passing", pb.HEALTH_STATUS_PASSING),
        ("warning", pb.HEALTH_STATUS_WARNING),
        ("critical", pb.HEALTH_STATUS_CRITICAL),
    ):
        resp = await client.get(f"/v1/health/state/{name}")
        assert resp.status == 200
        req = invoker.last("ChecksInState")
        assert isinstance(req, hpb.ChecksInStateRequest)
        assert req.state == state
    resp = await client.get("/v1/health/state/bogus")
    assert resp.status == 400
    assert "bogus" in await resp.text()


async def test_filter_and_dc_go_into_query_options(client: Client, invoker: FakeInvoker) -> None:
    resp = await client.get(
        "/v1/health/service/web",
        params={"filter": "Service.Port == 80", "dc": "dc2", "token": "qt"},
        headers={"X-Consul-Token": "ht"},
    )
    assert resp.status == 200
    req = invoker.last("ServiceHealth")
    assert isinstance(req, hpb.ServiceHealthRequest)
    assert req.options.filter == "Service.Port == 80"
    assert req.options.datacenter == "dc2"
    assert req.options.token == "qt"  # ?token wins over the header, as in Consul
