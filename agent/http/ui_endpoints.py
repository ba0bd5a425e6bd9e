"""Consul's ``/v1/internal/ui/*`` reads, in Consul's shapes (``agent/ui_endpoint.go``).

- ``/v1/internal/ui/services``: one ``ServiceListingSummary`` per service name
  (kind, tags, nodes, instance count, passing/warning/critical check counts);
- ``/v1/internal/ui/nodes``: one ``NodeInfo`` per node (the node with its
  services and checks; Consul's ``NodeDump``);
- ``/v1/internal/ui/node/<node>``: one ``NodeInfo``, 404 when unknown;
- ``/v1/internal/ui/catalog-overview``: Consul's ``CatalogSummary`` (node,
  service-instance and check counts by health).

They are built on the same read path as the other routes (the context's
invoker), from public reads: the node list, each node's services, and every
check (``ChecksInState`` with any state). A dump costs ``3 + nodes`` reads,
``nodes`` of them concurrent (at most :data:`_FANOUT` at once).

Blocking queries (``?index=&wait=``): the services and nodes dumps change when
the catalog's service table (which also moves with every node change) or check
table moves. Both are store-wide indexes from one counter, so a blocking dump
waits on both blocking reads at once and answers when the first returns; the
dump is then read fresh and answered with the largest index it saw. The index
reads come before the data reads, so a change made in between is seen again by
the next blocking query rather than missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.errors import InvalidArgument
from agent.http.base import Context, context, json_response
from agent.http.params import query_options
from agent.shapes import check_json, service_json
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb

__all__ = [
    "NodeDump",
    "add_ui_endpoints",
    "catalog_overview",
    "node_info_json",
    "service_summaries",
]

_CATALOG = "/consul.catalog.v1.CatalogService/"
_HEALTH = "/consul.health.v1.HealthService/"

# Concurrent per-node reads of one dump: enough to hide a client agent's round
# trip to its server (100 nodes at 2 ms each is about 7 ms), few enough not to
# crowd other callers out of the server.
_FANOUT = 32

_STATUS_NAMES: dict[int, str] = {
    pb.HEALTH_STATUS_PASSING: "passing",
    pb.HEALTH_STATUS_WARNING: "warning",
    pb.HEALTH_STATUS_CRITICAL: "critical",
}


@dataclass(frozen=True, slots=True)
class NodeDump:
    """One node as the UI sees it: the node, its services, all its checks."""

    node: pb.Node
    services: tuple[pb.Service, ...]
    checks: tuple[pb.HealthCheck, ...]


def _read_options(request: web.Request) -> qpb.QueryOptions:
    opts = query_options(request)
    if opts.filter:
        raise InvalidArgument("?filter is not supported on /v1/internal/ui/* endpoints")
    return opts


def _fresh(opts: qpb.QueryOptions) -> qpb.QueryOptions:
    """``opts`` without its blocking part: a read that answers at once."""
    out = qpb.QueryOptions()
    out.CopyFrom(opts)
    out.ClearField("min_index")
    out.ClearField("max_wait")
    return out


async def _wait_for_catalog_change(ctx: Context, opts: qpb.QueryOptions) -> None:
    """Return once the service or check table's index passes ``opts.min_index`` (or on timeout)."""
    if not opts.min_index:
        return
    waits: list[asyncio.Task[Any]] = [
        asyncio.create_task(
            ctx.call(
                _CATALOG + "ListServices",
                cpb.ListServicesRequest(options=opts),
                cpb.ListServicesResponse,
            )
        ),
        asyncio.create_task(
            ctx.call(
                _HEALTH + "ChecksInState",
                hpb.ChecksInStateRequest(options=opts, state=pb.HEALTH_STATUS_UNSPECIFIED),
                hpb.ChecksInStateResponse,
            )
        ),
    ]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # an error of the first to finish is the answer
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


async def _dump(ctx: Context, opts: qpb.QueryOptions) -> tuple[list[NodeDump], qpb.QueryMeta]:
    """Every node with its services and checks, and the meta to answer with."""
    await _wait_for_catalog_change(ctx, opts)
    fresh = _fresh(opts)
    services, checks, nodes = await asyncio.gather(
        ctx.call(
            _CATALOG + "ListServices",
            cpb.ListServicesRequest(options=fresh),
            cpb.ListServicesResponse,
        ),
        ctx.call(
            _HEALTH + "ChecksInState",
            hpb.ChecksInStateRequest(options=fresh, state=pb.HEALTH_STATUS_UNSPECIFIED),
            hpb.ChecksInStateResponse,
        ),
        ctx.call(
            _CATALOG + "ListNodes", cpb.ListNodesRequest(options=fresh), cpb.ListNodesResponse
        ),
    )
    gate = asyncio.Semaphore(_FANOUT)

    async def node_services(name: str) -> cpb.GetNodeResponse:
        async with gate:
            return await ctx.call(
                _CATALOG + "GetNode",
                cpb.GetNodeRequest(options=fresh, node=name),
                cpb.GetNodeResponse,
            )

    per_node = await asyncio.gather(*(node_services(n.name) for n in nodes.nodes))
    checks_by_node: dict[str, list[pb.HealthCheck]] = {}
    for check in checks.checks:
        checks_by_node.setdefault(check.node, []).append(check)
    dump = [
        NodeDump(
            node=node,
            services=tuple(got.services),
            checks=tuple(sorted(checks_by_node.get(node.name, []), key=lambda c: c.check_id)),
        )
        for node, got in zip(nodes.nodes, per_node, strict=True)
        if got.HasField("node")  # deregistered between the two reads
    ]
    meta = qpb.QueryMeta()
    meta.CopyFrom(services.meta)
    meta.index = max(services.meta.index, checks.meta.index, nodes.meta.index)
    return dump, meta


def node_info_json(entry: NodeDump) -> dict[str, Any]:
    """Consul's ``NodeInfo``: the node with its services and checks (lists never null)."""
    node = entry.node
    return {
        "ID": node.id,
        "Node": node.name,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": dict(node.tagged_addresses) or None,
        "Meta": dict(node.meta),
        "Services": [service_json(s) for s in entry.services],
        "Checks": [check_json(c) for c in entry.checks],
    }


def service_summaries(dump: Iterable[NodeDump], datacenter: str) -> list[dict[str, Any]]:
    """Consul's ``ServiceListingSummary`` list, sorted by name (``summarizeServices``).

    A service's check counts cover each instance's own checks and the node-level
    checks of the nodes it runs on, each check counted once.
    """
    summaries: dict[str, dict[str, Any]] = {}
    checks_of: dict[str, dict[tuple[str, str], int]] = {}
    for entry in dump:
        node_checks = [c for c in entry.checks if not c.service_id]
        for svc in entry.services:
            summary = summaries.get(svc.name)
            if summary is None:
                summary = summaries[svc.name] = {
                    "Kind": "",
                    "Name": svc.name,
                    "Datacenter": entry.node.datacenter or datacenter,
                    "Tags": [],
                    "Nodes": [],
                    "ExternalSources": [],
                    "InstanceCount": 0,
                    "ChecksPassing": 0,
                    "ChecksWarning": 0,
                    "ChecksCritical": 0,
                    "GatewayConfig": {},
                    "TransparentProxy": False,
                    "ConnectNative": False,
                    "ConnectedWithProxy": False,
                    "ConnectedWithGateway": False,
                }
                checks_of[svc.name] = {}
            if entry.node.name not in summary["Nodes"]:
                summary["Nodes"].append(entry.node.name)
            summary["Kind"] = svc.kind
            summary["InstanceCount"] += 1
            for tag in svc.tags:
                if tag not in summary["Tags"]:
                    summary["Tags"].append(tag)
            source = svc.meta.get("external-source", "")
            if source and source not in summary["ExternalSources"]:
                summary["ExternalSources"].append(source)
            for check in (*node_checks, *(c for c in entry.checks if c.service_id == svc.id)):
                checks_of[svc.name][(entry.node.name, check.check_id)] = check.status
    out: list[dict[str, Any]] = []
    for name in sorted(summaries):
        summary = summaries[name]
        summary["Nodes"].sort()
        summary["Tags"].sort()
        for status in checks_of[name].values():
            key = {"passing": "ChecksPassing", "warning": "ChecksWarning"}.get(
                _STATUS_NAMES.get(status, ""), "ChecksCritical"
            )
            summary[key] += 1
        if not summary["Kind"]:
            del summary["Kind"]  # Go's `json:",omitempty"`
        out.append(summary)
    return out


def _worst(statuses: Iterable[int]) -> str:
    """Consul's overview rule: critical beats warning beats passing; no checks is passing."""
    worst = "passing"
    for status in statuses:
        name = _STATUS_NAMES.get(status, "critical")
        if name == "critical":
            return "critical"
        if name == "warning":
            worst = "warning"
    return worst


def _health_summary(name: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"Total": 0, "Passing": 0, "Warning": 0, "Critical": 0}
    if name:
        out = {"Name": name, **out}
    return out


def _add(summary: dict[str, Any], status: str) -> None:
    summary["Total"] += 1
    summary[status.capitalize()] += 1


def catalog_overview(dump: Iterable[NodeDump]) -> dict[str, Any]:
    """Consul's ``CatalogSummary`` (``getCatalogOverview``): nodes, service instances, checks."""
    nodes = _health_summary()
    services: dict[str, dict[str, Any]] = {}
    checks: dict[str, dict[str, Any]] = {}
    for entry in dump:
        for check in entry.checks:
            summary = checks.setdefault(check.name, _health_summary(check.name))
            _add(summary, _worst([check.status]))
        _add(nodes, _worst(c.status for c in entry.checks if not c.service_id))
        for svc in entry.services:
            summary = services.setdefault(svc.name, _health_summary(svc.name))
            _add(summary, _worst(c.status for c in entry.checks if c.service_id == svc.id))
    return {
        "Nodes": [nodes] if nodes["Total"] else [],
        "Services": [services[k] for k in sorted(services)],
        "Checks": [checks[k] for k in sorted(checks)],
    }


async def ui_services(request: web.Request) -> web.Response:
    ctx = context(request)
    opts = _read_options(request)
    dump, meta = await _dump(ctx, opts)
    body = service_summaries(dump, opts.datacenter or ctx.datacenter)
    return json_response(request, body, meta=meta)


async def ui_nodes(request: web.Request) -> web.Response:
    dump, meta = await _dump(context(request), _read_options(request))
    return json_response(request, [node_info_json(e) for e in dump], meta=meta)


async def ui_node(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    name = request.match_info["node"]
    if not name:
        raise InvalidArgument("Missing node name")
    opts = _read_options(request)
    got = await ctx.call(
        _CATALOG + "GetNode", cpb.GetNodeRequest(options=opts, node=name), cpb.GetNodeResponse
    )
    if not got.HasField("node"):
        return json_response(request, None, status=404, meta=got.meta)
    checks = await ctx.call(
        _HEALTH + "NodeChecks",
        hpb.NodeChecksRequest(options=_fresh(opts), node=name),
        hpb.NodeChecksResponse,
    )
    entry = NodeDump(got.node, tuple(got.services), tuple(checks.checks))
    return json_response(request, node_info_json(entry), meta=got.meta)


async def ui_catalog_overview(request: web.Request) -> web.Response:
    opts = _fresh(_read_options(request))  # Consul's overview does not block
    dump, _ = await _dump(context(request), opts)
    return json_response(request, catalog_overview(dump))


def add_ui_endpoints(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/internal/ui/services", ui_services)
    router.add_get("/v1/internal/ui/nodes", ui_nodes)
    router.add_get("/v1/internal/ui/node/{node:.*}", ui_node)
    router.add_get("/v1/internal/ui/catalog-overview", ui_catalog_overview)
