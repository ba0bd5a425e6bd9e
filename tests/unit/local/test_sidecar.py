"""Sidecar defaults, port allocation and alias checks of the local agent (Consul's
agent/sidecar_service.go and CheckAlias), and the central-config merge."""

from __future__ import annotations

import pytest
from google.protobuf.json_format import MessageToDict

from agent.errors import InvalidArgument, NotFound
from agent.http.central_config import _resolve, merge_service
from agent.local.sidecar import SIDECAR_MAX_PORT, SIDECAR_MIN_PORT, alias_status
from agent.local.state import LocalState
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb


def with_sidecar(
    name: str, port: int, sidecar: apb.ServiceDefinition | None = None
) -> apb.ServiceDefinition:
    d = apb.ServiceDefinition(service=pb.Service(name=name, port=port))
    d.sidecar_service.CopyFrom(sidecar or apb.ServiceDefinition())
    return d


async def test_sidecar_defaults_ports_and_removal() -> None:
    async with LocalState("n1") as local:
        local.add_service(with_sidecar("web", 8080))
        side = local.services["web-sidecar-proxy"]
        assert (side.name, side.kind, side.port) == ("web-sidecar-proxy", "connect-proxy", 21000)
        assert side.proxy.destination_service_name == "web"
        assert (side.proxy.local_service_address, side.proxy.local_service_port) == (
            "127.0.0.1",
            8080,
        )
        checks = {c.check_id: c for c in local.health_checks()}
        assert checks["service:web-sidecar-proxy:1"].type == "tcp"
        assert checks["service:web-sidecar-proxy:1"].definition.tcp == "127.0.0.1:21000"
        alias = checks["service:web-sidecar-proxy:2"]
        assert (alias.type, alias.status) == ("alias", pb.HEALTH_STATUS_PASSING)
        # Re-registering keeps the port; another parent gets the next one.
        local.add_service(with_sidecar("web", 8081))
        assert local.services["web-sidecar-proxy"].port == 21000
        local.add_service(with_sidecar("api", 9000))
        assert local.services["api-sidecar-proxy"].port == 21001
        # A given port and name win.
        given = apb.ServiceDefinition(service=pb.Service(name="edge", port=7777))
        local.add_service(with_sidecar("db", 5432, given))
        assert (
            local.services["db-sidecar-proxy"].name,
            local.services["db-sidecar-proxy"].port,
        ) == ("edge", 7777)
        local.remove_service("web")
        assert "web-sidecar-proxy" not in local.services
        assert not [c for c in local.health_checks() if c.service_id == "web-sidecar-proxy"]
        # A service that merely looks like a sidecar of another stays.
        local.add_service(
            apb.ServiceDefinition(
                service=pb.Service(name="x-sidecar-proxy", id="api2-sidecar-proxy", port=1)
            )
        )
        local.add_service(apb.ServiceDefinition(service=pb.Service(name="api2", port=2)))
        local.remove_service("api2")
        assert "api2-sidecar-proxy" in local.services


async def test_sidecar_port_range_exhausted_changes_nothing() -> None:
    async with LocalState("n1") as local:
        for port in range(SIDECAR_MIN_PORT, SIDECAR_MAX_PORT + 1):
            local.services[f"s{port}"] = pb.Service(id=f"s{port}", name="s", port=port)
        with pytest.raises(InvalidArgument, match="none left in the configured range"):
            local.add_service(with_sidecar("web", 80))
        assert "web" not in local.services


async def test_alias_follows_the_parent_and_unknown_service_check_is_not_found() -> None:
    async with LocalState("n1") as local:
        local.add_service(with_sidecar("web", 8080))
        ttl = pb.CheckDefinition()
        ttl.ttl.seconds = 60
        local.add_check(apb.CheckDefinition(name="t", service_id="web", definition=ttl))
        alias = {c.check_id: c for c in local.health_checks()}["service:web-sidecar-proxy:2"]
        assert alias.status == pb.HEALTH_STATUS_CRITICAL  # the new TTL check starts critical
        local.update_ttl("t", "passing", "")
        alias = {c.check_id: c for c in local.health_checks()}["service:web-sidecar-proxy:2"]
        assert alias.status == pb.HEALTH_STATUS_PASSING
        with pytest.raises(NotFound, match='ServiceID "nope" does not exist'):
            local.add_check(apb.CheckDefinition(name="c", service_id="nope", definition=ttl))


def test_alias_status() -> None:
    checks = {"a": ("web", "passing"), "b": ("web", "warning"), "c": ("db", "critical")}
    assert alias_status("web", checks, {}, True) == ("warning", "Aliased service web is warning")
    assert alias_status("web", checks, {"web": "maintenance"}, True)[0] == "critical"
    assert alias_status("api", checks, {}, True) == ("passing", "No checks found.")
    assert alias_status("gone", checks, {}, False)[0] == "critical"


def test_merge_central_config_fills_only_what_the_instance_left_unset() -> None:
    svc = pb.Service(name="web-sidecar-proxy", kind="connect-proxy")
    svc.proxy.destination_service_name = "web"
    svc.proxy.config.update({"local_connect_timeout_ms": 5})
    resolved = _resolve(
        {
            "Config": {"local_connect_timeout_ms": 1000, "x": 1},
            "Mode": "direct",
            "MeshGateway": {"Mode": "remote"},
        },
        {"Protocol": "grpc", "MeshGateway": {"Mode": "local"}, "Expose": {"Checks": True}},
    )
    merge_service(svc, resolved)
    assert MessageToDict(svc.proxy.config) == {
        "local_connect_timeout_ms": 5.0,
        "x": 1.0,
        "protocol": "grpc",
    }
    assert svc.proxy.mode == "direct"
    assert MessageToDict(svc.proxy.mesh_gateway) == {"Mode": "local"}
    assert MessageToDict(svc.proxy.expose) == {"Checks": True}
    # The instance's own mode wins.
    svc.proxy.mode = "transparent"
    merge_service(svc, resolved)
    assert svc.proxy.mode == "transparent"


async def test_the_local_agent_validates_what_grpc_callers_send() -> None:
    async with LocalState("n1") as local:
        proxy = pb.Service(name="p", kind="connect-proxy", port=1)
        with pytest.raises(InvalidArgument, match="DestinationServiceName must be non-empty"):
            local.add_service(apb.ServiceDefinition(service=proxy))
        gateway = with_sidecar("g", 443)
        gateway.service.kind = "mesh-gateway"
        with pytest.raises(InvalidArgument, match="A mesh-gateway cannot have a sidecar service"):
            local.add_service(gateway)
        assert local.services == {}
