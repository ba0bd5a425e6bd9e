"""/v1/catalog/node-services/:node (Consul 1.7+): the node and its services as a list.

Added for issue 16's catalog bench, which reads one node's services at scale.
"""

from __future__ import annotations

from generated.consul.catalog.v1 import catalog_pb2 as cpb
from tests.http.conftest import Client
from tests.http.fakes import FakeInvoker
from tests.http.test_catalog_health import CATALOG, NODE, SVC, meta


async def test_catalog_node_services(client: Client, invoker: FakeInvoker) -> None:
    invoker.canned[CATALOG + "GetNode"] = cpb.GetNodeResponse(
        meta=meta(9), node=NODE, services=[SVC]
    )
    resp = await client.get("/v1/catalog/node-services/n1")
    assert resp.status == 200
    assert resp.headers["X-Consul-Index"] == "9"
    body = await resp.json()
    assert body["Node"]["Node"] == "n1"
    assert [s["ID"] for s in body["Services"]] == ["web-1"]
    assert body["Services"][0]["Service"] == "web"
    req = invoker.last("GetNode")
    assert isinstance(req, cpb.GetNodeRequest)
    assert req.node == "n1"


async def test_catalog_node_services_unknown_node_is_null(
    client: Client, invoker: FakeInvoker
) -> None:
    invoker.canned[CATALOG + "GetNode"] = cpb.GetNodeResponse(meta=meta(7))
    resp = await client.get("/v1/catalog/node-services/nope")
    assert resp.status == 200
    assert await resp.text() == "null"
