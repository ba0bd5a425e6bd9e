"""Agent metrics: Prometheus text or Consul's JSON, read live at each scrape.

Nothing is instrumented twice: each agent already counts what it does
(``Client.stats``, ``RPC_STATS``, its routers, membership and anti-entropy), and
``AgentMetrics`` turns a snapshot of those counts into metric families when
``/v1/agent/metrics`` is asked for them. Names follow Consul's
(``consul_client_rpc``, ``consul_client_rpc_exceeded`` ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.client import ClientStats
from agent.local.core import LocalAgent
from agent.router import Router
from agent.server.handlers import RPC_STATS
from agent.shapes import STATUS_NAMES
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "AgentMetrics",
    "Sample",
    "client_samples",
    "local_samples",
    "member_samples",
    "router_samples",
    "stream_samples",
    "views_samples",
]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Sample:
    """One value: a counter (only grows) or a gauge, with labels."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def rpc_samples() -> Iterator[Sample]:
    for (path, code), count in sorted(RPC_STATS.calls.items()):
        yield Sample(
            "consul_rpc_request",
            "counter",
            "RPCs served by this agent's gRPC listeners",
            count,
            {"method": path, "code": code},
        )


class _Collector(Collector):
    def __init__(self, samples: Callable[[], Iterable[Sample]]) -> None:
        self._samples = samples

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for s in [*self._samples(), *rpc_samples()]:
            family = families.get(s.name)
            if family is None:
                labels = sorted(s.labels)
                family = (
                    CounterMetricFamily(s.name, s.help, labels=labels)
                    if s.kind == "counter"
                    else GaugeMetricFamily(s.name, s.help, labels=labels)
                )
                families[s.name] = family
            family.add_metric([s.labels[k] for k in sorted(s.labels)], s.value)
        yield from families.values()


class AgentMetrics:
    """The metrics of one agent, from its ``samples`` callable."""

    def __init__(self, samples: Callable[[], Iterable[Sample]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(samples))

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)

    def consul_json(self) -> dict[str, Any]:
        """Consul's ``/v1/agent/metrics`` JSON: Gauges and Counters."""
        gauges: list[dict[str, Any]] = []
        counters: list[dict[str, Any]] = []
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                name = sample.name.removesuffix("_total").replace("_", ".")
                if family.type == "counter":
                    counters.append(
                        {
                            "Name": name,
                            "Count": int(sample.value),
                            "Sum": sample.value,
                            "Labels": dict(sample.labels),
                        }
                    )
                else:
                    gauges.append(
                        {"Name": name, "Value": sample.value, "Labels": dict(sample.labels)}
                    )
        return {
            "Timestamp": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime()),
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": [],
        }


def router_samples(router: Router) -> Iterator[Sample]:
    for dc, state in router.state().items():
        labels = {"datacenter": dc}
        yield Sample(
            "consul_router_servers",
            "gauge",
            "Servers in the router's list",
            len(state.servers),
            labels,
        )
        yield Sample(
            "consul_router_offline",
            "gauge",
            "1 when no server answered a rebalance",
            float(state.offline),
            labels,
        )
        yield Sample(
            "consul_router_rebalances",
            "counter",
            "Rebalances run",
            router.manager(dc).rebalances,
            labels,
        )


def local_samples(local: LocalAgent) -> Iterator[Sample]:
    yield Sample(
        "consul_agent_services",
        "gauge",
        "Services registered on this agent",
        len(local.state.services),
    )
    by_status: dict[str, int] = {}
    for check in local.state.health_checks():
        status = STATUS_NAMES.get(check.status, "critical")
        by_status[status] = by_status.get(status, 0) + 1
    for status in ("passing", "warning", "critical"):
        yield Sample(
            "consul_agent_checks",
            "gauge",
            "Checks on this agent by status",
            by_status.get(status, 0),
            {"status": status},
        )
    yield Sample("consul_agent_ae_syncs", "counter", "Anti-entropy syncs done", local.ae.syncs)
    yield Sample(
        "consul_agent_ae_failures", "counter", "Anti-entropy syncs failed", local.ae.failures
    )


def client_samples(stats: ClientStats) -> Iterator[Sample]:
    yield Sample("consul_client_rpc", "counter", "RPCs sent to servers", stats.rpc)
    yield Sample("consul_client_rpc_attempts", "counter", "Tries sent to servers", stats.attempts)
    yield Sample("consul_client_rpc_failed", "counter", "Transport failures", stats.failed)
    yield Sample(
        "consul_client_rpc_exceeded",
        "counter",
        "RPCs refused by the rate limit",
        stats.rate_limited,
    )
    yield Sample("consul_client_rpc_retries", "counter", "RPC retries", stats.retries)
    yield Sample(
        "consul_client_rpc_no_servers", "counter", "RPCs with no server known", stats.no_servers
    )


def member_samples(members: Iterable[mpb.Member], events: int, pool: str) -> Iterator[Sample]:
    counts: dict[str, int] = {}
    for m in members:
        name = mpb.MemberStatus.Name(m.status).removeprefix("MEMBER_STATUS_").lower()
        counts[name] = counts.get(name, 0) + 1
    for status in ("alive", "left", "failed"):
        yield Sample(
            "consul_members",
            "gauge",
            "Members by status",
            counts.get(status, 0),
            {"pool": pool, "status": status},
        )
    yield Sample(
        "consul_membership_events", "counter", "Membership events seen", events, {"pool": pool}
    )


class ViewsSource(Protocol):
    """What ``views_samples`` reads: an agent's ``agent.views.ViewStore`` fits."""

    @property
    def stats(self) -> Any: ...

    def views(self) -> Sequence[Any]: ...


class PublisherSource(Protocol):
    """What ``stream_samples`` reads: a server's ``agent.stream.Publisher`` fits."""

    @property
    def stats(self) -> Any: ...

    def slots(self) -> Mapping[Any, int]: ...


def views_samples(store: ViewsSource) -> Iterator[Sample]:
    """The agent's materialized views (DESIGN.md section 7)."""
    views = list(store.views())
    s = store.stats
    yield Sample("consul_views", "gauge", "Materialized views open", len(views))
    yield Sample(
        "consul_views_connected",
        "gauge",
        "Views whose subscription is up",
        sum(1 for v in views if v.connected),
    )
    yield Sample(
        "consul_views_events_applied",
        "counter",
        "Values applied by the open views",
        sum(v.stats.events for v in views),
    )
    yield Sample(
        "consul_views_snapshot_resets",
        "counter",
        "New snapshots received by the open views",
        sum(v.stats.resets for v in views),
    )
    yield Sample("consul_views_hits", "counter", "Reads answered from a cached answer", s.hits)
    yield Sample("consul_views_misses", "counter", "Reads that built their answer", s.misses)
    yield Sample(
        "consul_views_delegated",
        "counter",
        "Covered reads sent to a server after a local write",
        s.delegated,
    )
    yield Sample("consul_views_created", "counter", "Views created", s.created)
    yield Sample(
        "consul_views_expired", "counter", "Views closed idle or evicted", s.expired + s.evicted
    )


def stream_samples(publisher: PublisherSource) -> Iterator[Sample]:
    """A server's subscriptions (the other end of the views)."""
    s = publisher.stats
    yield Sample("consul_stream_subscribers", "gauge", "Open subscriptions", s.subscribers)
    yield Sample("consul_stream_keys", "gauge", "Subscribed topic keys", len(publisher.slots()))
    yield Sample("consul_stream_subscriptions", "counter", "Subscriptions opened", s.subscriptions)
    yield Sample("consul_stream_events", "counter", "Values published", s.events)
    yield Sample("consul_stream_sent", "counter", "Stream messages sent", s.sent)
    yield Sample("consul_stream_snapshots", "counter", "Snapshots served", s.snapshots)
    yield Sample("consul_stream_resumes", "counter", "Subscriptions resumed", s.resumes)
