"""What a subscription carries: the whole value of one topic key at an index.

A topic key is (topic, key), e.g. (SERVICE_HEALTH, "web"). Its value is read
from the state layer once per change and fanned out to every subscriber; it is
the unfiltered answer of the read it backs (every health entry of ``web``,
whatever ``passing``/``tag``/``filter`` a reader asks for), so per-reader
filtering (and, later, per-token filtering) happens on the agent at read time.

``affected`` maps one store change to the topic keys it can change, using the
index keys of ``agent.state.keys``: the catalog writes them last in each of
its transactions, so by the time an index key's change is seen the data it
stands for is readable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.convert import check_name
from agent.errors import InvalidArgument
from agent.state import keys
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.kv import KVState, validate_key
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["TOPIC_NAMES", "TopicKey", "affected", "read_value", "topic_key"]

TOPIC_NAMES: dict[int, str] = {
    spb.TOPIC_SERVICE_HEALTH: "service_health",
    spb.TOPIC_CATALOG_SERVICES: "catalog_services",
    spb.TOPIC_CATALOG_NODES: "catalog_nodes",
    spb.TOPIC_NODE: "node",
    spb.TOPIC_KV_KEY: "kv_key",
    spb.TOPIC_KV_PREFIX: "kv_prefix",
}

_IDX_SVC = "idx/svc/"
_IDX_NODE = "idx/node/"


@dataclass(frozen=True, slots=True, order=True)
class TopicKey:
    """One subscribable thing: a topic and its key."""

    topic: int
    key: str

    def __str__(self) -> str:
        return f"{TOPIC_NAMES.get(self.topic, str(self.topic))}:{self.key}"


def topic_key(req: spb.SubscribeRequest) -> TopicKey:
    """The validated topic key of a request (InvalidArgument otherwise)."""
    topic = int(req.topic)
    if topic not in TOPIC_NAMES:
        raise InvalidArgument(f"Unknown or unsupported subscription topic {topic}")
    if topic == spb.TOPIC_SERVICE_HEALTH:
        check_name(req.key, "service name")
    elif topic == spb.TOPIC_NODE:
        check_name(req.key, "node")
    elif topic == spb.TOPIC_KV_KEY:
        validate_key(req.key)
    elif topic == spb.TOPIC_KV_PREFIX:
        validate_key(req.key, allow_empty=True)
    elif req.key:
        raise InvalidArgument("This subscription topic takes no key")
    return TopicKey(topic, req.key)


def affected(store_key: str, kv_prefixes: Iterable[str]) -> list[TopicKey]:
    """The topic keys a change of ``store_key`` can change.

    ``kv_prefixes`` are the KV prefixes currently subscribed (a KV change
    touches every one of them that the key starts with).
    """
    if store_key.startswith(_IDX_SVC):
        return [TopicKey(spb.TOPIC_SERVICE_HEALTH, keys.name_of(store_key))]
    if store_key.startswith(_IDX_NODE):
        return [TopicKey(spb.TOPIC_NODE, keys.name_of(store_key))]
    if store_key == keys.IDX_SERVICES:
        return [TopicKey(spb.TOPIC_CATALOG_SERVICES, "")]
    if store_key == keys.IDX_NODES:
        return [TopicKey(spb.TOPIC_CATALOG_NODES, "")]
    if store_key.startswith((keys.KV, keys.KV_TOMB)) and store_key.endswith("\x00"):
        name = keys.kv_name(store_key)
        out = [TopicKey(spb.TOPIC_KV_KEY, name)]
        out += [TopicKey(spb.TOPIC_KV_PREFIX, p) for p in kv_prefixes if name.startswith(p)]
        return out
    return []


async def read_value(catalog: Catalog, kv: KVState, tk: TopicKey, *, fresh: bool) -> spb.Event:
    """The current value of ``tk`` with its index.

    ``fresh``: a default read (on an etcd replica, first wait until it holds
    every acknowledged write); else a stale read of what this server has.
    """
    opts = QueryOpts(consistency="default" if fresh else "stale")
    if tk.topic == spb.TOPIC_SERVICE_HEALTH:
        health = await catalog.service_health(opts, tk.key)
        return spb.Event(
            index=health.index, service_health=spb.ServiceHealthPayload(entries=health.value)
        )
    if tk.topic == spb.TOPIC_CATALOG_SERVICES:
        services = await catalog.list_services(opts)
        summaries = [cpb.ServiceSummary(name=n, tags=t) for n, t in services.value.items()]
        return spb.Event(
            index=services.index, catalog_services=spb.CatalogServicesPayload(services=summaries)
        )
    if tk.topic == spb.TOPIC_CATALOG_NODES:
        nodes = await catalog.list_nodes(opts)
        return spb.Event(
            index=nodes.index, catalog_nodes=spb.CatalogNodesPayload(nodes=nodes.value)
        )
    if tk.topic == spb.TOPIC_NODE:
        got = await catalog.get_node(opts, tk.key)
        checks = await catalog.node_checks(QueryOpts(consistency="stale"), tk.key)
        node, node_services = got.value
        payload = spb.NodePayload(services=node_services, checks=checks.value)
        if node is not None:
            payload.node.CopyFrom(node)
        return spb.Event(index=max(got.index, checks.index), node=payload)
    if tk.topic == spb.TOPIC_KV_KEY:
        pair = await kv.get(opts, tk.key)
        pairs = [pair.value] if pair.value is not None else []
        return spb.Event(index=pair.index, kv=spb.KVPayload(pairs=pairs))
    if tk.topic == spb.TOPIC_KV_PREFIX:
        listed = await kv.list_prefix(opts, tk.key)
        return spb.Event(index=listed.index, kv=spb.KVPayload(pairs=listed.value))
    raise InvalidArgument(f"Unknown subscription topic {tk.topic}")
