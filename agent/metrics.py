"""Agent metrics: Prometheus text or Consul's JSON, read live at each scrape.

Nothing is instrumented twice: each agent already counts what it does
(``Client.stats``, its ``RpcStats``, its routers, membership and anti-entropy),
and ``AgentMetrics`` turns a snapshot of those counts into metric families when
``/v1/agent/metrics`` is asked for them. Names follow Consul's
(``consul_client_rpc``, ``consul_client_rpc_exceeded`` ...).

The ``*_samples`` functions read what they need through the small Protocols
declared here, which the router, the local agent and the client's stats
satisfy without importing this module: metrics sit below the parts they
measure.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.shapes import STATUS_NAMES
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "AgentMetrics",
    "Sample",
    "client_samples",
    "consul_json_name",
    "local_samples",
    "member_samples",
    "router_samples",
    "rpc_samples",
    "runtime_samples",
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


class RpcCounts(Protocol):
    """Calls served, by (method path, status code name) (``rpc.handlers.RpcStats``)."""

    @property
    def calls(self) -> Mapping[tuple[str, str], int]: ...


class RouterState(Protocol):
    """One datacenter's server list (``router.manager.ManagerState``)."""

    @property
    def servers(self) -> Sequence[object]: ...

    @property
    def offline(self) -> bool: ...


class Rebalancing(Protocol):
    @property
    def rebalances(self) -> int: ...


class RouterView(Protocol):
    """What the router metrics read (``router.Router``)."""

    def state(self) -> Mapping[str, RouterState]: ...

    def manager(self, datacenter: str) -> Rebalancing: ...


class _Check(Protocol):
    @property
    def status(self) -> Any: ...


class _LocalState(Protocol):
    @property
    def services(self) -> Mapping[str, object]: ...

    def health_checks(self) -> Iterable[_Check]: ...


class _AntiEntropy(Protocol):
    @property
    def syncs(self) -> int: ...

    @property
    def failures(self) -> int: ...


class LocalView(Protocol):
    """What the local-agent metrics read (``local.LocalAgent``)."""

    @property
    def state(self) -> _LocalState: ...

    @property
    def ae(self) -> _AntiEntropy: ...


class ClientCounts(Protocol):
    """The RPC path's counters (``client.ClientStats``)."""

    @property
    def rpc(self) -> int: ...

    @property
    def attempts(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def rate_limited(self) -> int: ...

    @property
    def retries(self) -> int: ...

    @property
    def no_servers(self) -> int: ...


def rpc_samples(stats: RpcCounts) -> Iterator[Sample]:
    for (path, code), count in sorted(stats.calls.items()):
        yield Sample(
            "consul_rpc_request",
            "counter",
            "RPCs served by this agent's gRPC listeners",
            count,
            {"method": path, "code": code},
        )


def consul_json_name(prometheus_name: str) -> str:
    """The ``/v1/agent/metrics`` name of a Prometheus sample, as Consul spells it:
    components between dots (``consul_client_rpc`` is ``consul.client.rpc``), but
    the runtime gauges keep Go's underscored words (``consul.runtime.num_goroutines``,
    ``consul.runtime.sys_bytes``), which tools such as dashboards look up by name."""
    name = prometheus_name.removesuffix("_total")
    if name.startswith(RUNTIME_PREFIX):
        return "consul.runtime." + name.removeprefix(RUNTIME_PREFIX)
    return name.replace("_", ".")


RUNTIME_PREFIX = "consul_runtime_"


class _Collector(Collector):
    def __init__(self, sources: list[Callable[[], Iterable[Sample]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for s in (s for source in self._sources for s in source()):
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
    """The metrics of one agent, from its ``samples`` callable and any source
    a part adds later (``add_source``: the HTTP edge's gauges)."""

    def __init__(self, samples: Callable[[], Iterable[Sample]]) -> None:
        self._sources = [samples]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self._sources))

    def add_source(self, samples: Callable[[], Iterable[Sample]]) -> None:
        self._sources.append(samples)

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
                name = consul_json_name(sample.name)
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


def router_samples(router: RouterView) -> Iterator[Sample]:
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


def local_samples(local: LocalView) -> Iterator[Sample]:
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


def client_samples(stats: ClientCounts) -> Iterator[Sample]:
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


def _rss_bytes() -> int:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def runtime_samples() -> Iterator[Sample]:
    """Consul's ``consul.runtime.*`` gauges, in Python's terms: asyncio tasks
    stand in for goroutines; RSS for the bytes obtained from the system."""
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a scrape from another thread)
        tasks = 0
    yield Sample(
        "consul_runtime_num_goroutines", "gauge", "asyncio tasks alive in the agent", tasks
    )
    yield Sample("consul_runtime_sys_bytes", "gauge", "Resident set size in bytes", _rss_bytes())
    yield Sample("consul_runtime_open_fds", "gauge", "Open file descriptors", _open_fds())


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
