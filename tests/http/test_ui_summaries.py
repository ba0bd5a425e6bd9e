"""Consul's UI summaries (agent.http.ui_endpoints), computed from hand-made node dumps."""

from __future__ import annotations

from agent.http.ui_endpoints import NodeDump, catalog_overview, service_summaries
from generated.consul.common.v1 import types_pb2 as pb

PASSING, WARNING, CRITICAL = (
    pb.HEALTH_STATUS_PASSING,
    pb.HEALTH_STATUS_WARNING,
    pb.HEALTH_STATUS_CRITICAL,
)


def check(node: str, check_id: str, status: int, service_id: str = "") -> pb.HealthCheck:
    return pb.HealthCheck(
        node=node, check_id=check_id, name=check_id, status=status, service_id=service_id
    )


def dump() -> list[NodeDump]:
    n1 = NodeDump(
        pb.Node(name="n1", address="10.0.0.1", datacenter="dc1"),
        (
            pb.Service(id="web-1", name="web", tags=["v2", "http"]),
            pb.Service(id="web-2", name="web", tags=["v1"]),
            pb.Service(id="db-1", name="db", kind="connect-proxy"),
        ),
        (
            check("n1", "serfHealth", PASSING),
            check("n1", "web-1", CRITICAL, "web-1"),
            check("n1", "web-2", WARNING, "web-2"),
        ),
    )
    n2 = NodeDump(
        pb.Node(name="n2", address="10.0.0.2", datacenter="dc1"),
        (pb.Service(id="web-1", name="web", tags=["v1"]),),
        (check("n2", "serfHealth", WARNING),),
    )
    return [n2, n1]


def test_service_summaries_count_each_check_once_and_merge_tags() -> None:
    db, web = service_summaries(dump(), "dc1")
    assert (db["Name"], db["Kind"], db["InstanceCount"]) == ("db", "connect-proxy", 1)
    assert web["Name"] == "web" and "Kind" not in web  # omitempty, as Consul
    assert web["Nodes"] == ["n1", "n2"] and web["Tags"] == ["http", "v1", "v2"]
    assert web["InstanceCount"] == 3
    # n1's serfHealth counts once although two web instances run on n1.
    assert (web["ChecksPassing"], web["ChecksWarning"], web["ChecksCritical"]) == (1, 2, 1)


def test_catalog_overview_takes_the_worst_check_per_node_and_instance() -> None:
    overview = catalog_overview(dump())
    assert overview["Nodes"] == [{"Total": 2, "Passing": 1, "Warning": 1, "Critical": 0}]
    web = next(s for s in overview["Services"] if s["Name"] == "web")
    # Instance health ignores node checks (Consul's getCatalogOverview).
    assert web == {"Name": "web", "Total": 3, "Passing": 1, "Warning": 1, "Critical": 1}
    serf = next(c for c in overview["Checks"] if c["Name"] == "serfHealth")
    assert (serf["Total"], serf["Passing"], serf["Warning"]) == (2, 1, 1)
    assert catalog_overview([]) == {"Nodes": [], "Services": [], "Checks": []}
