"""``?merge-central-config``: proxy-defaults and service-defaults merged into ``Proxy``.

Consul's ``agent/configentry/merge_service_config.go`` for the fields it
names: the defaults are resolved first (``proxy-defaults/global`` under
``service-defaults/<name>``: the service's ``Protocol`` becomes
``Config.protocol``; its ``Mode``, ``MeshGateway``, ``Expose`` and
``TransparentProxy``, when set, win over the proxy-defaults'), then filled
into what the instance left unset: ``Config`` keys it lacks, ``Mode`` and
``MeshGateway.Mode`` when empty, ``Expose.Checks``/``Paths`` and the
``TransparentProxy`` fields when zero. Only proxies and gateways are merged
(a typical service has no proxy to merge into); a sidecar resolves the
defaults of its destination service, a gateway its own name.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from agent.http.base import Context
from agent.state.services import CONNECT_PROXY, GATEWAY_KINDS
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.config.v1 import config_pb2 as cfpb

__all__ = ["CentralConfig"]

_GET = "/consul.config.v1.ConfigService/Get"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _resolve(proxy_defaults: dict[str, Any], service_defaults: dict[str, Any]) -> dict[str, Any]:
    """Consul's resolved service config (``ServiceConfigResponse``) from the two entries."""
    config = dict(_dict(proxy_defaults.get("Config")))
    protocol = service_defaults.get("Protocol")
    if isinstance(protocol, str) and protocol:
        config["protocol"] = protocol
    out: dict[str, Any] = {"ProxyConfig": config}
    for key in ("Mode", "MeshGateway", "Expose", "TransparentProxy"):
        value = service_defaults.get(key)
        if not value or (key == "MeshGateway" and not _dict(value).get("Mode")):
            value = proxy_defaults.get(key)
        out[key] = value
    return out


def _put(into: Struct, values: dict[str, Any]) -> None:
    """``into.update``, skipping a value no Struct holds (a number beyond a double)."""
    for key, value in values.items():
        with contextlib.suppress(ValueError, TypeError, OverflowError):
            into.update({key: value})


def _merge_struct(into: Struct, defaults: dict[str, Any], keys: tuple[str, ...] = ()) -> None:
    """Fill the keys ``into`` lacks (or has falsy) from ``defaults`` (mergo.Merge); all
    keys when ``keys`` is empty."""
    have = MessageToDict(into)
    for key, value in defaults.items():
        if (keys and key not in keys) or have.get(key):
            continue
        if value in (None, "", 0, False, [], {}):
            continue
        _put(into, {key: value})


def merge_service(svc: pb.Service, resolved: dict[str, Any]) -> None:
    proxy = svc.proxy
    config = _dict(resolved.get("ProxyConfig"))
    if config:
        have = MessageToDict(proxy.config)
        _put(proxy.config, {k: v for k, v in config.items() if k not in have})
    mesh = _dict(resolved.get("MeshGateway"))
    if mesh.get("Mode") and not MessageToDict(proxy.mesh_gateway).get("Mode"):
        _put(proxy.mesh_gateway, {"Mode": mesh["Mode"]})
    mode = resolved.get("Mode")
    if isinstance(mode, str) and mode and not proxy.mode:
        proxy.mode = mode
    _merge_struct(proxy.expose, _dict(resolved.get("Expose")), ("Checks", "Paths"))
    _merge_struct(
        proxy.transparent_proxy,
        _dict(resolved.get("TransparentProxy")),
        ("OutboundListenerPort", "DialedDirectly"),
    )


class CentralConfig:
    """The config entries one request merges, each read once (non-blocking)."""

    def __init__(self, ctx: Context, datacenter: str, token: str) -> None:
        self.ctx = ctx
        self.datacenter = datacenter
        self.token = token
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}

    async def _entry(self, kind: str, name: str) -> dict[str, Any]:
        if (kind, name) not in self._entries:
            opts = qpb.QueryOptions(datacenter=self.datacenter, token=self.token)
            got = await self.ctx.call(
                _GET, cfpb.GetRequest(options=opts, kind=kind, name=name), cfpb.GetResponse
            )
            entry = json.loads(got.entry_json) if got.entry_json else {}
            self._entries[(kind, name)] = _dict(entry)
        return self._entries[(kind, name)]

    async def merge(self, svc: pb.Service) -> None:
        """Merge the central defaults into ``svc`` (a proxy or gateway) in place."""
        if svc.kind == CONNECT_PROXY:
            name = svc.proxy.destination_service_name
        elif svc.kind in GATEWAY_KINDS:
            name = svc.name
        else:
            return
        proxy_defaults = await self._entry("proxy-defaults", "global")
        service_defaults = await self._entry("service-defaults", name)
        merge_service(svc, _resolve(proxy_defaults, service_defaults))
