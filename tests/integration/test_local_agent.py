"""Agent local state end to end: checks reach the catalog, persistence, anti-entropy."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2 as ghpb
from grpc_health.v1 import health_pb2_grpc as ghpb_grpc

from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from tests.support.procs import AgentProcess, Cluster, wait_until

T = 10
PASS, CRIT = pb.HEALTH_STATUS_PASSING, pb.HEALTH_STATUS_CRITICAL


def check_status(agent: AgentProcess, service: str, check_id: str) -> int | None:
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        resp = health_pb2_grpc.HealthServiceStub(ch).ServiceChecks(
            hpb.ServiceChecksRequest(service=service), timeout=T
        )
    for c in resp.checks:
        if c.check_id == check_id:
            return c.status
    return None


def register(agent: AgentProcess, name: str, *checks: pb.CheckDefinition, port: int = 80) -> None:
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        agent_pb2_grpc.AgentServiceStub(ch).RegisterService(
            apb.RegisterServiceRequest(
                definition=apb.ServiceDefinition(
                    service=pb.Service(name=name, port=port),
                    checks=[apb.CheckDefinition(definition=d) for d in checks],
                )
            ),
            timeout=T,
        )


@pytest.fixture
def client(cluster: Cluster, tmp_path) -> AgentProcess:  # type: ignore[no-untyped-def]
    dev = cluster.server("dev", "--dev")
    return cluster.client("c1", "--retry-join", dev.rpc_addr, "--data-dir", str(tmp_path / "c1"))


def test_ttl_check_through_the_catalog(client: AgentProcess) -> None:
    register(client, "api", pb.CheckDefinition(ttl=Duration(seconds=2)))
    wait_until(lambda: check_status(client, "api", "service:api") == CRIT, what="starts critical")
    with grpc.insecure_channel(client.grpc_addr) as ch:
        agent_pb2_grpc.AgentServiceStub(ch).UpdateTTL(
            apb.UpdateTTLRequest(check_id="service:api", status=PASS, output="ok"), timeout=T
        )
        health = health_pb2_grpc.HealthServiceStub(ch)

        def passing() -> list[str]:
            resp = health.ServiceHealth(
                hpb.ServiceHealthRequest(service="api", passing_only=True), timeout=T
            )
            return [e.service.id for e in resp.entries]

        wait_until(lambda: passing() == ["api"], what="passing")
        # The TTL runs out: critical again, "TTL expired".
        wait_until(lambda: passing() == [], timeout=15, what="TTL expired")
        resp = health.ServiceChecks(hpb.ServiceChecksRequest(service="api"), timeout=T)
        assert "TTL expired" in resp.checks[0].output


@pytest.fixture
def http_target() -> Iterator[tuple[str, threading.Event]]:
    healthy = threading.Event()
    healthy.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if healthy.is_set() else 503)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health", healthy
    server.shutdown()


def test_http_tcp_grpc_checks_pass_then_fail(client: AgentProcess, http_target) -> None:  # type: ignore[no-untyped-def]
    url, healthy = http_target
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    tcp_addr = f"127.0.0.1:{listener.getsockname()[1]}"
    grpc_server = grpc.server(
        thread_pool=__import__("concurrent.futures").futures.ThreadPoolExecutor(2)
    )
    health_servicer = grpc_health.HealthServicer()
    ghpb_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    health_servicer.set("", ghpb.HealthCheckResponse.SERVING)
    try:
        one = Duration(seconds=1)
        register(client, "web", pb.CheckDefinition(http=url, interval=one))
        register(client, "db", pb.CheckDefinition(tcp=tcp_addr, interval=one))
        register(client, "rpc", pb.CheckDefinition(grpc=f"127.0.0.1:{grpc_port}", interval=one))
        for svc in ("web", "db", "rpc"):
            wait_until(
                lambda s=svc: check_status(client, s, f"service:{s}") == PASS, what=f"{svc} passing"
            )
        healthy.clear()
        listener.close()
        health_servicer.set("", ghpb.HealthCheckResponse.NOT_SERVING)
        for svc in ("web", "db", "rpc"):
            wait_until(
                lambda s=svc: check_status(client, s, f"service:{s}") == CRIT,
                what=f"{svc} critical",
            )
    finally:
        grpc_server.stop(0)
        listener.close()


def test_kill9_restart_keeps_services_and_full_sync_removes_strangers(
    cluster: Cluster, client: AgentProcess
) -> None:
    register(client, "keeper", pb.CheckDefinition(ttl=Duration(seconds=60)))
    wait_until(lambda: check_status(client, "keeper", "service:keeper") is not None, what="synced")
    client.kill()
    # Registered straight in the catalog for c1's node, unknown to the agent.
    dev = cluster.agents[0]
    with grpc.insecure_channel(dev.grpc_addr) as ch:
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
        catalog.Register(
            cpb.RegisterRequest(
                node=pb.Node(name="c1", address="127.0.0.1"), service=pb.Service(name="stranger")
            ),
            timeout=T,
        )
        catalog.Deregister(cpb.DeregisterRequest(node="c1", service_id="keeper"), timeout=T)
        client.start()
        with grpc.insecure_channel(client.grpc_addr) as cch:
            local = agent_pb2_grpc.AgentServiceStub(cch).ListServices(
                apb.ListServicesRequest(), timeout=T
            )
            assert [s.id for s in local.services] == ["keeper"]  # restored from --data-dir

        def node_services() -> set[str]:
            got = catalog.GetNode(cpb.GetNodeRequest(node="c1"), timeout=T)
            return {s.id for s in got.services}

        wait_until(lambda: node_services() == {"keeper"}, what="keeper back, stranger removed")


def test_node_id_is_kept_across_restarts(cluster: Cluster, client: AgentProcess) -> None:
    dev = cluster.agents[0]
    with grpc.insecure_channel(dev.grpc_addr) as ch:
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)

        def node_id() -> str:
            return catalog.GetNode(cpb.GetNodeRequest(node="c1"), timeout=T).node.id

        first = wait_until(node_id, what="c1's node ID in the catalog")
        assert len(first) == 36  # a UUID
        client.stop()
        client.start()
        assert wait_until(node_id, what="node ID after restart") == first
