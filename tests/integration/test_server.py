"""The server agent as a process: dev mode, etcd-backed servers, bad input, CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.kv.v1 import kv_pb2_grpc
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.membership.v1 import membership_pb2_grpc
from generated.consul.status.v1 import status_pb2 as spb
from generated.consul.status.v1 import status_pb2_grpc
from tests.support.procs import ROOT, Cluster, wait_until

T = 10  # per-call deadline in these tests


def stubs(
    address: str,
) -> tuple[
    grpc.Channel,
    catalog_pb2_grpc.CatalogServiceStub,
    kv_pb2_grpc.KVServiceStub,
    health_pb2_grpc.HealthServiceStub,
]:
    ch = grpc.insecure_channel(address)
    return (
        ch,
        catalog_pb2_grpc.CatalogServiceStub(ch),
        kv_pb2_grpc.KVServiceStub(ch),
        health_pb2_grpc.HealthServiceStub(ch),
    )


def register(
    catalog: catalog_pb2_grpc.CatalogServiceStub, node: str, svc: str, sid: str = "", dc: str = ""
) -> None:
    catalog.Register(
        cpb.RegisterRequest(
            write=qpb.WriteOptions(datacenter=dc),
            node=pb.Node(name=node, address="10.0.0.1"),
            service=pb.Service(id=sid or svc, name=svc, port=80, tags=["v1"]),
            checks=[
                pb.HealthCheck(
                    check_id=f"c-{sid or svc}",
                    name="c",
                    status=pb.HEALTH_STATUS_PASSING,
                    service_id=sid or svc,
                )
            ],
        ),
        timeout=T,
    )


def test_dev_agent_reflection_lists_every_service(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    with grpc.insecure_channel(dev.grpc_addr) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=T
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {
        "consul.catalog.v1.CatalogService",
        "consul.health.v1.HealthService",
        "consul.kv.v1.KVService",
        "consul.status.v1.StatusService",
        "consul.membership.v1.MembershipService",
        "consul.agent.v1.AgentService",
        "grpc.health.v1.Health",
    } <= names


def test_dev_agent_catalog_health_kv(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    ch, catalog, kv, health = stubs(dev.grpc_addr)
    with ch:
        register(catalog, "web-1", "web")
        resp = catalog.ListServiceInstances(
            cpb.ListServiceInstancesRequest(service="web"), timeout=T
        )
        assert [i.node.name for i in resp.instances] == ["web-1"]
        assert resp.meta.index > 0
        entries = health.ServiceHealth(
            hpb.ServiceHealthRequest(service="web", passing_only=True), timeout=T
        )
        assert [e.service.id for e in entries.entries] == ["web"]
        # The dev server is itself a node with serfHealth and the consul service.
        node = wait_until(
            lambda: catalog.GetNode(cpb.GetNodeRequest(node="dev"), timeout=T).services,
            what="dev node in catalog",
        )
        assert "consul" in {s.name for s in node}
        put = kv.Put(kpb.PutRequest(key="a/b", value=b"1"), timeout=T)
        got = kv.Get(kpb.GetRequest(key="a/b"), timeout=T)
        assert got.pair.value == b"1" and got.pair.modify_index == put.meta.index
        with pytest.raises(grpc.RpcError) as err:
            kv.Put(
                kpb.PutRequest(key="a/b", value=b"2", cas=got.pair.modify_index + 100), timeout=T
            )
        assert err.value.code() == grpc.StatusCode.ABORTED
        kv.Put(kpb.PutRequest(key="a/b", value=b"2", cas=got.pair.modify_index), timeout=T)
        missing = kv.Get(kpb.GetRequest(key="nope"), timeout=T)
        assert not missing.HasField("pair") and missing.meta.index > 0


def test_blocking_query_wakes_only_for_its_service(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    ch, catalog, kv, health = stubs(dev.grpc_addr)
    with ch:
        register(catalog, "n1", "svc-a")
        register(catalog, "n1", "svc-b")
        first = health.ServiceHealth(hpb.ServiceHealthRequest(service="svc-a"), timeout=T)
        result: dict[str, object] = {}

        def block() -> None:
            start = time.monotonic()
            resp = health.ServiceHealth(
                hpb.ServiceHealthRequest(
                    service="svc-a",
                    options=qpb.QueryOptions(
                        min_index=first.meta.index, max_wait=Duration(seconds=2)
                    ),
                ),
                timeout=T,
            )
            result["index"] = resp.meta.index
            result["elapsed"] = time.monotonic() - start

        t = threading.Thread(target=block)
        t.start()
        register(catalog, "n2", "svc-b", sid="b2")  # another service
        kv.Put(kpb.PutRequest(key="k", value=b"v"), timeout=T)  # a KV key
        t.join(T)
        # Not woken: timed out with the unchanged index.
        assert result["index"] == first.meta.index
        assert result["elapsed"] >= 1.9  # type: ignore[operator]

        t = threading.Thread(target=block)
        t.start()
        time.sleep(0.2)  # let the query block first (the write must come after)
        register(catalog, "n3", "svc-a", sid="a3")
        t.join(T)
        assert result["index"] > first.meta.index  # type: ignore[operator]
        assert result["elapsed"] < 1.5  # type: ignore[operator]


def test_bad_input_is_rejected_and_server_keeps_serving(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    ch, catalog, kv, health = stubs(dev.grpc_addr)
    with ch:
        cases = [
            lambda: catalog.Register(
                cpb.RegisterRequest(node=pb.Node(name="", address="x")), timeout=T
            ),
            lambda: catalog.Register(
                cpb.RegisterRequest(node=pb.Node(name="n" * 10_000, address="x")), timeout=T
            ),
            lambda: catalog.ListServiceInstances(
                cpb.ListServiceInstancesRequest(service=""), timeout=T
            ),
            lambda: kv.Put(kpb.PutRequest(key="big", value=b"x" * (512 * 1024 + 1)), timeout=T),
            lambda: kv.Put(kpb.PutRequest(key="", value=b"x"), timeout=T),
            lambda: health.ChecksInState(hpb.ChecksInStateRequest(state=42), timeout=T),  # type: ignore[arg-type]
            lambda: health.ServiceHealth(
                hpb.ServiceHealthRequest(service="web", options=qpb.QueryOptions(consistency=9)),  # type: ignore[arg-type]
                timeout=T,
            ),
            lambda: kv.Get(
                kpb.GetRequest(
                    key="a", options=qpb.QueryOptions(min_index=1, max_wait=Duration(seconds=-5))
                ),
                timeout=T,
            ),
        ]
        for case in cases:
            with pytest.raises(grpc.RpcError) as err:
                case()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            kv.Get(
                kpb.GetRequest(key="a", options=qpb.QueryOptions(datacenter="nowhere")), timeout=T
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "No path to datacenter" in (err.value.details() or "")
        # Still serving.
        kv.Put(kpb.PutRequest(key="ok", value=b"1"), timeout=T)
        assert kv.Get(kpb.GetRequest(key="ok"), timeout=T).pair.value == b"1"


def test_two_servers_on_one_etcd_share_data_and_membership(
    cluster: Cluster, etcd_server, dc: str
) -> None:  # type: ignore[no-untyped-def]
    args = ["--store", "etcd", "--etcd-endpoints", etcd_server.endpoint, "--datacenter", dc]
    s1 = cluster.server("s1", *args)
    s2 = cluster.server("s2", *args)
    ch1, catalog1, kv1, _ = stubs(s1.grpc_addr)
    ch2, catalog2, kv2, health2 = stubs(s2.grpc_addr)
    with ch1, ch2:
        kv1.Put(kpb.PutRequest(key="shared", value=b"hello"), timeout=T)
        assert kv2.Get(kpb.GetRequest(key="shared"), timeout=T).pair.value == b"hello"
        register(catalog1, "app-1", "api")
        assert [
            i.node.name
            for i in catalog2.ListServiceInstances(
                cpb.ListServiceInstancesRequest(service="api"), timeout=T
            ).instances
        ] == ["app-1"]
        # Both servers in both membership views, one leader known to both.
        members = membership_pb2_grpc.MembershipServiceStub(ch2)
        stream = members.WatchMembers(mpb.WatchMembersRequest(), timeout=T)
        snapshot = next(stream)
        stream.cancel()
        assert snapshot.type == mpb.MEMBER_EVENT_TYPE_SNAPSHOT
        assert {m.name for m in snapshot.members} >= {"s1", "s2"}
        leaders = {
            status_pb2_grpc.StatusServiceStub(c).Leader(spb.LeaderRequest(), timeout=T).address
            for c in (ch1, ch2)
        }
        assert len(leaders) == 1 and leaders.pop() in (s1.rpc_addr, s2.rpc_addr)

        # The leader reconciles both servers into the catalog with the consul service.
        def consul_nodes() -> set[str]:
            resp = health2.ServiceHealth(
                hpb.ServiceHealthRequest(service="consul", passing_only=True), timeout=T
            )
            return {e.node.name for e in resp.entries}

        wait_until(lambda: consul_nodes() == {"s1", "s2"}, what="both servers in consul service")


def test_second_server_on_memory_store_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "agent", "--server", "--retry-join", "127.0.0.1:1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "memory store" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_members_catalog_kv(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "agent.cli", *args, "--grpc-addr", dev.grpc_addr],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "dev" in cli("members")
    assert "Success" in cli("kv", "put", "cfg/x", "42")
    assert cli("kv", "get", "cfg/x").strip() == "42"
    wait_until(lambda: "consul" in cli("catalog", "services"), what="consul service")
    assert "dev" in cli("catalog", "nodes")
    assert "Success" in cli("kv", "delete", "cfg/x")


def test_cli_services_and_watch(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    base = [sys.executable, "-m", "agent.cli"]
    addr = ["--grpc-addr", dev.grpc_addr]
    watch = subprocess.Popen(
        [*base, "watch", "--type", "service", "--service", "web", "--count", "2", *addr],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # the initial (empty) result
        assert first.strip() == "[]"
        out = subprocess.run(
            [
                *base,
                "services",
                "register",
                "--name",
                "web",
                "--port",
                "8080",
                "--tag",
                "v1",
                "--ttl",
                "30s",
                *addr,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        second = watch.stdout.readline()
        assert '"Service": "web"' in second and '"Port": 8080' in second
        assert watch.wait(30) == 0
    finally:
        watch.kill()
    out = subprocess.run(
        [*base, "services", "deregister", "--id", "web", *addr],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    bad = subprocess.run(
        [*base, "services", "register", "--port", "1", *addr],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "needs --name" in bad.stderr
