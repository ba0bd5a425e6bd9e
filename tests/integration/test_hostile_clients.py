"""Issue 15 end to end: vanished HTTP clients, a catastrophic pattern, an index at 2^63.

Real processes: an etcd-backed server and a client agent joined to it; HTTP
clients are raw sockets so that they can vanish mid-request. Task counts come
from each agent's ``/v1/agent/metrics`` (``consul.runtime.num_tasks``,
``consul.http.blocking_queries``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster, wait_until

pytestmark = pytest.mark.timeout(120)


def http(
    agent: AgentProcess, method: str, path: str, body: bytes | None = None
) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def gauge(agent: AgentProcess, name: str) -> float:
    status, body, _ = http(agent, "GET", "/v1/agent/metrics")
    assert status == 200, body
    for g in json.loads(body)["Gauges"]:
        if g["Name"] == name:
            return float(g["Value"])
    raise AssertionError(f"no gauge {name}")


@pytest.fixture
def pair(cluster: Cluster, etcd_server: EtcdServer, dc: str) -> tuple[AgentProcess, AgentProcess]:
    server = cluster.server(
        "s1", "--store", "etcd", "--etcd-endpoints", etcd_server.endpoint, "--datacenter", dc
    )
    client = cluster.client("c1", "--retry-join", server.rpc_addr, "--datacenter", dc)
    return server, client


def _open_blocking(agent: AgentProcess, path: str) -> socket.socket:
    host, port = agent.http_addr.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def _settled(agent: AgentProcess, baseline: float, slack: float) -> bool:
    return gauge(agent, "consul.runtime.num_tasks") <= baseline + slack


def test_vanished_http_clients_release_everything_on_every_hop_regression(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    # Before: each abandoned blocking query kept ~3 tasks on the client agent,
    # 2 on the server and an etcd watch until its wait (5-10 min) expired.
    server, client = pair
    assert http(client, "PUT", "/v1/kv/watched", b"v")[0] == 200
    _, _, headers = http(client, "GET", "/v1/kv/watched")
    kv_index = int(headers["X-Consul-Index"])
    _, _, headers = http(client, "GET", "/v1/session/list")
    session_index = int(headers["X-Consul-Index"])
    wait_until(lambda: gauge(client, "consul.http.blocking_queries") == 0, what="quiet client")
    # Let both settle, then take the baselines.
    time.sleep(0.5)
    base_client = gauge(client, "consul.runtime.num_tasks")
    base_server = gauge(server, "consul.runtime.num_tasks")

    n = 30
    socks = []
    for i in range(n):
        if i % 2:
            path = f"/v1/kv/watched?index={kv_index}&wait=5m"
        else:
            path = f"/v1/session/list?index={session_index}&wait=5m"
        socks.append(_open_blocking(client, path))
    wait_until(
        lambda: gauge(client, "consul.http.blocking_queries") == n, what="all blocking queries held"
    )
    held_client = gauge(client, "consul.runtime.num_tasks")
    held_server = gauge(server, "consul.runtime.num_tasks")
    assert held_client >= base_client + n  # the test can see what it asserts goes away
    assert held_server > base_server

    started = time.monotonic()
    for sock in socks:
        sock.close()
    wait_until(
        lambda: gauge(client, "consul.http.blocking_queries") == 0,
        timeout=5,
        what="client handlers cancelled",
    )
    wait_until(lambda: _settled(client, base_client, 5), timeout=10, what="client tasks back")
    wait_until(lambda: _settled(server, base_server, 5), timeout=10, what="server tasks back")
    print(
        f"released {n} abandoned blocking queries in {time.monotonic() - started:.2f}s;"
        f" client tasks {base_client:.0f} -> {held_client:.0f} -> back,"
        f" server tasks {base_server:.0f} -> {held_server:.0f} -> back"
    )
    # The blocked reads were abandoned, not broken: a new one still works.
    assert http(client, "GET", f"/v1/kv/watched?index={kv_index}&wait=1s")[0] == 200


def test_catastrophic_filter_does_not_stall_the_agent_regression(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    # Python's backtracking re held the agent's loop for 4.2 s on this pair,
    # doubling with each character; RE2 answers in linear time.
    server, client = pair
    victim = "a" * 40 + "!"
    body = json.dumps({"Name": victim, "Port": 1}).encode()
    assert http(client, "PUT", "/v1/agent/service/register", body)[0] == 200
    body = json.dumps({"Name": "aaa", "Port": 2}).encode()
    assert http(client, "PUT", "/v1/agent/service/register", body)[0] == 200
    wait_until(
        lambda: victim in json.loads(http(client, "GET", "/v1/catalog/services")[1]),
        what="services in the catalog",
    )
    flt = urllib.parse.quote('ServiceName matches "(a+)+$"')
    other: list[int] = []

    def meanwhile() -> None:
        other.append(http(server, "GET", "/v1/status/leader")[0])

    thread = threading.Thread(target=meanwhile)
    thread.start()
    for agent in (client, server):
        status, text, _ = http(agent, "GET", f"/v1/catalog/service/{victim}?filter={flt}")
        assert (status, json.loads(text)) == (200, [])
        status, text, _ = http(agent, "GET", f"/v1/catalog/service/aaa?filter={flt}")
        assert status == 200 and [e["ServiceName"] for e in json.loads(text)] == ["aaa"]
        status, text, _ = http(
            agent, "GET", f"/v1/agent/services?filter={flt.replace('ServiceName', 'Service')}"
        )
        assert status == 200 and victim not in json.loads(text), text
    thread.join(30)
    assert other == [200]
    status, text, _ = http(
        client,
        "GET",
        "/v1/agent/services?filter=" + urllib.parse.quote(f"Service matches `{'a' * 1025}`"),
    )
    assert status == 400 and "too long" in text


@pytest.mark.parametrize("index", [2**63 - 1, 2**63, 2**64 - 1])
def test_index_at_or_above_2_63_on_etcd_answers_after_its_wait_regression(
    pair: tuple[AgentProcess, AgentProcess], index: int
) -> None:
    # Before: the etcd watch revision overflowed; the server dropped the HTTP
    # connection, and through a client agent the read hung 12 s, failed, and
    # marked a healthy server failed.
    server, client = pair
    for agent in (server, client):
        for path in ("/v1/session/list", "/v1/event/list", "/v1/kv/k"):
            status, text, headers = http(agent, "GET", f"{path}?index={index}&wait=1s")
            assert status in (200, 404), (agent.name, path, status, text)
            assert int(headers["X-Consul-Index"]) >= 1
    status, text, _ = http(client, "GET", "/v1/status/leader")
    assert status == 200 and text.strip('"'), text  # still knows its server
