"""Connect shapes and endpoints over HTTP: a dev server (with an HCL config file
declaring sidecars) and a client agent, real processes, one pair per module.

What Consul does is the reference: sidecar registration (agent/sidecar_service.go),
the connect/ingress/gateway-services reads, ``?merge-central-config``, ``?peer``,
the answers to a check on an unknown service, and ``?filter`` on every endpoint
Consul applies it to.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import consul
import pytest

from tests.integration.test_snapshot import http
from tests.support.procs import AgentProcess, Cluster, wait_until

_HCL = """
services {
  name = "api"
  port = 7000
  connect { sidecar_service {} }
}
service {
  name = "db"
  port = 5432
  tagged_addresses { lan { address = "10.1.1.1" port = 5432 } }
  connect {
    sidecar_service {
      port = 21999
      proxy {
        upstreams = [{ destination_name = "api", local_bind_port = 9191 }]
        config { handshake_timeout_ms = 1000 }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def agents(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    conf = tmp_path_factory.mktemp("conf")
    (conf / "services.hcl").write_text(_HCL)
    cluster = Cluster(tmp_path_factory.mktemp("logs"))
    try:
        dev = cluster.server("cx-dev", "--dev", "--config-dir", str(conf))
        client = cluster.client("cx-c1", "--retry-join", dev.rpc_addr)
        yield dev, client
    finally:
        cluster.stop_all()
        if request.session.testsfailed:
            print("\n" + cluster.dump_logs())


def get(addr: str, path: str) -> tuple[int, Any, dict[str, str]]:
    status, body, headers = http(addr, "GET", path)
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = body.decode()
    return status, data, headers


def put(addr: str, path: str, body: Any) -> tuple[int, bytes]:
    status, out, _ = http(addr, "PUT", path, json.dumps(body).encode())
    return status, out


def ok_put(addr: str, path: str, body: Any) -> None:
    status, out = put(addr, path, body)
    assert status == 200, (path, status, out)


def catalog_has(addr: str, service: str, service_id: str) -> bool:
    _, rows, _ = get(addr, f"/v1/catalog/service/{service}")
    return any(r["ServiceID"] == service_id for r in rows)


def test_sidecar_registration_shapes_and_connect_reads(
    agents: tuple[AgentProcess, AgentProcess],
) -> None:
    _, client = agents
    addr = client.http_addr
    ok_put(
        addr,
        "/v1/agent/service/register",
        {
            "Name": "web",
            "Port": 8080,
            "Address": "10.0.0.5",
            "Tags": ["v1"],
            "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 8080}},
            "Locality": {"Region": "eu", "Zone": "eu-1"},
            "Connect": {"SidecarService": {}},
        },
    )
    _, services, _ = get(addr, "/v1/agent/services")
    side = services["web-sidecar-proxy"]
    assert side["Kind"] == "connect-proxy" and side["Service"] == "web-sidecar-proxy"
    assert side["Port"] == 21000 and side["Address"] == "10.0.0.5" and side["Tags"] == ["v1"]
    assert side["Proxy"]["DestinationServiceName"] == "web"
    assert side["Proxy"]["DestinationServiceID"] == "web"
    assert side["Proxy"]["LocalServiceAddress"] == "127.0.0.1"
    assert side["Proxy"]["LocalServicePort"] == 8080
    web = services["web"]
    assert web["TaggedAddresses"] == {
        "lan": {"Address": "10.0.0.5", "Port": 8080},
        "lan_ipv4": {"Address": "10.0.0.5", "Port": 8080},
        "wan_ipv4": {"Address": "10.0.0.5", "Port": 8080},
    }
    assert web["Locality"] == {"Region": "eu", "Zone": "eu-1"} and "Proxy" not in web
    _, checks, _ = get(addr, "/v1/agent/checks")
    listening = checks["service:web-sidecar-proxy:1"]
    aliasing = checks["service:web-sidecar-proxy:2"]
    assert listening["Name"] == "Connect Sidecar Listening" and listening["Type"] == "tcp"
    assert aliasing["Name"] == "Connect Sidecar Aliasing web" and aliasing["Type"] == "alias"
    assert aliasing["Status"] == "passing"  # web has no checks of its own
    # A second sidecar takes the next port of the range.
    ok_put(
        addr,
        "/v1/agent/service/register",
        {"Name": "pay", "Port": 81, "Connect": {"SidecarService": {}}},
    )
    assert get(addr, "/v1/agent/service/pay-sidecar-proxy")[1]["Port"] == 21001

    # Anti-entropy carries the shapes to the catalog.
    wait_until(lambda: catalog_has(addr, "web-sidecar-proxy", "web-sidecar-proxy"), 20)
    _, rows, _ = get(addr, "/v1/catalog/service/web-sidecar-proxy")
    row = rows[0]
    assert row["ServiceKind"] == "connect-proxy"
    assert row["ServiceProxy"]["DestinationServiceName"] == "web"
    assert row["ServiceProxy"]["MeshGateway"] == {} and row["ServiceProxy"]["Expose"] == {}
    assert row["ServiceConnect"] == {}
    wait_until(lambda: catalog_has(addr, "web", "web"), 20)
    _, rows, _ = get(addr, "/v1/catalog/service/web")
    assert rows[0]["ServiceTaggedAddresses"]["wan_ipv4"] == {"Address": "10.0.0.5", "Port": 8080}
    assert rows[0]["ServiceLocality"] == {"Region": "eu", "Zone": "eu-1"}

    # /v1/catalog/connect and /v1/health/connect: the proxies of web, with an index.
    status, rows, headers = get(addr, "/v1/catalog/connect/web")
    assert status == 200 and [r["ServiceID"] for r in rows] == ["web-sidecar-proxy"]
    index = int(headers["X-Consul-Index"])
    assert index > 0
    status, entries, headers = get(addr, "/v1/health/connect/web")
    assert [e["Service"]["ID"] for e in entries] == ["web-sidecar-proxy"]
    assert {c["CheckID"] for c in entries[0]["Checks"]} >= {"service:web-sidecar-proxy:1"}
    assert get(addr, "/v1/health/connect/web?passing=1")[1] == []  # the TCP check fails
    assert get(addr, "/v1/catalog/connect/nothing")[1] == []
    assert get(addr, "/v1/health/connect/nothing")[1] == []
    host, _, port = addr.rpartition(":")
    c = consul.Consul(host=host, port=int(port), connections_timeout=10)
    assert [n["ServiceID"] for n in c.catalog.connect("web")[1]] == ["web-sidecar-proxy"]
    assert [e["Service"]["ID"] for e in c.health.connect("web")[1]] == ["web-sidecar-proxy"]

    # A blocking read wakes when a Connect-native instance of web registers.
    _, _, headers = get(addr, "/v1/health/connect/web")
    index = int(headers["X-Consul-Index"])
    woke: dict[str, Any] = {}

    def block() -> None:
        woke["answer"] = get(addr, f"/v1/health/connect/web?index={index}&wait=20s")

    waiter = threading.Thread(target=block)
    waiter.start()
    ok_put(
        addr,
        "/v1/agent/service/register",
        {"Name": "web", "ID": "web-native", "Port": 9090, "Connect": {"Native": True}},
    )
    waiter.join(25)
    assert not waiter.is_alive()
    _, entries, headers = woke["answer"]
    assert int(headers["X-Consul-Index"]) > index
    assert sorted(e["Service"]["ID"] for e in entries) == ["web-native", "web-sidecar-proxy"]
    native = next(e for e in entries if e["Service"]["ID"] == "web-native")
    assert native["Service"]["Connect"] == {"Native": True}

    # Deregistering the parent takes its sidecar along.
    ok_put(addr, "/v1/agent/service/deregister/web", {})
    _, services, _ = get(addr, "/v1/agent/services")
    assert "web" not in services and "web-sidecar-proxy" not in services
    assert "web-native" in services
    wait_until(lambda: not catalog_has(addr, "web-sidecar-proxy", "web-sidecar-proxy"), 20)


def test_sidecars_from_a_config_file(agents: tuple[AgentProcess, AgentProcess]) -> None:
    dev, _ = agents
    _, services, _ = get(dev.http_addr, "/v1/agent/services")
    api = services["api-sidecar-proxy"]
    assert api["Kind"] == "connect-proxy" and api["Port"] == 21000
    assert api["Proxy"]["DestinationServiceName"] == "api"
    db = services["db-sidecar-proxy"]
    assert db["Port"] == 21999
    assert db["Proxy"]["Upstreams"] == [{"DestinationName": "api", "LocalBindPort": 9191}]
    assert db["Proxy"]["Config"] == {"handshake_timeout_ms": 1000}
    assert services["db"]["TaggedAddresses"]["lan"] == {"Address": "10.1.1.1", "Port": 5432}


def test_validation_and_unknown_service_answers(agents: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = agents
    addr = client.http_addr
    status, body = put(
        addr, "/v1/agent/service/register", {"Name": "p", "Kind": "connect-proxy", "Port": 0}
    )
    assert status == 400
    assert body.decode() == (
        "Validation failed: 2 errors occurred:\n"
        "\t* Port or SocketPath must be set for a connect-proxy\n"
        "\t* Proxy.DestinationServiceName must be non-empty for Connect proxy services\n\n"
    )
    status, body = put(
        addr, "/v1/agent/service/register", {"Name": "g", "Kind": "mesh-gateway", "Port": 0}
    )
    assert (status, body) == (
        400,
        b"Validation failed: 1 error occurred:\n\t* Port must be non-zero for a mesh-gateway\n\n",
    )
    status, body = put(addr, "/v1/agent/service/register", {"Name": "k", "Kind": "bogus"})
    assert status == 400 and b'Kind "bogus" is not a service kind' in body
    # Consul's AgentRegisterCheck: 404 and its text.
    status, body = put(
        addr, "/v1/agent/check/register", {"Name": "c", "ServiceID": "nope", "TTL": "10s"}
    )
    assert (status, body) == (404, b'ServiceID "nope" does not exist')
    # Consul's catalog: the state store's ErrMissingService, a 500.
    status, body = put(
        addr,
        "/v1/catalog/register",
        {"Node": "n-x", "Address": "10.9.9.9", "Check": {"Name": "c", "ServiceID": "nope"}},
    )
    assert (status, body) == (500, b"Missing service registration")
    # The catalog validates as the agent does.
    status, body = put(
        addr,
        "/v1/catalog/register",
        {
            "Node": "n-x",
            "Address": "10.9.9.9",
            "Service": {"Service": "p", "Kind": "connect-proxy", "Port": 1},
        },
    )
    assert status == 400 and b"Proxy.DestinationServiceName must be non-empty" in body


def test_gateways_merge_central_config_and_peer(agents: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = agents
    addr = client.http_addr
    for entry in (
        {
            "Kind": "ingress-gateway",
            "Name": "ing",
            "Listeners": [
                {
                    "Port": 8443,
                    "Protocol": "http",
                    "Services": [{"Name": "shop", "Hosts": ["s.example"]}],
                }
            ],
        },
        {
            "Kind": "terminating-gateway",
            "Name": "tgw",
            "Services": [{"Name": "billing", "SNI": "b.example"}],
        },
        {"Kind": "proxy-defaults", "Name": "global", "Config": {"local_connect_timeout_ms": 1000}},
        {
            "Kind": "service-defaults",
            "Name": "shop",
            "Protocol": "http",
            "MeshGateway": {"Mode": "local"},
        },
    ):
        ok_put(addr, "/v1/config", entry)
    # /v1/catalog/gateway-services: Consul's GatewayService rows.
    status, rows, headers = get(addr, "/v1/catalog/gateway-services/ing")
    assert status == 200 and int(headers["X-Consul-Index"]) > 0
    assert len(rows) == 1
    row = rows[0]
    assert {
        k: row[k] for k in ("Gateway", "Service", "GatewayKind", "Port", "Protocol", "Hosts")
    } == {
        "Gateway": {"Name": "ing"},
        "Service": {"Name": "shop"},
        "GatewayKind": "ingress-gateway",
        "Port": 8443,
        "Protocol": "http",
        "Hosts": ["s.example"],
    }
    _, rows, _ = get(addr, "/v1/catalog/gateway-services/tgw")
    assert [(r["Service"]["Name"], r["GatewayKind"], r["SNI"]) for r in rows] == [
        ("billing", "terminating-gateway", "b.example")
    ]
    assert get(addr, "/v1/catalog/gateway-services/none")[1] == []

    # /v1/health/ingress: the ingress gateways exposing shop.
    ok_put(
        addr, "/v1/agent/service/register", {"Name": "ing", "Kind": "ingress-gateway", "Port": 8443}
    )
    ok_put(
        addr,
        "/v1/agent/service/register",
        {
            "Name": "shop",
            "Port": 80,
            "Connect": {"SidecarService": {"Proxy": {"Config": {"local_connect_timeout_ms": 5}}}},
        },
    )
    wait_until(lambda: catalog_has(addr, "ing", "ing"), 20)
    status, entries, headers = get(addr, "/v1/health/ingress/shop")
    assert status == 200 and [e["Service"]["ID"] for e in entries] == ["ing"]
    assert entries[0]["Service"]["Kind"] == "ingress-gateway"
    assert get(addr, "/v1/health/ingress/other")[1] == []
    # Blocking: wakes when the gateway's health changes (a check is added).
    index = int(headers["X-Consul-Index"])
    woke: dict[str, Any] = {}

    def block() -> None:
        woke["answer"] = get(addr, f"/v1/health/ingress/shop?index={index}&wait=20s")

    waiter = threading.Thread(target=block)
    waiter.start()
    ok_put(addr, "/v1/agent/check/register", {"Name": "ing-ttl", "ServiceID": "ing", "TTL": "60s"})
    waiter.join(25)
    assert not waiter.is_alive()
    _, entries, headers = woke["answer"]
    assert int(headers["X-Consul-Index"]) > index
    assert "ing-ttl" in {c["CheckID"] for c in entries[0]["Checks"]}

    # ?merge-central-config: proxy-defaults and service-defaults into the proxy.
    wait_until(lambda: catalog_has(addr, "shop-sidecar-proxy", "shop-sidecar-proxy"), 20)
    plain = get(addr, "/v1/catalog/service/shop-sidecar-proxy")[1][0]["ServiceProxy"]
    assert plain["Config"] == {"local_connect_timeout_ms": 5} and plain["MeshGateway"] == {}
    for path, pick in (
        ("/v1/catalog/service/shop-sidecar-proxy", lambda b: b[0]["ServiceProxy"]),
        ("/v1/health/service/shop-sidecar-proxy", lambda b: b[0]["Service"]["Proxy"]),
        ("/v1/agent/service/shop-sidecar-proxy", lambda b: b["Proxy"]),
    ):
        status, body, _ = get(addr, path + "?merge-central-config")
        assert status == 200, (path, body)
        merged = pick(body)
        # The instance's own value wins; the missing keys come from the defaults.
        assert merged["Config"] == {"local_connect_timeout_ms": 5, "protocol": "http"}, path
        assert merged["MeshGateway"] == {"Mode": "local"}, path
    assert get(addr, "/v1/catalog/service/shop-sidecar-proxy")[1][0]["ServiceProxy"] == plain

    # ?peer: no peerings here, so a named peer has nothing; empty is local.
    status, body, headers = get(addr, "/v1/health/service/shop?peer=elsewhere")
    assert (status, body) == (200, []) and int(headers["X-Consul-Index"]) > 0
    assert get(addr, "/v1/catalog/service/shop?peer=elsewhere")[1] == []
    empty = {"Node": None, "Services": []}
    assert get(addr, "/v1/catalog/node-services/cx-c1?peer=elsewhere")[1] == empty
    assert get(addr, "/v1/catalog/node-services/cx-c1")[1]["Services"]
    assert len(get(addr, "/v1/catalog/service/shop?peer=")[1]) == 1
    assert len(get(addr, "/v1/catalog/service/shop")[1]) == 1


def _q(expr: str) -> str:
    return urllib.parse.quote(expr)


def _count(body: Any, shape: str) -> int:
    if shape == "map":
        return len(body)
    if shape == "node":
        return len(body["Services"])
    return len(body)


# (endpoint, filter keeping one row, filter keeping none, shape)
_FILTERED = [
    ("/v1/agent/services", 'Service == "flt"', 'Service == "zz"', "map"),
    ("/v1/agent/checks", 'CheckID == "flt-ttl"', 'CheckID == "zz"', "map"),
    ("/v1/catalog/nodes", 'Node == "cx-c1"', 'Node == "zz"', "list"),
    ("/v1/catalog/services", 'ServiceName == "flt"', 'ServiceName == "zz"', "map"),
    ("/v1/catalog/service/flt", 'ServiceID == "flt"', 'ServiceID == "zz"', "list"),
    ("/v1/catalog/node/cx-c1", 'Service == "flt"', 'Service == "zz"', "node"),
    ("/v1/catalog/node-services/cx-c1", 'Service == "flt"', 'Service == "zz"', "node"),
    ("/v1/health/node/cx-c1", 'CheckID == "flt-ttl"', 'CheckID == "zz"', "list"),
    ("/v1/health/checks/flt", 'CheckID == "flt-ttl"', 'CheckID == "zz"', "list"),
    ("/v1/health/service/flt", 'Service.ID == "flt"', 'Service.ID == "zz"', "list"),
    ("/v1/health/state/any", 'CheckID == "flt-ttl"', 'CheckID == "zz"', "list"),
    ("/v1/health/connect/flt", 'Service.ID == "flt-sidecar-proxy"', 'Service.ID == "zz"', "list"),
    ("/v1/catalog/connect/flt", 'ServiceID == "flt-sidecar-proxy"', 'ServiceID == "zz"', "list"),
    ("/v1/health/ingress/flt", 'Service.ID == "flt-ing"', 'Service.ID == "zz"', "list"),
    (
        "/v1/catalog/gateway-services/flt-ing",
        'Service.Name == "flt"',
        'Service.Name == "zz"',
        "list",
    ),
]


def test_filter_applies_on_every_endpoint(agents: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = agents
    addr = client.http_addr
    ok_put(
        addr,
        "/v1/agent/service/register",
        {"Name": "flt", "Port": 1234, "Connect": {"SidecarService": {}}},
    )
    ok_put(addr, "/v1/agent/check/register", {"Name": "flt-ttl", "ServiceID": "flt", "TTL": "60s"})
    ok_put(
        addr,
        "/v1/agent/service/register",
        {"Name": "flt-ing", "Kind": "ingress-gateway", "Port": 8080},
    )
    ok_put(
        addr,
        "/v1/config",
        {
            "Kind": "ingress-gateway",
            "Name": "flt-ing",
            "Listeners": [{"Port": 8080, "Services": [{"Name": "flt"}]}],
        },
    )
    wait_until(lambda: catalog_has(addr, "flt-sidecar-proxy", "flt-sidecar-proxy"), 20)
    wait_until(lambda: catalog_has(addr, "flt-ing", "flt-ing"), 20)
    wait_until(lambda: len(get(addr, "/v1/health/checks/flt")[1]) == 1, 20)
    for path, keep, drop, shape in _FILTERED:
        status, everything, _ = get(addr, path)
        assert status == 200, (path, everything)
        status, kept, _ = get(addr, f"{path}?filter={_q(keep)}")
        assert status == 200, (path, kept)
        status, dropped, _ = get(addr, f"{path}?filter={_q(drop)}")
        assert status == 200, (path, dropped)
        assert _count(kept, shape) == 1, (path, kept)
        assert _count(dropped, shape) == 0 < _count(everything, shape), (path, dropped)
        status, body, _ = get(addr, f"{path}?filter={_q('Service ==')}")
        assert status == 400, (path, body)
        assert body.startswith("Failed to create boolean expression evaluator: "), (path, body)
