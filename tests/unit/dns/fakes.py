"""A hand-written DiscoveryReads for the DNS handler's unit tests."""

from __future__ import annotations

import asyncio

from agent.errors import ConsulError, NoPathToDatacenter, NotFound
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.query.v1 import query_pb2 as qypb

PASSING, WARNING, CRITICAL = (
    pb.HEALTH_STATUS_PASSING,
    pb.HEALTH_STATUS_WARNING,
    pb.HEALTH_STATUS_CRITICAL,
)


def entry(
    node: str,
    address: str,
    *,
    service: str = "web",
    port: int = 80,
    status: int = PASSING,
    service_address: str = "",
    tags: tuple[str, ...] = (),
    dc: str = "dc1",
    weights: tuple[int, int] | None = None,
    meta: dict[str, str] | None = None,
) -> pb.ServiceEntry:
    svc = pb.Service(
        id=f"{service}-{node}",
        name=service,
        port=port,
        address=service_address,
        tags=list(tags),
    )
    if weights is not None:
        svc.weights.passing, svc.weights.warning = weights
    return pb.ServiceEntry(
        node=pb.Node(name=node, address=address, datacenter=dc, meta=meta or {}),
        service=svc,
        checks=[pb.HealthCheck(node=node, check_id="c", status=status, service_name=service)],
    )


class FakeReads:
    """Services, nodes and prepared queries held in dicts; ``fail`` raises on every read."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], list[pb.ServiceEntry]] = {}
        self.node_by_name: dict[tuple[str, str], pb.Node] = {}
        self.queries: dict[str, qypb.ExecuteResponse] = {}
        self.dcs = ["dc1", "dc2"]
        self.fail: ConsulError | None = None
        self.gate: dict[str, asyncio.Event] = {}
        self.stale_flags: list[bool] = []

    def add(self, e: pb.ServiceEntry) -> None:
        self.services.setdefault((e.node.datacenter, e.service.name), []).append(e)
        self.node_by_name[(e.node.datacenter, e.node.name)] = e.node

    def _check(self, dc: str) -> None:
        if self.fail is not None:
            raise self.fail
        if dc not in self.dcs:
            raise NoPathToDatacenter(f"No path to datacenter {dc!r}")

    async def service_nodes(
        self, datacenter: str, service: str, tag: str, *, stale: bool
    ) -> list[pb.ServiceEntry]:
        self.stale_flags.append(stale)
        if service in self.gate:
            await self.gate[service].wait()
        self._check(datacenter)
        out = list(self.services.get((datacenter, service), []))
        if tag:
            out = [e for e in out if tag in e.service.tags]
        return out

    async def node(self, datacenter: str, name: str, *, stale: bool) -> pb.Node | None:
        self._check(datacenter)
        return self.node_by_name.get((datacenter, name))

    async def nodes(self, datacenter: str, *, stale: bool) -> list[pb.Node]:
        self._check(datacenter)
        return [n for (dc, _), n in self.node_by_name.items() if dc == datacenter]

    async def datacenters(self) -> list[str]:
        return list(self.dcs)

    async def execute_query(
        self, datacenter: str, name: str, source: qypb.QuerySource, *, stale: bool
    ) -> qypb.ExecuteResponse:
        self._check(datacenter)
        if name not in self.queries:
            raise NotFound("Query not found")
        return self.queries[name]
