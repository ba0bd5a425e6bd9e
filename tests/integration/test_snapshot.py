"""``/v1/snapshot`` end to end: saved from an etcd datacenter, restored into a dev agent.

Real processes: an etcd-backed server (and a client agent in front of it, so
the chunked transfer goes through the client's forwarding path), and a dev
agent on the memory store. The reads that must match after the restore are
what the restored datacenter owns: external catalog registrations and KV
(each agent's own node is the membership's business, reconciled by its own
leader).
"""

from __future__ import annotations

import base64
import json
import random
import urllib.error
import urllib.request

from tests.support.procs import Cluster, wait_until

T = 30


def http(addr: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=T) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def reads(addr: str) -> tuple[object, ...]:
    _, services, _ = http(addr, "GET", "/v1/catalog/service/web")
    web = sorted(
        (s["Node"], s["Address"], s["ServiceID"], s["ServicePort"], s["ServiceTags"])
        for s in json.loads(services)
    )
    _, kv, _ = http(addr, "GET", "/v1/kv/app/?recurse")
    pairs = sorted(
        (p["Key"], base64.b64decode(p["Value"] or ""), p["Flags"]) for p in json.loads(kv)
    )
    return web, pairs


def test_snapshot_of_an_etcd_datacenter_restores_into_a_dev_agent(
    cluster: Cluster, etcd_server, dc: str
) -> None:
    server = cluster.server(
        "snap-s1", "--store", "etcd", "--etcd-endpoints", etcd_server.endpoint, "--datacenter", dc
    )
    client = cluster.client("snap-c1", "--datacenter", dc, "--retry-join", server.rpc_addr)
    for i in range(3):
        body = json.dumps(
            {
                "Node": f"ext-{i}",
                "Address": f"10.1.0.{i + 1}",
                "Service": {"ID": f"web-{i}", "Service": "web", "Port": 9000 + i, "Tags": ["a"]},
            }
        ).encode()
        assert http(client.http_addr, "PUT", "/v1/catalog/register", body)[0] == 200
    # More keys than one store transaction, and values of 300 KiB that do not
    # compress: the archive moves in more than one 1 MiB chunk.
    big = random.Random(7).randbytes(300 * 1024)
    for i in range(200):
        assert http(client.http_addr, "PUT", f"/v1/kv/app/k{i:03d}?flags={i}", b"v%d" % i)[0] == 200
    for i in range(5):
        assert http(client.http_addr, "PUT", f"/v1/kv/app/big{i}", big)[0] == 200

    status, archive, headers = http(client.http_addr, "GET", "/v1/snapshot")
    assert status == 200, archive[:200]
    assert int(headers["X-Consul-Index"]) > 0
    assert len(archive) > 1024 * 1024

    dev = cluster.server("snap-dev", "--dev")
    # A damaged archive is refused and changes nothing.
    assert http(dev.http_addr, "PUT", "/v1/kv/app/keep", b"mine")[0] == 200
    status, body, _ = http(dev.http_addr, "PUT", "/v1/snapshot", archive[: len(archive) // 2])
    assert status == 400, body
    assert http(dev.http_addr, "GET", "/v1/kv/app/keep?raw")[1] == b"mine"

    status, body, _ = http(dev.http_addr, "PUT", "/v1/snapshot", archive)
    assert status == 200, body
    wait_until(lambda: reads(dev.http_addr) == reads(client.http_addr), what="identical reads")
    assert http(dev.http_addr, "GET", "/v1/kv/app/keep")[0] == 404
    assert len(reads(dev.http_addr)[1]) == 205
