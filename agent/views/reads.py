"""The covered reads: which view backs each, and its answer built from the view's value.

Each ``Read`` names the topic key a request needs and builds the response the
server's endpoint would give from that key's whole value, applying the same
narrowing in the same order (tags, node meta, passing, then ``?filter``), so a
view read equals a server read of the same index. Requests a view cannot
answer (``ListServices`` with node meta or a filter: it needs every
instance) return None from ``key_of`` and go to a server.

Per-token filtering (the ACL issue) belongs here too, at read time, over the
shared value: one view per topic key, never one per token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message

from agent.convert import check_name, query_opts
from agent.filter import apply_filter
from agent.shapes import catalog_service_json, check_json, node_json, service_entry_json
from agent.state.kv import validate_key
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["READS", "Read"]

T = TypeVar("T")

_PLAIN_CONSISTENCY = frozenset(
    {qpb.CONSISTENCY_UNSPECIFIED, qpb.CONSISTENCY_STALE, qpb.CONSISTENCY_CONSISTENT}
)


@dataclass(frozen=True, slots=True)
class Read:
    """One covered RPC: the topic key of a request, and its answer from a value."""

    key_of: Callable[[Any], tuple[int, str] | None]
    answer: Callable[[Any, spb.Event, qpb.QueryMeta], Message]


def _options(options: qpb.QueryOptions) -> None:
    """Validate query options as the server does (``query_opts``), cheaply when plain."""
    if options.consistency not in _PLAIN_CONSISTENCY or options.HasField("max_wait"):
        query_opts(options)


def _filtered(expr: str, rows: Sequence[T], to_row: Callable[[T], dict[str, Any]]) -> list[T]:
    return apply_filter(expr, rows, to_row) if expr else list(rows)


def _meta_match(node: pb.Node, node_meta: Mapping[str, str]) -> bool:
    return all(node.meta.get(k) == v for k, v in node_meta.items())


def _tags_match(svc: pb.Service, tags: Sequence[str]) -> bool:
    have = {t.lower() for t in svc.tags}
    return all(t.lower() in have for t in tags)


def _entries(
    value: spb.Event, tags: Sequence[str], node_meta: Mapping[str, str]
) -> list[pb.ServiceEntry]:
    return [
        e
        for e in value.service_health.entries
        if _tags_match(e.service, tags) and _meta_match(e.node, node_meta)
    ]


# -- health --------------------------------------------------------------


def _service_key(req: Any) -> tuple[int, str]:
    _options(req.options)
    return spb.TOPIC_SERVICE_HEALTH, check_name(req.service, "service name")


def _endpoints_key(req: Any) -> tuple[int, str] | None:
    """A service's key, or None for its Connect endpoints (``connect``): no view
    holds those (they are other services' instances), so a server answers."""
    if req.connect:
        return None
    return _service_key(req)


def _service_health(
    req: hpb.ServiceHealthRequest, value: spb.Event, meta: qpb.QueryMeta
) -> hpb.ServiceHealthResponse:
    entries = _entries(value, list(req.tags), dict(req.node_meta))
    if req.passing_only:
        entries = [
            e for e in entries if all(c.status == pb.HEALTH_STATUS_PASSING for c in e.checks)
        ]
    entries = _filtered(req.options.filter, entries, service_entry_json)
    return hpb.ServiceHealthResponse(meta=meta, entries=entries)


def _service_checks(
    req: hpb.ServiceChecksRequest, value: spb.Event, meta: qpb.QueryMeta
) -> hpb.ServiceChecksResponse:
    checks = [
        c for e in value.service_health.entries for c in e.checks if c.service_id == e.service.id
    ]
    checks = _filtered(req.options.filter, checks, check_json)
    return hpb.ServiceChecksResponse(meta=meta, checks=checks)


def _node_key(req: Any) -> tuple[int, str]:
    _options(req.options)
    return spb.TOPIC_NODE, check_name(req.node, "node")


def _node_checks(
    req: hpb.NodeChecksRequest, value: spb.Event, meta: qpb.QueryMeta
) -> hpb.NodeChecksResponse:
    checks = _filtered(req.options.filter, list(value.node.checks), check_json)
    return hpb.NodeChecksResponse(meta=meta, checks=checks)


# -- catalog -------------------------------------------------------------


def _instances(
    req: cpb.ListServiceInstancesRequest, value: spb.Event, meta: qpb.QueryMeta
) -> cpb.ListServiceInstancesResponse:
    rows = [(e.node, e.service) for e in _entries(value, list(req.tags), dict(req.node_meta))]
    rows = _filtered(req.options.filter, rows, lambda r: catalog_service_json(*r))
    return cpb.ListServiceInstancesResponse(
        meta=meta, instances=[pb.ServiceInstance(node=n, service=s) for n, s in rows]
    )


def _nodes_key(req: cpb.ListNodesRequest) -> tuple[int, str]:
    _options(req.options)
    return spb.TOPIC_CATALOG_NODES, ""


def _nodes(
    req: cpb.ListNodesRequest, value: spb.Event, meta: qpb.QueryMeta
) -> cpb.ListNodesResponse:
    node_meta = dict(req.node_meta)
    nodes = [n for n in value.catalog_nodes.nodes if _meta_match(n, node_meta)]
    return cpb.ListNodesResponse(meta=meta, nodes=_filtered(req.options.filter, nodes, node_json))


def _services_key(req: cpb.ListServicesRequest) -> tuple[int, str] | None:
    _options(req.options)
    if req.node_meta or req.options.filter:
        return None  # needs every instance: a server answers it
    return spb.TOPIC_CATALOG_SERVICES, ""


def _services(
    req: cpb.ListServicesRequest, value: spb.Event, meta: qpb.QueryMeta
) -> cpb.ListServicesResponse:
    return cpb.ListServicesResponse(meta=meta, services=value.catalog_services.services)


def _get_node(
    req: cpb.GetNodeRequest, value: spb.Event, meta: qpb.QueryMeta
) -> cpb.GetNodeResponse:
    resp = cpb.GetNodeResponse(meta=meta)
    if value.node.HasField("node"):
        resp.node.CopyFrom(value.node.node)
        resp.services.extend(value.node.services)
    return resp


# -- kv ------------------------------------------------------------------


def _kv_key(req: kpb.GetRequest) -> tuple[int, str]:
    _options(req.options)
    validate_key(req.key)
    return spb.TOPIC_KV_KEY, req.key


def _kv_get(req: kpb.GetRequest, value: spb.Event, meta: qpb.QueryMeta) -> kpb.GetResponse:
    resp = kpb.GetResponse(meta=meta)
    if value.kv.pairs:
        resp.pair.CopyFrom(value.kv.pairs[0])
    return resp


def _kv_prefix(req: Any) -> tuple[int, str]:
    _options(req.options)
    validate_key(req.prefix, allow_empty=True)
    return spb.TOPIC_KV_PREFIX, req.prefix


def _kv_list(req: kpb.ListRequest, value: spb.Event, meta: qpb.QueryMeta) -> kpb.ListResponse:
    return kpb.ListResponse(meta=meta, pairs=value.kv.pairs)


def _kv_keys(req: kpb.KeysRequest, value: spb.Event, meta: qpb.QueryMeta) -> kpb.KeysResponse:
    out: list[str] = []
    for pair in value.kv.pairs:
        name = pair.key
        if req.separator:
            cut = name.find(req.separator, len(req.prefix))
            if cut >= 0:
                name = name[: cut + len(req.separator)]
        if not out or out[-1] != name:
            out.append(name)
    return kpb.KeysResponse(meta=meta, keys=out)


_H = "/consul.health.v1.HealthService/"
_C = "/consul.catalog.v1.CatalogService/"
_K = "/consul.kv.v1.KVService/"

#: Every read a view answers, by method path.
READS: dict[str, Read] = {
    _H + "ServiceHealth": Read(_endpoints_key, _service_health),
    _H + "ServiceChecks": Read(_service_key, _service_checks),
    _H + "NodeChecks": Read(_node_key, _node_checks),
    _C + "ListServiceInstances": Read(_endpoints_key, _instances),
    _C + "ListNodes": Read(_nodes_key, _nodes),
    _C + "ListServices": Read(_services_key, _services),
    _C + "GetNode": Read(_node_key, _get_node),
    _K + "Get": Read(_kv_key, _kv_get),
    _K + "List": Read(_kv_prefix, _kv_list),
    _K + "Keys": Read(_kv_prefix, _kv_keys),
}
