"""Client agents answer discovery reads from views fed by server streams (issue 10).

Real processes only: servers on the memory store or on a real etcd, client
agents, HTTP and gRPC from outside.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
import pytest

from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from generated.consul.subscribe.v1 import subscribe_pb2 as spb
from generated.consul.subscribe.v1 import subscribe_pb2_grpc
from tests.support.procs import AgentProcess, Cluster, wait_until

T = 10
FAST = ["--suspect-timeout", "2s", "--reconnect-timeout", "4s"]


def get(agent: AgentProcess, path: str) -> tuple[int, dict[str, str], object]:
    req = urllib.request.Request(f"http://{agent.http_addr}{path}")
    try:
        with urllib.request.urlopen(req, timeout=T) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def stats(agent: AgentProcess) -> dict[str, str]:
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        me = agent_pb2_grpc.AgentServiceStub(ch).Self(apb.SelfRequest(), timeout=T)
    return dict(me.stats)


def register(server: AgentProcess, node: str, service: str, port: int = 80) -> None:
    with grpc.insecure_channel(server.grpc_addr) as ch:
        catalog_pb2_grpc.CatalogServiceStub(ch).Register(
            cpb.RegisterRequest(
                node=pb.Node(name=node, address="10.0.0.1"),
                service=pb.Service(name=service, id=f"{service}-{node}", port=port),
                checks=[
                    pb.HealthCheck(
                        check_id=f"c-{service}-{node}",
                        service_id=f"{service}-{node}",
                        status=pb.HEALTH_STATUS_PASSING,
                    )
                ],
            ),
            timeout=T,
        )


def deregister(server: AgentProcess, node: str) -> None:
    with grpc.insecure_channel(server.grpc_addr) as ch:
        catalog_pb2_grpc.CatalogServiceStub(ch).Deregister(
            cpb.DeregisterRequest(node=node), timeout=T
        )


def bodies_meet(
    view_read: Callable[[], tuple[int, object]], target_index: int, target: object
) -> tuple[int, object]:
    """Poll the view (at most 1 s) until it reaches ``target_index``; its last read."""
    deadline = time.monotonic() + 1.0
    while True:
        index, body = view_read()
        if index >= target_index or time.monotonic() > deadline:
            return index, body
        time.sleep(0.01)


def servers_for(
    cluster: Cluster, store: str, etcd_endpoint: str | None, dc: str
) -> list[AgentProcess]:
    if store == "memory":
        return [cluster.server("s1", "--dev", "--datacenter", dc)]
    assert etcd_endpoint is not None
    args = ["--store", "etcd", "--etcd-endpoints", etcd_endpoint, "--datacenter", dc, *FAST]
    return [cluster.server(f"s{i}", *args) for i in (1, 2)]


@pytest.fixture(params=["memory", "etcd"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.timeout(180)
def test_view_reads_follow_churn(
    cluster: Cluster, request: pytest.FixtureRequest, store: str, dc: str
) -> None:
    etcd = request.getfixturevalue("etcd_server").endpoint if store == "etcd" else None
    servers = servers_for(cluster, store, etcd, dc)
    client = cluster.client(
        "c1", "--datacenter", dc, *FAST, *[a for s in servers for a in ("--retry-join", s.rpc_addr)]
    )
    rng = random.Random(10)
    path = "/v1/health/service/web"
    seen: list[int] = []

    def view_read() -> tuple[int, object]:
        status, headers, body = get(client, path)
        assert status == 200, body
        assert headers["X-Consul-LastContact"] == "0"
        assert headers["X-Consul-KnownLeader"] == "true"
        index = int(headers["X-Consul-Index"])
        seen.append(index)
        return index, body

    view_read()
    rpc_before = int(stats(client)["client.rpc"])
    nodes = [f"n{i}" for i in range(8)]
    compared = 0
    for step in range(60):
        node = rng.choice(nodes)
        writer = rng.choice(servers)
        if rng.random() < 0.6:
            register(writer, node, "web", port=rng.randrange(1, 60000))
        else:
            deregister(writer, node)
        if step % 3 == 0:
            status, headers, want = get(servers[0], path + "?consistent")
            assert status == 200
            want_index = int(headers["X-Consul-Index"])
            index, body = bodies_meet(view_read, want_index, want)
            assert index >= want_index, f"view still at {index} after 1 s, server at {want_index}"
            if index == want_index:
                assert body == want
                compared += 1
    status, headers, want = get(servers[0], path + "?consistent")
    index, body = bodies_meet(view_read, int(headers["X-Consul-Index"]), want)
    assert (index, body) == (int(headers["X-Consul-Index"]), want)
    assert compared > 5
    assert seen == sorted(seen), "X-Consul-Index went backwards"
    assert view_read() == view_read()  # a repeated read is a cached answer
    # The reads were the view's: no RPC to a server for them (the churn went to servers).
    s = stats(client)
    assert int(s["client.rpc"]) == rpc_before
    assert int(s["views.count"]) >= 1 and int(s["views.hits"]) > 0
    # The agent's gRPC reads use the same views.
    with grpc.insecure_channel(client.grpc_addr) as ch:
        resp = health_pb2_grpc.HealthServiceStub(ch).ServiceHealth(
            hpb.ServiceHealthRequest(service="web"), timeout=T
        )
    assert resp.meta.index == index
    assert sorted(e.service.id for e in resp.entries) == sorted(e["Service"]["ID"] for e in want)  # type: ignore[index, union-attr]


def test_blocking_query_waits_on_the_view(cluster: Cluster, dc: str) -> None:
    dev = cluster.server("dev", "--dev", "--datacenter", dc)
    client = cluster.client("c1", "--datacenter", dc, "--retry-join", dev.rpc_addr)
    register(dev, "n1", "web")
    wait_until(lambda: len(get(client, "/v1/health/service/web")[2]) == 1, what="view has web")  # type: ignore[arg-type]
    _, headers, _ = get(client, "/v1/health/service/web")
    index = int(headers["X-Consul-Index"])
    # Nothing changes: the wait runs out and the same index comes back.
    t0 = time.monotonic()
    _, headers, _ = get(client, f"/v1/health/service/web?index={index}&wait=1s")
    assert int(headers["X-Consul-Index"]) == index and time.monotonic() - t0 >= 0.9
    # A write to another service does not wake it; one to web does.
    result: dict[str, object] = {}

    def block() -> None:
        result["answer"] = get(client, f"/v1/health/service/web?index={index}&wait=30s")

    waiter = threading.Thread(target=block)
    waiter.start()
    register(dev, "n1", "db")
    time.sleep(0.3)
    assert waiter.is_alive()
    register(dev, "n2", "web")
    waiter.join(timeout=T)
    assert not waiter.is_alive()
    _, headers, body = result["answer"]  # type: ignore[misc]
    assert int(headers["X-Consul-Index"]) > index and len(body) == 2
    # ?cached is accepted, with X-Cache and Age.
    _, headers, _ = get(client, "/v1/health/service/web?cached")
    _, headers, _ = get(client, "/v1/health/service/web?cached")
    assert headers["X-Cache"] == "HIT" and "Age" in headers
    # ?consistent goes to the server.
    before = int(stats(client)["client.rpc"])
    assert get(client, "/v1/health/service/web?consistent")[0] == 200
    assert int(stats(client)["client.rpc"]) == before + 1
    # Metrics: the client's views, and the server's subscriptions.
    with urllib.request.urlopen(
        f"http://{client.http_addr}/v1/agent/metrics?format=prometheus", timeout=T
    ) as resp:
        text = resp.read().decode()
    assert "consul_views 1.0" in text and "consul_views_hits_total" in text
    with urllib.request.urlopen(
        f"http://{dev.http_addr}/v1/agent/metrics?format=prometheus", timeout=T
    ) as resp:
        text = resp.read().decode()
    assert "consul_stream_subscribers 1.0" in text
    # Bad input is still a 400, not a traceback.
    status, _, text = get(client, "/v1/health/service/web?filter=Service.Port%20%3D%3D")
    assert status == 400, text


@pytest.mark.timeout(180)
def test_sigkill_of_the_streaming_server_loses_no_read(
    cluster: Cluster, etcd_server, dc: str
) -> None:  # type: ignore[no-untyped-def]
    args = ["--store", "etcd", "--etcd-endpoints", etcd_server.endpoint, "--datacenter", dc, *FAST]
    servers = [cluster.server(f"s{i}", *args) for i in (1, 2, 3)]
    client = cluster.client(
        "c1", "--datacenter", dc, *FAST, *[a for s in servers for a in ("--retry-join", s.rpc_addr)]
    )
    register(servers[0], "n1", "web")
    wait_until(lambda: len(get(client, "/v1/health/service/web")[2]) == 1, what="view has web")  # type: ignore[arg-type]
    streaming = [s for s in servers if int(stats(s)["stream.subscribers"]) > 0]
    assert len(streaming) == 1
    victim = streaming[0]
    others = [s for s in servers if s is not victim]
    failures: list[str] = []
    indexes: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            status, headers, body = get(client, "/v1/health/service/web")
            if status != 200:
                failures.append(f"{status} {body}")
            else:
                indexes.append(int(headers["X-Consul-Index"]))

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.2)
        victim.kill()
        register(others[0], "n2", "web")
        wait_until(
            lambda: len(get(client, "/v1/health/service/web")[2]) == 2,  # type: ignore[arg-type]
            timeout=20,
            what="view catches up through another server",
        )
    finally:
        stop.set()
        t.join(timeout=T)
    assert failures == []
    assert indexes and indexes == sorted(indexes)
    assert sum(int(stats(s)["stream.subscribers"]) for s in others) >= 1
    _, headers, _ = get(client, "/v1/health/service/web")
    assert headers["X-Consul-LastContact"] == "0"


def test_a_client_that_disconnects_leaves_no_subscription(cluster: Cluster, dc: str) -> None:
    dev = cluster.server("dev", "--dev", "--datacenter", dc)
    assert stats(dev)["stream.subscribers"] == "0"
    # A raw subscriber goes away mid-stream.
    ch = grpc.insecure_channel(dev.rpc_addr)
    stream = subscribe_pb2_grpc.SubscribeServiceStub(ch).Subscribe(
        spb.SubscribeRequest(topic=spb.TOPIC_SERVICE_HEALTH, key="web"), timeout=60
    )
    first = next(stream)
    assert first.WhichOneof("message") == "snapshot"
    assert stats(dev)["stream.subscribers"] == "1"
    stream.cancel()
    ch.close()
    wait_until(lambda: stats(dev)["stream.subscribers"] == "0", what="subscription gone")
    # A client agent with views is SIGKILLed: its subscriptions go with it.
    client = cluster.client("c1", "--datacenter", dc, "--retry-join", dev.rpc_addr)
    for name in ("web", "db", "api"):
        assert get(client, f"/v1/health/service/{name}")[0] == 200
    assert get(client, "/v1/catalog/nodes")[0] == 200
    wait_until(lambda: stats(dev)["stream.subscribers"] == "4", what="four subscriptions")
    client.kill()
    wait_until(lambda: stats(dev)["stream.subscribers"] == "0", what="subscriptions gone")
    # Bad subscriptions are refused with INVALID_ARGUMENT.
    with grpc.insecure_channel(dev.rpc_addr) as ch2, pytest.raises(grpc.RpcError) as err:
        next(
            subscribe_pb2_grpc.SubscribeServiceStub(ch2).Subscribe(
                spb.SubscribeRequest(), timeout=T
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
