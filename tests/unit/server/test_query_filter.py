"""Prepared-query instance filters: tags (``!tag``), metadata, health, ignored checks."""

from __future__ import annotations

from agent.server.query_endpoint import filter_entries
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.query.v1 import query_pb2 as qypb


def e(
    name: str, tags: list[str], *statuses: int, meta: dict[str, str] | None = None
) -> pb.ServiceEntry:
    return pb.ServiceEntry(
        node=pb.Node(name=name, meta=meta or {}),
        service=pb.Service(name="web", tags=tags),
        checks=[pb.HealthCheck(check_id=f"c{i}", status=s) for i, s in enumerate(statuses)],
    )


P, W, C, M = (
    pb.HEALTH_STATUS_PASSING,
    pb.HEALTH_STATUS_WARNING,
    pb.HEALTH_STATUS_CRITICAL,
    pb.HEALTH_STATUS_MAINTENANCE,
)


def names(entries: list[pb.ServiceEntry]) -> list[str]:
    return [x.node.name for x in entries]


def test_health() -> None:
    rows = [e("p", [], P), e("w", [], W), e("c", [], P, C), e("m", [], M)]
    assert names(filter_entries(rows, qypb.ServiceQuery(service="web"))) == ["p", "w"]
    only = qypb.ServiceQuery(service="web", only_passing=True)
    assert names(filter_entries(rows, only)) == ["p"]
    ignoring = qypb.ServiceQuery(service="web", ignore_check_ids=["c1"])
    assert names(filter_entries(rows, ignoring)) == ["p", "w", "c"]


def test_tags_are_case_insensitive_and_negatable() -> None:
    rows = [e("a", ["Primary", "v1"], P), e("b", ["v1"], P), e("c", ["v2"], P)]
    want = qypb.ServiceQuery(service="web", tags=["v1", "!PRIMARY"])
    assert names(filter_entries(rows, want)) == ["b"]


def test_node_meta() -> None:
    rows = [e("a", [], P, meta={"rack": "r1"}), e("b", [], P, meta={"rack": "r2"})]
    want = qypb.ServiceQuery(service="web", node_meta={"rack": "r2"})
    assert names(filter_entries(rows, want)) == ["b"]
