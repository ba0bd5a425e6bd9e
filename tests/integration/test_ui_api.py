"""The web UI's HTTP side on real agents: static routes, and Consul's /v1/internal/ui/* reads."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from typing import Any

import pytest

from tests.support.procs import AgentProcess, Cluster, wait_until


def get(agent: AgentProcess, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET without following redirects: status, headers, body."""
    host, port = agent.http_addr.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def get_json(agent: AgentProcess, path: str) -> tuple[int, Any, int]:
    status, headers, body = get(agent, path)
    return status, json.loads(body) if body.strip() else None, int(headers.get("X-Consul-Index", 0))


def put(agent: AgentProcess, path: str, body: Any = None) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture
def agents(cluster: Cluster) -> tuple[AgentProcess, AgentProcess]:
    """A plain server (UI off) and a client agent beside it with --ui."""
    server = cluster.server("s1")
    client = cluster.client("c1", "--retry-join", server.rpc_addr, "--ui")
    return server, client


def test_ui_routes_only_when_enabled(agents: tuple[AgentProcess, AgentProcess]) -> None:
    server, client = agents
    status, headers, _ = get(client, "/")
    assert (status, headers["Location"]) == (301, "/ui/")
    status, headers, body = get(client, "/ui/")
    assert status == 200 and b'<div id="app">' in body
    assert headers["Content-Type"].startswith("text/html")
    # A deep link answers with the page (the app routes it in the browser).
    status, _, deep = get(client, "/ui/dc1/kv/app/config/edit")
    assert (status, deep) == (200, body)
    status, headers, _ = get(client, "/ui/assets/vendor/preact.mjs")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert get(client, "/ui/assets/app/missing.js")[0] == 404
    assert get(client, "/ui/assets/..%2f..%2f__init__.py")[0] == 404
    assert get(client, "/ui/assets/%2e%2e/%2e%2e/__init__.py")[0] == 404
    # UI off: no pages, but Consul's UI reads are still served.
    assert get(server, "/ui/")[0] == 404
    assert get(server, "/")[0] == 404
    assert get_json(server, "/v1/internal/ui/services")[0] == 200


def test_internal_ui_reads_in_consul_shapes(agents: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = agents
    put(
        client,
        "/v1/agent/service/register",
        {"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["b", "a"], "Check": {"TTL": "60s"}},
    )

    def web() -> dict[str, Any] | None:
        _, body, _ = get_json(client, "/v1/internal/ui/services")
        return next((s for s in body if s["Name"] == "web"), None)

    wait_until(lambda: web() is not None, what="web in the UI services list")
    summary = web()
    assert summary is not None
    assert summary["Tags"] == ["a", "b"] and summary["Nodes"] == ["c1"]
    assert summary["InstanceCount"] == 1
    # A TTL check starts critical; the node's serfHealth is passing and counts too.
    assert (summary["ChecksPassing"], summary["ChecksCritical"]) == (1, 1)
    assert "Kind" not in summary and summary["ExternalSources"] == []

    status, nodes, index = get_json(client, "/v1/internal/ui/nodes")
    assert status == 200 and index > 0
    c1 = next(n for n in nodes if n["Node"] == "c1")
    assert [s["ID"] for s in c1["Services"]] == ["web-1"]
    assert {c["CheckID"] for c in c1["Checks"]} == {"serfHealth", "service:web-1"}

    status, node, _ = get_json(client, "/v1/internal/ui/node/c1")
    assert status == 200 and node["Node"] == "c1" and node["Services"][0]["Service"] == "web"
    status, missing, node_index = get_json(client, "/v1/internal/ui/node/nope")
    assert (status, missing) == (404, None) and node_index > 0

    status, overview, _ = get_json(client, "/v1/internal/ui/catalog-overview")
    assert status == 200
    assert overview["Nodes"] == [{"Total": 2, "Passing": 2, "Warning": 0, "Critical": 0}]
    assert {"Name": "web", "Total": 1, "Passing": 0, "Warning": 0, "Critical": 1} in overview[
        "Services"
    ]

    assert get(client, "/v1/internal/ui/services?filter=Name%20%3D%3D%20web")[0] == 400
    assert get(client, "/v1/internal/ui/services?index=abc")[0] == 400


def test_services_list_blocks_until_a_check_changes(
    agents: tuple[AgentProcess, AgentProcess],
) -> None:
    _, client = agents
    put(
        client,
        "/v1/agent/service/register",
        {"Name": "api", "ID": "api-1", "Check": {"TTL": "60s"}},
    )

    def api_summary(body: list[dict[str, Any]]) -> dict[str, Any] | None:
        return next((s for s in body if s["Name"] == "api"), None)

    wait_until(
        lambda: api_summary(get_json(client, "/v1/internal/ui/services")[1]) is not None,
        what="api listed",
    )
    _, body, index = get_json(client, "/v1/internal/ui/services")
    assert api_summary(body)["ChecksCritical"] == 1  # type: ignore[index]
    answer: dict[str, Any] = {}

    def blocking() -> None:
        answer["result"] = get_json(client, f"/v1/internal/ui/services?index={index}&wait=30s")

    waiter = threading.Thread(target=blocking)
    waiter.start()
    put(client, "/v1/agent/check/pass/service:api-1")
    waiter.join(45)
    assert not waiter.is_alive()
    status, body, new_index = answer["result"]
    assert status == 200 and new_index > index
    summary = api_summary(body)
    assert summary is not None and summary["ChecksCritical"] == 0


def test_bad_node_path_is_a_clear_400(agents: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = agents
    status, _, body = get(client, "/v1/internal/ui/node/")
    assert (status, body) == (400, b"Missing node name")
