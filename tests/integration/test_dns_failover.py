"""Prepared-query failover to a second datacenter, over HTTP and DNS (real processes)."""

from __future__ import annotations

from tests.integration.test_dns import http, register, short
from tests.support.procs import Cluster, wait_until

FAST = ["--suspect-timeout", "2s", "--reconnect-timeout", "30s"]


def test_failover_to_a_second_datacenter(cluster: Cluster) -> None:
    a1 = cluster.server("a1", "--datacenter", "dca", *FAST)
    b1 = cluster.server("b1", "--datacenter", "dcb", *FAST, "--retry-join-wan", a1.rpc_addr)
    client = cluster.client("c1", "--datacenter", "dca", "--retry-join", a1.rpc_addr, *FAST)
    wait_until(
        lambda: http(client, "GET", "/v1/catalog/datacenters")[1] == ["dca", "dcb"],
        timeout=30,
        what="both datacenters known",
    )
    register(a1, "a-node", "10.10.0.1", 80, "critical", service="api")
    register(b1, "b-node", "10.20.0.1", 80, "passing", service="api")
    for failover in ({"NearestN": 1}, {"Datacenters": ["dc-unknown", "dcb"]}):
        code, created = http(
            client,
            "POST",
            "/v1/query",
            {
                "Name": f"api-{len(failover)}{next(iter(failover))}",
                "Service": {"Service": "api", "Failover": failover},
            },
        )
        assert code == 200, created
        name = f"api-{len(failover)}{next(iter(failover))}".lower()
        code, result = http(client, "GET", f"/v1/query/{created['ID']}/execute")
        assert code == 200, result
        assert result["Datacenter"] == "dcb" and result["Failovers"] == 1
        assert [n["Node"]["Node"] for n in result["Nodes"]] == ["b-node"]
        assert short(client, f"{name}.query.consul") == ["10.20.0.1"]
        srv = short(client, f"{name}.query.consul", "SRV")
        assert srv == ["1 1 80 b-node.node.dcb.consul."]
    # Without failover the query finds nothing: NXDOMAIN, and an empty HTTP answer.
    code, _ = http(
        client, "POST", "/v1/query", {"Name": "api-local", "Service": {"Service": "api"}}
    )
    assert code == 200
    code, result = http(client, "GET", "/v1/query/api-local/execute")
    assert code == 200 and result["Nodes"] == [] and result["Failovers"] == 0
    assert short(client, "api-local.query.consul") == []
    # Healthy at home again: the local datacenter answers, no failover.
    register(a1, "a-node", "10.10.0.1", 80, "passing", service="api")
    wait_until(
        lambda: short(client, "api-1nearestn.query.consul") == ["10.10.0.1"], what="local again"
    )
    code, result = http(client, "GET", "/v1/query/api-1nearestn/execute")
    assert result["Datacenter"] == "dca" and result["Failovers"] == 0
    # The service lookup in the other datacenter by name, as dig sees it.
    assert short(client, "api.service.dcb.consul") == ["10.20.0.1"]
