"""Consul's JSON shapes of catalog objects, from our protobuf messages.

One place for them: the HTTP API answers with these, and ``?filter=``
expressions (over HTTP or gRPC) are evaluated against the same rows, so an
expression a Consul user wrote works unchanged on both.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from agent.durations import format_duration
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb
from generated.consul.kv.v1 import kv_pb2
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.session.v1 import session_pb2 as sspb

__all__ = [
    "BEHAVIOR_NAMES",
    "MEMBER_STATUS_CODES",
    "STATUS_NAMES",
    "agent_check_json",
    "agent_service_json",
    "catalog_service_json",
    "check_json",
    "connect_json",
    "event_json",
    "kv_json",
    "locality_json",
    "member_json",
    "node_json",
    "proxy_json",
    "service_entry_json",
    "service_json",
    "session_json",
    "status_name",
    "tagged_addresses_json",
]

STATUS_NAMES: dict[int, str] = {
    pb.HEALTH_STATUS_PASSING: "passing",
    pb.HEALTH_STATUS_WARNING: "warning",
    pb.HEALTH_STATUS_CRITICAL: "critical",
    pb.HEALTH_STATUS_MAINTENANCE: "maintenance",
}


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, "critical")


def node_json(node: pb.Node) -> dict[str, Any]:
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": dict(node.tagged_addresses) or None,
        "Meta": dict(node.meta),
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    }


def _weights(svc: pb.Service) -> dict[str, int]:
    if svc.HasField("weights"):
        return {"Passing": svc.weights.passing, "Warning": svc.weights.warning}
    return {"Passing": 1, "Warning": 1}


def _integral(value: Any) -> Any:
    """A Struct's numbers are doubles: 8080.0 back to 8080, as Go's JSON prints it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _struct(value: Struct) -> dict[str, Any]:
    out = _integral(MessageToDict(value))
    assert isinstance(out, dict)
    return out


def proxy_json(proxy: pb.ConnectProxy) -> dict[str, Any]:
    """Consul's ``ConnectProxyConfig`` (``Proxy`` of a service), as its JSON prints it."""
    out: dict[str, Any] = {
        "DestinationServiceName": proxy.destination_service_name,
        "DestinationServiceID": proxy.destination_service_id,
        "LocalServiceAddress": proxy.local_service_address,
        "LocalServicePort": proxy.local_service_port,
        "LocalServiceSocketPath": proxy.local_service_socket_path,
        "Mode": proxy.mode,
        "Config": _struct(proxy.config) if proxy.HasField("config") else None,
        "Upstreams": [_struct(u) for u in proxy.upstreams] or None,
        "MeshGateway": _struct(proxy.mesh_gateway),
        "Expose": _struct(proxy.expose),
        "TransparentProxy": _struct(proxy.transparent_proxy),
        "AccessLogs": _struct(proxy.access_logs),
    }
    # Go's omitempty drops empty scalars, maps and lists; the nested structs stay.
    return {k: v for k, v in out.items() if v or isinstance(v, dict)}


def tagged_addresses_json(svc: pb.Service) -> dict[str, dict[str, Any]] | None:
    if not svc.tagged_addresses:
        return None
    return {
        k: {"Address": v.address, "Port": v.port} for k, v in sorted(svc.tagged_addresses.items())
    }


def connect_json(svc: pb.Service) -> dict[str, Any]:
    return {"Native": True} if svc.connect.native else {}


def locality_json(svc: pb.Service) -> dict[str, str] | None:
    if not svc.HasField("locality"):
        return None
    out = {"Region": svc.locality.region, "Zone": svc.locality.zone}
    return {k: v for k, v in out.items() if v}


def _connect_fields(svc: pb.Service, prefix: str = "") -> dict[str, Any]:
    """Consul's connect fields of a service (``NodeService``/``CatalogService``):
    ``Proxy`` and ``Connect`` always (near-empty objects on a typical service),
    ``TaggedAddresses`` and ``Locality`` only when set (Go's omitempty)."""
    out: dict[str, Any] = {}
    if svc.tagged_addresses:
        out[f"{prefix}TaggedAddresses"] = tagged_addresses_json(svc)
    out[f"{prefix}Proxy"] = proxy_json(svc.proxy)
    out[f"{prefix}Connect"] = connect_json(svc)
    if svc.HasField("locality"):
        out[f"{prefix}Locality"] = locality_json(svc)
    return out


def service_json(svc: pb.Service) -> dict[str, Any]:
    return {
        "ID": svc.id,
        "Service": svc.name,
        "Tags": list(svc.tags),
        "Address": svc.address,
        "Meta": dict(svc.meta),
        "Port": svc.port,
        "Weights": _weights(svc),
        "EnableTagOverride": svc.enable_tag_override,
        "Kind": svc.kind,
        **_connect_fields(svc),
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    }


def catalog_service_json(node: pb.Node, svc: pb.Service) -> dict[str, Any]:
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": dict(node.tagged_addresses) or None,
        "NodeMeta": dict(node.meta),
        "ServiceKind": svc.kind,
        "ServiceID": svc.id,
        "ServiceName": svc.name,
        "ServiceTags": list(svc.tags),
        "ServiceAddress": svc.address,
        "ServiceWeights": _weights(svc),
        "ServiceMeta": dict(svc.meta),
        "ServicePort": svc.port,
        "ServiceEnableTagOverride": svc.enable_tag_override,
        **_connect_fields(svc, "Service"),
        "CreateIndex": svc.create_index,
        "ModifyIndex": svc.modify_index,
    }


def check_json(check: pb.HealthCheck) -> dict[str, Any]:
    return {
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": status_name(check.status),
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "CreateIndex": check.create_index,
        "ModifyIndex": check.modify_index,
    }


def service_entry_json(entry: pb.ServiceEntry) -> dict[str, Any]:
    return {
        "Node": node_json(entry.node),
        "Service": service_json(entry.service),
        "Checks": [check_json(c) for c in entry.checks],
    }


def kv_json(pair: kv_pb2.KVPair) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Key": pair.key,
        "CreateIndex": pair.create_index,
        "ModifyIndex": pair.modify_index,
        "LockIndex": pair.lock_index,
        "Flags": pair.flags,
        "Value": base64.b64encode(pair.value).decode() if pair.value else None,
    }
    if pair.session:
        out["Session"] = pair.session
    return out


def agent_service_json(svc: pb.Service, datacenter: str = "") -> dict[str, Any]:
    """A service as ``/v1/agent/services`` lists it (Consul's ``AgentService``)."""
    out: dict[str, Any] = {
        "ID": svc.id,
        "Service": svc.name,
        "Tags": list(svc.tags),
        "Meta": dict(svc.meta),
        "Port": svc.port,
        "Address": svc.address,
        "Weights": _weights(svc),
        "EnableTagOverride": svc.enable_tag_override,
        "Datacenter": datacenter,
    }
    if svc.kind:
        out["Kind"] = svc.kind
    if svc.tagged_addresses:
        out["TaggedAddresses"] = tagged_addresses_json(svc)
    if svc.kind:  # AgentService's Proxy is a pointer: only on proxies and gateways
        out["Proxy"] = proxy_json(svc.proxy)
    if svc.connect.native:
        out["Connect"] = connect_json(svc)
    if svc.HasField("locality"):
        out["Locality"] = locality_json(svc)
    return out


def _seconds(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


def agent_check_json(check: pb.HealthCheck) -> dict[str, Any]:
    """A check as ``/v1/agent/checks`` lists it (Consul's ``AgentCheck``)."""
    out = check_json(check)
    d = check.definition
    interval = format_duration(_seconds(d.interval)) if d.HasField("interval") else ""
    timeout = format_duration(_seconds(d.timeout)) if d.HasField("timeout") else ""
    out["Interval"] = interval
    out["Timeout"] = timeout
    out["ExposedPort"] = 0
    out["Definition"] = {}
    return out


# Serf's member status numbers, which Consul's /v1/agent/members reports.
MEMBER_STATUS_CODES: dict[int, int] = {
    mpb.MEMBER_STATUS_UNSPECIFIED: 0,
    mpb.MEMBER_STATUS_ALIVE: 1,
    mpb.MEMBER_STATUS_LEFT: 3,
    mpb.MEMBER_STATUS_FAILED: 4,
}


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return address, 0
    return host.strip("[]"), int(port)


def member_json(member: mpb.Member) -> dict[str, Any]:
    """A member as ``/v1/agent/members`` lists it (Consul's serf member)."""
    addr, port = _split_address(member.address)
    tags = dict(member.tags)
    tags.setdefault("role", "consul" if member.role == mpb.MEMBER_ROLE_SERVER else "node")
    tags.setdefault("dc", member.datacenter)
    return {
        "Name": member.name,
        "Addr": addr,
        "Port": port,
        "Tags": tags,
        "Status": MEMBER_STATUS_CODES.get(member.status, 0),
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    }


BEHAVIOR_NAMES: dict[int, str] = {
    sspb.BEHAVIOR_UNSPECIFIED: "release",
    sspb.BEHAVIOR_RELEASE: "release",
    sspb.BEHAVIOR_DELETE: "delete",
}


def session_json(session: sspb.Session) -> dict[str, Any]:
    """A session as ``/v1/session/*`` answers it (Consul's ``Session``).

    ``LockDelay`` is Go's nanoseconds; ``TTL`` a duration string (``""`` for
    none). ``Checks`` is the deprecated pre-1.7 field, kept for old clients:
    every check ID the session hangs on, as Consul's ``CheckIDs()``.
    """
    lock_delay = session.lock_delay.seconds * 1_000_000_000 + session.lock_delay.nanos
    ttl = _seconds(session.ttl) if session.HasField("ttl") else 0.0
    return {
        "ID": session.id,
        "Name": session.name,
        "Node": session.node,
        "LockDelay": lock_delay,
        "Behavior": BEHAVIOR_NAMES.get(session.behavior, "release"),
        "TTL": format_duration(ttl) if ttl > 0 else "",
        "NodeChecks": list(session.node_checks),
        "ServiceChecks": [{"ID": c, "Namespace": ""} for c in session.service_checks],
        "Checks": [*session.node_checks, *session.service_checks],
        "CreateIndex": session.create_index,
        "ModifyIndex": session.modify_index,
    }


def event_json(event: epb.Event) -> dict[str, Any]:
    """A user event as ``/v1/event/*`` answers it (Consul's ``UserEvent``; payload in base64)."""
    return {
        "ID": event.id,
        "Name": event.name,
        "Payload": base64.b64encode(event.payload).decode() if event.payload else None,
        "NodeFilter": event.node_filter,
        "ServiceFilter": event.service_filter,
        "TagFilter": event.tag_filter,
        "Version": event.version,
        "LTime": event.ltime,
    }
