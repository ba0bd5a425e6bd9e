"""Network coordinates with real agents: a dev server and two client agents.

Coordinates come from the heartbeats' round-trip times and reach the catalog
through batched writes; ``/v1/coordinate/*`` answer in Consul's shapes,
``?near=`` orders catalog, health and prepared-query answers by estimated
RTT, and ``consul-grpc rtt`` prints an estimate. The update period is short
here (300 ms) so one test sees many periods; the write rate stays at most one
batch per period (the server's ``consul_coordinate_batch_writes`` metric).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from tests.integration.test_operator import run
from tests.integration.test_snapshot import http
from tests.support.procs import Cluster, wait_until

PERIOD = 0.3
FAST = {
    "sync_coordinate_interval_min": "200ms",
    "consul": {"coordinate": {"update_period": "300ms"}},
}
# Far from the agents (which sit within a few ms of the origin): 1 s, 1.5 s, 3 s out.
EXTERNAL = {"ext-near": 1.0, "ext-mid": 1.5, "ext-far": 3.0}


def get(addr: str, path: str) -> tuple[int, object, dict[str, str]]:
    status, body, headers = http(addr, "GET", path)
    return status, json.loads(body) if body.strip() else None, headers


def names(addr: str, path: str) -> list[str]:
    status, rows, _ = get(addr, path)
    assert status == 200 and isinstance(rows, list)
    out = []
    for row in rows:
        node = row["Node"]
        out.append(node["Node"] if isinstance(node, dict) else node)
    return out


def coord(x: float) -> dict[str, object]:
    return {"Vec": [x] + [0.0] * 7, "Error": 0.2, "Adjustment": 0.0, "Height": 1e-05}


def batch_writes(addr: str) -> float:
    _, body, _ = http(addr, "GET", "/v1/agent/metrics?format=prometheus")
    for line in body.decode().splitlines():
        if line.startswith("consul_coordinate_batch_writes_total"):
            return float(line.split()[-1])
    raise AssertionError("no consul_coordinate_batch_writes metric")


def test_coordinates_end_to_end(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "fast.json"
    conf.write_text(json.dumps(FAST))
    common = ("--config-file", str(conf), "--suspect-timeout", "2s")
    started = time.monotonic()
    server = cluster.server("co-s1", "--dev", *common)
    c1 = cluster.client("co-c1", "--retry-join", server.rpc_addr, *common)
    c2 = cluster.client("co-c2", "--retry-join", server.rpc_addr, *common)
    agents = {"co-s1", "co-c1", "co-c2"}

    # Every agent's coordinate reaches the catalog, seen from every agent.
    def all_there() -> bool:
        return all(
            agents <= {r["Node"] for r in get(a.http_addr, "/v1/coordinate/nodes")[1]}  # type: ignore[union-attr]
            for a in (server, c1, c2)
        )

    wait_until(all_there, 60, what="coordinates of every agent")
    status, rows, headers = get(c1.http_addr, "/v1/coordinate/nodes")
    assert int(headers["X-Consul-Index"]) > 0
    for row in rows:  # type: ignore[union-attr]
        assert row["Segment"] == "" and len(row["Coord"]["Vec"]) == 8
        assert set(row["Coord"]) == {"Vec", "Error", "Adjustment", "Height"}
    # A client's coordinate has moved off the origin: it measured its server.
    status, one, _ = get(c1.http_addr, "/v1/coordinate/node/co-c1")
    assert status == 200 and [r["Node"] for r in one] == ["co-c1"]  # type: ignore[union-attr]
    assert any(v != 0.0 for v in one[0]["Coord"]["Vec"])  # type: ignore[index]
    status, _, headers = get(c1.http_addr, "/v1/coordinate/node/nobody")
    assert status == 404 and "X-Consul-Index" in headers
    # /v1/agent/self carries the agent's own coordinate.
    _, me, _ = get(c2.http_addr, "/v1/agent/self")
    assert len(me["Coord"]["Vec"]) == 8  # type: ignore[index]
    # The WAN coordinates of this datacenter's server.
    _, dcs, _ = get(c1.http_addr, "/v1/coordinate/datacenters")
    assert [(d["Datacenter"], d["AreaID"]) for d in dcs] == [("dc1", "wan")]  # type: ignore[union-attr]
    assert [c["Node"] for c in dcs[0]["Coordinates"]] == ["co-s1"]  # type: ignore[index]

    # rtt over the HTTP API (CONSUL_HTTP_ADDR), LAN and WAN.
    out = run(c1, "rtt", "co-c1", "co-c2")
    assert out.stdout.startswith("Estimated co-c1 <-> co-c2 rtt: ")
    assert out.stdout.rstrip().endswith(" ms (using LAN coordinates)")
    assert float(out.stdout.split("rtt: ")[1].split(" ms")[0]) >= 0
    out = run(c2, "rtt", "co-s1")  # the other node defaults to the agent's
    assert out.stdout.startswith("Estimated co-s1 <-> co-c2 rtt: ")
    out = run(server, "rtt", "-wan", "co-s1.dc1")
    assert "(using WAN coordinates)" in out.stdout
    out = run(c1, "rtt", "co-c1", "nobody", check=False)
    assert out.returncode == 1 and 'Could not find a coordinate for node "nobody"' in out.stderr

    # Update: Consul's body, validated; external nodes placed on a line.
    for name in [*EXTERNAL, "ext-none"]:
        body = {"Node": name, "Address": "10.0.0.9", "Service": {"Service": "web", "Port": 80}}
        assert (
            http(c1.http_addr, "PUT", "/v1/catalog/register", json.dumps(body).encode())[0] == 200
        )
    for name, x in EXTERNAL.items():
        body = json.dumps({"Node": name, "Segment": "", "Coord": coord(x)}).encode()
        status, text, _ = http(c1.http_addr, "PUT", "/v1/coordinate/update", body)
        assert status == 200, text
    status, text, _ = http(c1.http_addr, "PUT", "/v1/coordinate/update", b"{nope")
    assert status == 400 and text.startswith(b"Request decode failed")
    bad = json.dumps({"Node": "ext-near", "Coord": {"Vec": [1, 2]}}).encode()
    status, text, _ = http(c1.http_addr, "PUT", "/v1/coordinate/update", bad)
    assert status == 400 and text.startswith(b"rejected bad coordinate")
    bad = json.dumps({"Node": "ext-near", "Coord": {"Vec": ["x"] * 8}}).encode()
    assert http(c1.http_addr, "PUT", "/v1/coordinate/update", bad)[0] == 400

    def placed() -> bool:
        rows = get(c2.http_addr, "/v1/coordinate/nodes")[1]
        return set(EXTERNAL) <= {r["Node"] for r in rows}  # type: ignore[union-attr]

    wait_until(placed, 30, what="the external nodes' coordinates")

    # ?near=<node>: nearest first, nodes without a coordinate last; through a
    # client agent (its views) and the server alike.
    for agent in (c2, server):
        order = names(agent.http_addr, "/v1/catalog/nodes?near=ext-near")
        assert order[:2] == ["ext-near", "ext-mid"] and set(order[2:5]) == agents
        assert order[5:] == ["ext-far", "ext-none"]
        far = [n for n in names(agent.http_addr, "/v1/health/service/web?near=ext-far")]
        assert far == ["ext-far", "ext-mid", "ext-near", "ext-none"]
        svc = names(agent.http_addr, "/v1/catalog/service/web?near=ext-mid")
        assert svc[0] == "ext-mid" and svc[-1] == "ext-none"
        checks = names(agent.http_addr, "/v1/health/state/any?near=ext-far")
        assert checks[0] in agents | {"ext-far"}
    # _agent: the agent answering; its own cluster first, then the line outwards.
    order = names(c1.http_addr, "/v1/catalog/nodes?near=_agent")
    assert set(order[:3]) == agents and order[3:] == [*EXTERNAL, "ext-none"]
    # Without near the order is the catalog's (by name), untouched.
    assert names(c1.http_addr, "/v1/catalog/nodes") == sorted(order)

    # Prepared query Near: by RTT from the named node.
    query = {"Name": "near-web", "Service": {"Service": "web", "Near": "ext-far"}}
    status, text, _ = http(c1.http_addr, "POST", "/v1/query", json.dumps(query).encode())
    assert status == 200, text
    _, executed, _ = get(c1.http_addr, "/v1/query/near-web/execute")
    assert [n["Node"]["Node"] for n in executed["Nodes"]] == [  # type: ignore[index]
        "ext-far",
        "ext-mid",
        "ext-near",
        "ext-none",
    ]

    # The write rate: at most one batch per update period since the server started.
    elapsed = time.monotonic() - started
    writes = batch_writes(server.http_addr)
    assert 1 <= writes <= math.ceil(elapsed / PERIOD) + 1, (writes, elapsed)
    # Removing a node removes its coordinate.
    dereg = json.dumps({"Node": "ext-mid"}).encode()
    assert http(c1.http_addr, "PUT", "/v1/catalog/deregister", dereg)[0] == 200
    assert get(c1.http_addr, "/v1/coordinate/node/ext-mid")[0] == 404
