"""What an agent tells about its views: ``/v1/agent/self`` Stats and a listing."""

from __future__ import annotations

from typing import Any

from agent.views.store import ViewStore
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["view_rows", "views_stats"]


def views_stats(store: ViewStore) -> dict[str, str]:
    """Summary counters, as ``/v1/agent/self`` Stats entries."""
    views = store.views()
    s = store.stats
    return {
        "views.count": str(len(views)),
        "views.connected": str(sum(v.connected for v in views)),
        "views.events_applied": str(sum(v.stats.events for v in views)),
        "views.snapshot_resets": str(sum(v.stats.resets for v in views)),
        "views.resubscribes": str(sum(max(0, v.stats.subscribes - 1) for v in views)),
        "views.hits": str(s.hits),
        "views.misses": str(s.misses),
        "views.delegated": str(s.delegated),
        "views.created": str(s.created),
        "views.expired": str(s.expired + s.evicted),
    }


def view_rows(store: ViewStore) -> list[dict[str, Any]]:
    """One row per open view, most recently read last (for ``consul-grpc views``)."""
    return [
        {
            "Datacenter": v.key.datacenter,
            "Topic": spb.Topic.Name(spb.Topic.ValueType(v.key.topic))
            .removeprefix("TOPIC_")
            .lower(),
            "Key": v.key.key,
            "Index": v.index,
            "Connected": v.connected,
            "LastContactMs": int(v.last_contact() * 1000),
            "Events": v.stats.events,
            "Resets": v.stats.resets,
            "Subscribes": v.stats.subscribes,
        }
        for v in store.views()
    ]
