"""Sidecar proxies, default tagged addresses and alias checks of the local agent.

Consul's ``agent/sidecar_service.go``: a service registered with
``Connect.SidecarService`` brings a ``connect-proxy`` named
``<name>-sidecar-proxy`` with the ID ``<id>-sidecar-proxy``, whose unset
fields come from the parent: address, tags and meta (when it has none of its
own), ``Proxy.DestinationServiceName``/``DestinationServiceID``, and
``LocalServiceAddress`` (127.0.0.1) and ``LocalServicePort`` (the parent's
port). Its port, when not given, is the lowest free one of the sidecar range
(21000-21255, Consul's default), kept across re-registrations. Without checks
of its own it gets Consul's two: a TCP check of the proxy's port every 10 s
and an alias of the parent service.

An alias check runs nothing: its status is the worst of the aliased
service's checks on this agent (passing when it has none), as Consul's
``CheckAlias`` for a local service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from agent.durations import seconds_duration
from agent.errors import InvalidArgument
from agent.state.services import CONNECT_PROXY, validate_service
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb

__all__ = [
    "SIDECAR_MAX_PORT",
    "SIDECAR_MIN_PORT",
    "SIDECAR_SUFFIX",
    "alias_status",
    "default_tagged_addresses",
    "sidecar_service",
]

SIDECAR_SUFFIX = "-sidecar-proxy"
SIDECAR_MIN_PORT = 21000
SIDECAR_MAX_PORT = 21255
_SEVERITY = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 3}


def default_tagged_addresses(svc: pb.Service) -> None:
    """``lan_ipv4``/``wan_ipv4`` (or ``_ipv6``) from an IP service address, unless given."""
    try:
        ip = ipaddress.ip_address(svc.address)
    except ValueError:
        return
    family = "ipv4" if ip.version == 4 else "ipv6"
    for tag in (f"lan_{family}", f"wan_{family}"):
        if tag not in svc.tagged_addresses:
            address = pb.ServiceAddress(address=svc.address, port=svc.port)
            svc.tagged_addresses[tag].CopyFrom(address)


def _sidecar_port(sidecar_id: str, services: Mapping[str, pb.Service]) -> int:
    used = set()
    for other in services.values():
        if SIDECAR_MIN_PORT <= other.port <= SIDECAR_MAX_PORT:
            if other.id == sidecar_id:
                return other.port  # re-registered: keep its port
            used.add(other.port)
    for port in range(SIDECAR_MIN_PORT, SIDECAR_MAX_PORT + 1):
        if port not in used:
            return port
    raise InvalidArgument(
        "no port provided for sidecar_service and none left in the configured range"
        f" [{SIDECAR_MIN_PORT}, {SIDECAR_MAX_PORT}]"
    )


def sidecar_service(
    parent: pb.Service, definition: apb.ServiceDefinition, services: Mapping[str, pb.Service]
) -> apb.ServiceDefinition:
    """The sidecar of ``parent`` from its ``Connect.SidecarService``, defaults filled, validated."""
    out = apb.ServiceDefinition()
    out.CopyFrom(definition)
    out.ClearField("sidecar_service")
    svc = out.service
    svc.id = parent.id + SIDECAR_SUFFIX
    if not svc.meta and parent.meta:
        svc.meta.update(parent.meta)
    if not svc.tags and parent.tags:
        svc.tags.extend(parent.tags)
    if not svc.kind:
        svc.kind = CONNECT_PROXY
    if not svc.name:
        svc.name = parent.name + SIDECAR_SUFFIX
    if not svc.address:
        svc.address = parent.address
    proxy = svc.proxy
    if not proxy.destination_service_name:
        proxy.destination_service_name = parent.name
    if not proxy.destination_service_id:
        proxy.destination_service_id = parent.id
    if not proxy.local_service_socket_path and (
        not proxy.local_service_address or proxy.local_service_port < 1
    ):
        if not proxy.local_service_address:
            proxy.local_service_address = "127.0.0.1"
        if proxy.local_service_port < 1:
            proxy.local_service_port = parent.port
    if svc.port < 1:
        svc.port = _sidecar_port(svc.id, services)
    if not out.checks:
        host = svc.address or proxy.local_service_address
        target = f"[{host}]:{svc.port}" if ":" in host else f"{host}:{svc.port}"
        listening = pb.CheckDefinition(tcp=target, interval=seconds_duration(10.0))
        aliasing = pb.CheckDefinition(alias_service=parent.id)
        out.checks.extend(
            [
                apb.CheckDefinition(name="Connect Sidecar Listening", definition=listening),
                apb.CheckDefinition(
                    name=f"Connect Sidecar Aliasing {parent.id}", definition=aliasing
                ),
            ]
        )
    for check in out.checks:
        check.service_id = svc.id
    validate_service(svc)
    return out


def alias_status(
    service_id: str,
    checks: Mapping[str, tuple[str, str]],
    maintenance: Mapping[str, str],
    registered: bool,
) -> tuple[str, str]:
    """(status, output) of an alias of ``service_id``; ``checks`` maps check ID to
    (service ID, status), ``maintenance`` service ID to status."""
    if not registered:
        return "critical", f"Service {service_id} could not be found on the local agent"
    statuses = [status for sid, status in checks.values() if sid == service_id]
    if service_id in maintenance:
        statuses.append(maintenance[service_id])
    if not statuses:
        return "passing", "No checks found."
    worst = max(statuses, key=lambda s: _SEVERITY.get(s, 2))
    if worst == "maintenance":
        worst = "critical"
    if worst == "passing":
        return "passing", "All checks passing."
    return worst, f"Aliased service {service_id} is {worst}"
