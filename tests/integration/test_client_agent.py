"""Client agents against real etcd-backed servers: forwarding, failover, membership."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.kv.v1 import kv_pb2_grpc
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.membership.v1 import membership_pb2_grpc
from tests.support.procs import AgentProcess, Cluster, wait_until

T = 10
FAST = ["--suspect-timeout", "2s", "--reconnect-timeout", "4s"]


def servers_args(etcd_endpoint: str, dc: str) -> list[str]:
    return ["--store", "etcd", "--etcd-endpoints", etcd_endpoint, "--datacenter", dc, *FAST]


def router_servers(agent: AgentProcess) -> list[str]:
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        me = agent_pb2_grpc.AgentServiceStub(ch).Self(apb.SelfRequest(), timeout=T)
    local = [r for r in me.routers if r.datacenter == me.datacenter]
    return [s.name for s in local[0].servers] if local else []


def member_status(server: AgentProcess, name: str) -> int | None:
    with grpc.insecure_channel(server.grpc_addr) as ch:
        resp = membership_pb2_grpc.MembershipServiceStub(ch).ListMembers(
            mpb.ListMembersRequest(), timeout=T
        )
    for m in resp.members:
        if m.name == name:
            return m.status
    return None


@pytest.fixture
def three_servers(cluster: Cluster, etcd_server, dc: str) -> list[AgentProcess]:  # type: ignore[no-untyped-def]
    args = servers_args(etcd_server.endpoint, dc)
    return [cluster.server(f"s{i}", *args) for i in (1, 2, 3)]


def client_args(servers: list[AgentProcess], dc: str, *extra: str) -> list[str]:
    args = ["--datacenter", dc, *FAST, *extra]
    for s in servers:
        args += ["--retry-join", s.rpc_addr]
    return args


def test_forwarding_failover_join_and_reap(
    cluster: Cluster,
    three_servers: list[AgentProcess],
    dc: str,
    etcd_server,  # type: ignore[no-untyped-def]
) -> None:
    c1 = cluster.client("c1", *client_args(three_servers[:1], dc))
    c2 = cluster.client("c2", *client_args(three_servers[1:2], dc))
    # Every client learns all three servers through the membership stream.
    for c in (c1, c2):
        wait_until(lambda c=c: set(router_servers(c)) == {"s1", "s2", "s3"}, what="3 servers")

    # An application call to a client agent is served (same stubs as a server).
    with grpc.insecure_channel(c1.grpc_addr) as ch:
        kv = kv_pb2_grpc.KVServiceStub(ch)
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
        kv.Put(kpb.PutRequest(key="app/config", value=b"v1"), timeout=T)
        catalog.Register(
            cpb.RegisterRequest(
                node=pb.Node(name="ext", address="10.1.1.1"),
                service=pb.Service(name="db", port=5432),
            ),
            timeout=T,
        )
        assert kv.Get(kpb.GetRequest(key="app/config"), timeout=T).pair.value == b"v1"

        # kill -9 the server c1 is using while a read loop runs through c1.
        in_use = router_servers(c1)[0]
        victim = next(s for s in three_servers if s.name == in_use)
        failures: list[str] = []
        reads = 0
        stop = threading.Event()

        def read_loop() -> None:
            nonlocal reads
            while not stop.is_set():
                try:
                    resp = catalog.ListServiceInstances(
                        cpb.ListServiceInstancesRequest(service="db"), timeout=T
                    )
                    assert [i.node.name for i in resp.instances] == ["ext"]
                    reads += 1
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")
                time.sleep(0.01)

        t = threading.Thread(target=read_loop)
        t.start()
        time.sleep(0.5)
        victim.kill()
        # The dead server leaves the client's list once it is FAILED.
        wait_until(lambda: in_use not in router_servers(c1), timeout=30, what="dead server dropped")
        time.sleep(0.5)
        stop.set()
        t.join(T)
        assert failures == [], failures
        assert reads > 20

    # A new server that joins appears in every client's list, no restarts.
    s4 = cluster.server("s4", *servers_args(etcd_server.endpoint, dc))
    for c in (c1, c2):
        wait_until(lambda c=c: "s4" in router_servers(c), what="s4 in client lists")
    alive = next(s for s in three_servers if s.alive)

    # A client killed with kill -9 is FAILED to the servers, then reaped.
    assert member_status(alive, "c2") == mpb.MEMBER_STATUS_ALIVE
    c2.kill()
    wait_until(
        lambda: member_status(s4, "c2") == mpb.MEMBER_STATUS_FAILED, timeout=30, what="c2 FAILED"
    )
    with grpc.insecure_channel(s4.grpc_addr) as ch:
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)

        def serf_critical() -> bool:
            from generated.consul.health.v1 import health_pb2 as hpb
            from generated.consul.health.v1 import health_pb2_grpc

            checks = health_pb2_grpc.HealthServiceStub(ch).NodeChecks(
                hpb.NodeChecksRequest(node="c2"), timeout=T
            )
            return any(
                c.check_id == "serfHealth" and c.status == pb.HEALTH_STATUS_CRITICAL
                for c in checks.checks
            )

        wait_until(serf_critical, timeout=20, what="c2 serfHealth critical")
        wait_until(lambda: member_status(s4, "c2") is None, timeout=30, what="c2 reaped")
        wait_until(
            lambda: not catalog.GetNode(cpb.GetNodeRequest(node="c2"), timeout=T).HasField("node"),
            timeout=20,
            what="c2 deregistered",
        )


def test_graceful_leave_deregisters_at_once(
    cluster: Cluster, three_servers: list[AgentProcess], dc: str
) -> None:
    c1 = cluster.client("c1", *client_args(three_servers, dc, "--reconnect-timeout", "72h"))
    s1 = three_servers[0]
    wait_until(lambda: member_status(s1, "c1") == mpb.MEMBER_STATUS_ALIVE, what="c1 alive")
    with grpc.insecure_channel(s1.grpc_addr) as ch:
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
        wait_until(
            lambda: catalog.GetNode(cpb.GetNodeRequest(node="c1"), timeout=T).HasField("node"),
            what="c1 node",
        )
        assert c1.stop() == 0
        wait_until(lambda: member_status(s1, "c1") == mpb.MEMBER_STATUS_LEFT, what="c1 LEFT")
        wait_until(
            lambda: not catalog.GetNode(cpb.GetNodeRequest(node="c1"), timeout=T).HasField("node"),
            what="c1 deregistered",
        )


def test_rate_limit(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    c = cluster.client(
        "c1", "--retry-join", dev.rpc_addr, "--rpc-rate", "5", "--rpc-max-burst", "5"
    )
    wait_until(lambda: router_servers(c) == ["dev"], what="client knows dev")
    time.sleep(1.5)  # let the bucket refill after the client's own start-up calls
    # Consistent reads: default ones are answered by the agent's views, not RPCs.
    consistent = qpb.QueryOptions(consistency=qpb.CONSISTENCY_CONSISTENT)
    with grpc.insecure_channel(c.grpc_addr) as ch:
        kv = kv_pb2_grpc.KVServiceStub(ch)

        def call(_: int) -> str:
            try:
                kv.Get(kpb.GetRequest(key="x", options=consistent), timeout=T)
                return "ok"
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert exc.details() == "RPC rate limit exceeded"
                return "limited"

        futures = [
            kv.Get.future(kpb.GetRequest(key="x", options=consistent), timeout=T)
            for _ in range(50)
        ]
        results = []
        for f in futures:
            try:
                f.result()
                results.append("ok")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert exc.details() == "RPC rate limit exceeded"
                results.append("limited")
        assert 5 <= results.count("ok") <= 10, results
        assert results.count("limited") == 50 - results.count("ok")
        with ThreadPoolExecutor(1) as pool:  # and it recovers as the bucket refills
            time.sleep(1.2)
            assert pool.submit(call, 0).result() == "ok"


def test_all_servers_down_then_recovery(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    c = cluster.client("c1", "--retry-join", dev.rpc_addr, "--rpc-hold-timeout", "2s")
    wait_until(lambda: router_servers(c) == ["dev"], what="client knows dev")
    dev.kill()
    with grpc.insecure_channel(c.grpc_addr) as ch:
        kv = kv_pb2_grpc.KVServiceStub(ch)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            kv.Get(kpb.GetRequest(key="x"), timeout=T)
        elapsed = time.monotonic() - start
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert elapsed < 6, elapsed  # within the hold timeout (plus one call deadline)
        # The server comes back on the same address: the agent recovers by itself.
        dev.start()
        wait_until(
            lambda: kv.Get(kpb.GetRequest(key="x"), timeout=T) is not None,
            timeout=30,
            what="recovery",
        )


def test_members_cli_shows_router_state_and_rebalance_hook(cluster: Cluster) -> None:
    import subprocess
    import sys

    from tests.support.procs import ROOT

    dev = cluster.server("dev", "--dev")
    c = cluster.client("c1", "--retry-join", dev.rpc_addr, "--rebalance-interval", "1s")
    wait_until(lambda: router_servers(c) == ["dev"], what="client knows dev")
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "members", "--grpc-addr", c.grpc_addr],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "c1" in out and "dev" in out
    assert f"dev ({dev.rpc_addr}) *" in out and "offline=false" in out
    wait_s = float(out.split("next_rebalance_in=")[1].split("s")[0])
    assert wait_s <= 1.5  # the hook replaced the 120-180 s interval
    assert "Views: " in out and "views.count=" in out and "views.hits=" in out
