"""The Connect parts of a Consul service body: ``Kind``, ``Proxy``, ``Connect``,
``TaggedAddresses``, ``Locality``; and Consul's validation of them.

Keys match case-insensitively and without ``_`` (config files write
``destination_service_name``, clients ``DestinationServiceName``). The nested
structures only clients read (``Upstreams``, ``Expose``, ``MeshGateway``,
``TransparentProxy``, ``AccessLogs``) are kept in Consul's JSON shape with
their keys in Consul's casing; ``Config`` maps are opaque and kept verbatim.

Validation of meaning is ``agent.state.services.validate_service``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.struct_pb2 import Struct

from agent.errors import InvalidArgument
from agent.http.params import Fields
from generated.consul.common.v1 import types_pb2 as pb

__all__ = ["apply_connect_fields", "sidecar_fields"]

_PROXY_MODES = ("", "direct", "transparent")
_MAX_PORT = 65535

# Consul's field names inside the nested proxy structures, by folded name.
_KNOWN = [
    # Upstream
    *("DestinationType", "DestinationNamespace", "DestinationPartition", "DestinationPeer"),
    *("DestinationName", "Datacenter", "LocalBindAddress", "LocalBindPort"),
    *("LocalBindSocketPath", "LocalBindSocketMode", "Config", "MeshGateway"),
    "CentrallyConfigured",
    # MeshGatewayConfig, ExposeConfig, ExposePath
    *("Mode", "Checks", "Paths", "ListenerPort", "Path", "LocalPathPort", "Protocol"),
    "ParsedFromCheck",
    # TransparentProxyConfig, AccessLogsConfig
    *("OutboundListenerPort", "DialedDirectly", "Enabled", "DisableListenerLogs", "Type"),
    *("JSONFormat", "TextFormat"),
]
_NAMES = {n.lower(): n for n in _KNOWN}


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _canonical(value: Any) -> Any:
    """Consul's casing for the known keys of a nested structure; ``Config`` verbatim."""
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _NAMES.get(_fold(str(key))) or str(key)
        out[name] = item if name == "Config" else _canonical(item)
    return out


def _one(f: Fields, name: str) -> Fields | None:
    """An object field; an HCL block list of one object counts as that object."""
    value = f.get(name)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if value is None:
        return None
    return Fields(value, f"{f.what}.{name}")


def _update(into: Struct, value: dict[str, Any], what: str) -> None:
    try:
        into.update(value)
    except (ValueError, TypeError, OverflowError) as exc:  # a number no double holds
        raise InvalidArgument(f"Request decode failed: {what}: {exc}") from None


def _struct(f: Fields, name: str, into: Struct) -> None:
    value = f.get(name)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidArgument(f"Request decode failed: {f.what}.{name} must be an object")
    _update(into, value if name == "Config" else _canonical(value), f"{f.what}.{name}")


def _proxy(f: Fields) -> pb.ConnectProxy:
    proxy = pb.ConnectProxy(
        destination_service_name=f.text("DestinationServiceName"),
        destination_service_id=f.text("DestinationServiceID"),
        local_service_address=f.text("LocalServiceAddress"),
        local_service_port=f.integer("LocalServicePort", lo=0, hi=_MAX_PORT),
        local_service_socket_path=f.text("LocalServiceSocketPath"),
        mode=f.text("Mode"),
    )
    if proxy.mode not in _PROXY_MODES:
        raise InvalidArgument(f"Request decode failed: invalid proxy mode: {proxy.mode}")
    if f.get("Config") is not None:
        proxy.config.SetInParent()
    _struct(f, "Config", proxy.config)
    for name, field in (
        ("MeshGateway", proxy.mesh_gateway),
        ("Expose", proxy.expose),
        ("TransparentProxy", proxy.transparent_proxy),
        ("AccessLogs", proxy.access_logs),
    ):
        _struct(f, name, field)
    upstreams = f.get("Upstreams")
    if upstreams is not None:
        if not isinstance(upstreams, list) or not all(isinstance(u, dict) for u in upstreams):
            raise InvalidArgument(
                f"Request decode failed: {f.what}.Upstreams must be an array of objects"
            )
        for upstream in upstreams:
            _update(proxy.upstreams.add(), _canonical(upstream), f"{f.what}.Upstreams")
    return proxy


def apply_connect_fields(f: Fields, svc: pb.Service) -> None:
    """Read ``TaggedAddresses``, ``Proxy``, ``Connect.Native`` and ``Locality`` into ``svc``."""
    tagged = _one(f, "TaggedAddresses")
    if tagged is not None:
        for key in tagged.names():
            addr = tagged.obj(key)
            if addr is None:
                continue
            svc.tagged_addresses[key].CopyFrom(
                pb.ServiceAddress(
                    address=addr.text("Address"), port=addr.integer("Port", lo=0, hi=_MAX_PORT)
                )
            )
    proxy = _one(f, "Proxy")
    if proxy is not None:
        svc.proxy.CopyFrom(_proxy(proxy))
    connect = _one(f, "Connect")
    if connect is not None and connect.boolean("Native"):
        svc.connect.native = True
    locality = _one(f, "Locality")
    if locality is not None:
        svc.locality.CopyFrom(
            pb.Locality(region=locality.text("Region"), zone=locality.text("Zone"))
        )


def sidecar_fields(f: Fields) -> Fields | None:
    """``Connect.SidecarService`` of a service body (an empty object counts), or None."""
    connect = _one(f, "Connect")
    if connect is None:
        return None
    value = connect.get("SidecarService")
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if value is None:
        return None
    return Fields(value, f"{connect.what}.SidecarService")
