"""Issue 15 end to end: vanished HTTP clients, a catastrophic pattern, an index at 2^63.

Real processes: an etcd-backed server and a client agent joined to it; HTTP
clients are raw sockets so that they can vanish mid-request. Task counts come
from each agent's ``/v1/agent/metrics`` (``consul.runtime.num_goroutines``,
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


def _tasks(agent: AgentProcess) -> float:
    return gauge(agent, "consul.runtime.num_goroutines")


def test_vanished_http_clients_release_everything_on_every_hop_regression(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    # Before: each abandoned blocking query kept ~3 tasks on the client agent,
    # 2 on the server and an etcd watch until its wait (5-10 min) expired.
    server, client = pair
    assert http(client, "PUT", "/v1/kv/watched", b"v")[0] == 200
    _, _, headers = http(client, "GET", "/v1/kv/watched")
    kv_index = int(headers["X-Consul-Index"])
    wait_until(lambda: gauge(client, "consul.http.blocking.queries") == 0, what="quiet client")
    # Baselines: the most of a few samples (timers come and go at rest).
    base_client = max(_tasks(client) for _ in range(5))
    base_server = max(_tasks(server) for _ in range(5))

    n = 60
    socks = []
    for i in range(n):
        # Half wait on the client agent's view, half (?consistent) on the server.
        path = f"/v1/kv/watched?index={kv_index}&wait=5m" + ("&consistent" if i % 2 else "")
        socks.append(_open_blocking(client, path))
    wait_until(
        lambda: gauge(client, "consul.http.blocking.queries") == n, what="all blocking queries held"
    )
    # The test can see what it asserts goes away (bounded polls: the
    # consistent reads reach the server a moment after the client counts them).
    held_client = wait_until(
        lambda: (t := _tasks(client)) >= base_client + n and t,
        what=f"client tasks up from {base_client}",
    )
    held_server = wait_until(
        lambda: (t := _tasks(server)) >= base_server + n // 2 and t,
        what=f"server tasks up from {base_server}",
    )

    started = time.monotonic()
    for sock in socks:
        sock.close()
    wait_until(
        lambda: gauge(client, "consul.http.blocking.queries") == 0,
        timeout=10,
        what="client handlers cancelled",
    )
    cancelled_after = time.monotonic() - started
    slack = 8
    wait_until(
        lambda: _tasks(client) <= base_client + slack,
        timeout=15,
        what=f"client tasks back near {base_client} (held {held_client})",
    )
    wait_until(
        lambda: _tasks(server) <= base_server + slack,
        timeout=15,
        what=f"server tasks back near {base_server} (held {held_server})",
    )
    print(
        f"{n} abandoned blocking queries: handlers gone after {cancelled_after:.2f}s,"
        f" all released after {time.monotonic() - started:.2f}s;"
        f" client tasks {base_client:.0f} -> {held_client:.0f} -> {_tasks(client):.0f},"
        f" server tasks {base_server:.0f} -> {held_server:.0f} -> {_tasks(server):.0f}"
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


def _put(path: str, body: bytes, *headers: bytes) -> bytes:
    head = [f"PUT {path} HTTP/1.1".encode(), b"Host: x", *headers]
    head += [b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_BAD_REQUESTS = [
    # a body that says gzip and is not
    _put("/v1/agent/service/register", b"not gzip", b"Content-Encoding: gzip"),
    # malformed JSON
    _put("/v1/agent/service/register", b"{nope"),
    # a lone surrogate, a huge duration
    _put("/v1/session/create", b'{"Name": "\\ud800", "TTL": 1' + b"0" * 400 + b"}"),
    # not HTTP at all
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    # a header line past aiohttp's limit
    b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    # Go-invalid index and wait
    b"GET /v1/kv/k?index=1_000&wait=0.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]


def _send(agent: AgentProcess, data: bytes) -> bytes:
    host, port = agent.http_addr.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionError:
            pass
        return b"".join(chunks)


def test_bad_requests_do_not_flood_the_log_and_limits_come_from_config_regression(
    cluster: Cluster, tmp_path: object
) -> None:
    # Before: 8,000 bad requests wrote 8 MB of client log (aiohttp tracebacks).
    from pathlib import Path

    config = Path(str(tmp_path)) / "limits.json"
    config.write_text(
        json.dumps({"limits": {"http_max_conns_per_client": 5}, "max_query_time": "1s"})
    )
    dev = cluster.server("dev", "--dev")
    client = cluster.client(
        "c1", "--retry-join", dev.rpc_addr, "--log-level", "INFO", "--config-file", str(config)
    )
    size_before = client.log_path.stat().st_size
    statuses: dict[bytes, int] = {}
    for i in range(8000):
        answer = _send(client, _BAD_REQUESTS[i % len(_BAD_REQUESTS)])
        status = answer[9:12]
        statuses[status] = statuses.get(status, 0) + 1
    assert set(statuses) <= {b"400", b"431", b""}, statuses
    grown = client.log_path.stat().st_size - size_before
    log = client.log_path.read_text(errors="replace")
    print(f"8000 bad requests: statuses {statuses}, log grew {grown} bytes")
    assert "Traceback" not in log
    assert grown < 16 * 1024, log[-3000:]

    # limits.http_max_conns_per_client from the config file: the 6th connection gets 429.
    host, port = client.http_addr.split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(5)]
    try:
        wait_until(
            lambda: b"429 Too Many Requests" in _send(client, b""),
            what="the sixth connection refused",
        )
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: http(client, "GET", "/v1/status/leader")[0] == 200, what="served again")
    # max_query_time from the config file: a 10-minute wait is cut to 1 s.
    _, _, headers = http(client, "GET", "/v1/kv/none")
    status, _, _ = http(client, "GET", f"/v1/kv/none?index={headers['X-Consul-Index']}&wait=10m")
    assert status == 404


def test_grpc_min_index_at_or_above_2_63_on_etcd_answers_after_its_wait_regression(
    pair: tuple[AgentProcess, AgentProcess],
) -> None:
    # The gRPC side of the same overflow: QueryOptions.min_index is a uint64.
    import grpc

    from generated.consul.common.v1 import query_pb2 as qpb
    from generated.consul.event.v1 import event_pb2 as epb
    from generated.consul.event.v1 import event_pb2_grpc
    from generated.consul.session.v1 import session_pb2 as spb
    from generated.consul.session.v1 import session_pb2_grpc

    server, client = pair
    for address in (server.grpc_addr, client.grpc_addr):
        with grpc.insecure_channel(address) as channel:
            for index in (2**63 - 1, 2**64 - 1):
                options = qpb.QueryOptions(min_index=index)
                options.max_wait.FromSeconds(1)
                sessions = session_pb2_grpc.SessionServiceStub(channel).List(
                    spb.ListRequest(options=options), timeout=20
                )
                assert sessions.meta.index >= 1
                events = event_pb2_grpc.EventServiceStub(channel).List(
                    epb.ListRequest(options=options), timeout=20
                )
                assert events.meta.index >= 1
