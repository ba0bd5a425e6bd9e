"""Two datacenters of real processes: WAN membership and cross-datacenter forwarding."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.kv.v1 import kv_pb2_grpc
from tests.support.procs import AgentProcess, Cluster, tcp_peers, wait_until

T = 10
FAST = ["--suspect-timeout", "2s", "--reconnect-timeout", "30s"]


def wan_names(agent: AgentProcess) -> set[str]:
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        resp = agent_pb2_grpc.AgentServiceStub(ch).ListMembers(
            apb.ListMembersRequest(wan=True), timeout=T
        )
    return {m.name for m in resp.members if m.status == 1}


def instances(ch: grpc.Channel, service: str, dc: str) -> list[str]:
    resp = catalog_pb2_grpc.CatalogServiceStub(ch).ListServiceInstances(
        cpb.ListServiceInstancesRequest(service=service, options=qpb.QueryOptions(datacenter=dc)),
        timeout=T,
    )
    return [i.node.name for i in resp.instances]


@pytest.fixture
def two_dcs(cluster: Cluster, etcd_server, dc: str):  # type: ignore[no-untyped-def]
    dc1, dc2 = dc + "a", dc + "b"
    etcd = ["--store", "etcd", "--etcd-endpoints", etcd_server.endpoint]
    a1 = cluster.server("a1", *etcd, "--datacenter", dc1, *FAST)
    a2 = cluster.server("a2", *etcd, "--datacenter", dc1, *FAST)
    b1 = cluster.server("b1", *etcd, "--datacenter", dc2, *FAST, "--retry-join-wan", a1.rpc_addr)
    b2 = cluster.server("b2", *etcd, "--datacenter", dc2, *FAST)  # learns the WAN from its DC
    client = cluster.client("c1", "--datacenter", dc1, "--retry-join", a1.rpc_addr, *FAST)
    everyone = {f"a1.{dc1}", f"a2.{dc1}", f"b1.{dc2}", f"b2.{dc2}"}
    for server in (a1, a2, b1, b2):
        wait_until(
            lambda s=server: wan_names(s) >= everyone, timeout=30, what=f"WAN view of {server.name}"
        )
    return dc1, dc2, (a1, a2, b1, b2), client


def test_cross_dc_reads_writes_and_blocking(two_dcs) -> None:  # type: ignore[no-untyped-def]
    dc1, dc2, (a1, a2, b1, b2), client = two_dcs
    with grpc.insecure_channel(b1.grpc_addr) as ch2, grpc.insecure_channel(client.grpc_addr) as ch:
        catalog_pb2_grpc.CatalogServiceStub(ch2).Register(
            cpb.RegisterRequest(
                node=pb.Node(name="web-b", address="10.2.0.1"),
                service=pb.Service(name="web", port=80),
            ),
            timeout=T,
        )
        # Through the dc1 client agent, with dc=dc2.
        assert instances(ch, "web", dc2) == ["web-b"]
        assert instances(ch, "web", dc1) == []
        dcs = catalog_pb2_grpc.CatalogServiceStub(ch).ListDatacenters(
            cpb.ListDatacentersRequest(), timeout=T
        )
        assert list(dcs.datacenters) == [dc1, dc2]

        # KV written in dc2 through the dc1 client is in dc2 (and not in dc1).
        kv = kv_pb2_grpc.KVServiceStub(ch)
        kv.Put(
            kpb.PutRequest(key="where", value=b"dc2", write=qpb.WriteOptions(datacenter=dc2)),
            timeout=T,
        )
        with grpc.insecure_channel(b2.grpc_addr) as chb2:
            assert (
                kv_pb2_grpc.KVServiceStub(chb2)
                .Get(kpb.GetRequest(key="where"), timeout=T)
                .pair.value
                == b"dc2"
            )
        assert not kv.Get(kpb.GetRequest(key="where"), timeout=T).HasField("pair")

        # The same through the dc1 client agent's HTTP API, with ?dc=.
        url = f"http://{client.http_addr}/v1/catalog/service/web?dc={dc2}"
        with urllib.request.urlopen(url, timeout=T) as resp:
            assert [row["Node"] for row in json.loads(resp.read())] == ["web-b"]
            http_index = int(resp.headers["X-Consul-Index"])
        # A blocking query across the hop wakes when dc2 changes.
        health = health_pb2_grpc.HealthServiceStub(ch)
        first = health.ServiceHealth(
            hpb.ServiceHealthRequest(service="web", options=qpb.QueryOptions(datacenter=dc2)),
            timeout=T,
        )
        result: dict[str, float] = {}

        def block() -> None:
            t0 = time.monotonic()
            resp = health.ServiceHealth(
                hpb.ServiceHealthRequest(
                    service="web",
                    options=qpb.QueryOptions(
                        datacenter=dc2, min_index=first.meta.index, max_wait=Duration(seconds=20)
                    ),
                ),
                timeout=40,
            )
            result["n"] = len(resp.entries)
            result["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=block)
        t.start()
        time.sleep(0.5)
        catalog_pb2_grpc.CatalogServiceStub(ch2).Register(
            cpb.RegisterRequest(
                node=pb.Node(name="web-b2", address="10.2.0.2"),
                service=pb.Service(name="web", port=80),
            ),
            timeout=T,
        )
        t.join(40)
        assert result["n"] == 2 and result["elapsed"] < 10
        # Blocking over HTTP: the index moved past the one seen before the change.
        with urllib.request.urlopen(f"{url}&index={http_index}&wait=5s", timeout=T) as resp:
            assert len(json.loads(resp.read())) == 2
            assert int(resp.headers["X-Consul-Index"]) > http_index

        # The dc1 client agent never holds a connection to a dc2 server.
        assert client.proc is not None
        dc2_ports = {b1.rpc_port, b1.grpc_port, b2.rpc_port, b2.grpc_port}
        assert not (tcp_peers(client.proc.pid) & dc2_ports)
        assert tcp_peers(client.proc.pid) & {a1.rpc_port, a2.rpc_port}


def test_dc2_server_failure_and_outage(two_dcs) -> None:  # type: ignore[no-untyped-def]
    dc1, dc2, (_, _, b1, b2), client = two_dcs
    with grpc.insecure_channel(b1.grpc_addr) as ch2:
        catalog_pb2_grpc.CatalogServiceStub(ch2).Register(
            cpb.RegisterRequest(
                node=pb.Node(name="db-b", address="10.2.0.9"),
                service=pb.Service(name="db", port=5432),
            ),
            timeout=T,
        )
    with grpc.insecure_channel(client.grpc_addr) as ch:
        assert instances(ch, "db", dc2) == ["db-b"]
        # kill -9 one dc2 server: cross-datacenter reads keep working.
        b1.kill()
        failures = 0
        for _ in range(40):
            try:
                assert instances(ch, "db", dc2) == ["db-b"]
            except grpc.RpcError:
                failures += 1
            time.sleep(0.05)
        assert failures == 0
        # dc2 entirely down: the client's view of dc2 answers its last data for
        # up to the hold timeout (7 s), then reads fail with a clear error.
        b2.kill()
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            while time.monotonic() - t0 < 14:
                instances(ch, "db", dc2)
                time.sleep(0.1)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        details = err.value.details() or ""
        assert details.startswith(
            ("Remote DC has no server currently reachable", "No path to datacenter")
        ), details
        assert time.monotonic() - t0 < 15
        # dc1 itself is unaffected.
        assert instances(ch, "db", dc1) == []
        # dc2 returns: recovery without restarts on the dc1 side.
        b1.start()
        wait_until(lambda: instances(ch, "db", dc2) == ["db-b"], timeout=40, what="dc2 back")


def test_memory_store_datacenter_joins_the_wan(cluster: Cluster, etcd_server, dc: str) -> None:  # type: ignore[no-untyped-def]
    dc1, dc2 = dc + "a", dc + "b"
    a1 = cluster.server(
        "a1", "--store", "etcd", "--etcd-endpoints", etcd_server.endpoint, "--datacenter", dc1
    )
    b1 = cluster.server("b1", "--datacenter", dc2, "--retry-join-wan", a1.rpc_addr)  # memory store
    for server in (a1, b1):
        wait_until(
            lambda s=server: wan_names(s) >= {f"a1.{dc1}", f"b1.{dc2}"}, timeout=30, what="WAN view"
        )
    with grpc.insecure_channel(b1.grpc_addr) as ch2:
        catalog_pb2_grpc.CatalogServiceStub(ch2).Register(
            cpb.RegisterRequest(
                node=pb.Node(name="m", address="10.3.0.1"), service=pb.Service(name="mem")
            ),
            timeout=T,
        )
    with grpc.insecure_channel(a1.grpc_addr) as ch:
        wait_until(lambda: instances(ch, "mem", dc2) == ["m"], what="dc2 (memory) read from dc1")
