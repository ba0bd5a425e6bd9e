"""Issue 9 regressions through Consul's HTTP API, against a real dev agent process.

Bug 1: a recursive delete over more keys, and a node deregistration with more
services, than one store transaction takes (65 keys and 70 services were
enough for a 400 ``too many operations in a transaction``). Bug 2: a lock in
``/v1/txn`` ignored the lock-delay that a KV acquire honours.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import consul
import pytest

from tests.support.procs import AgentProcess, Cluster, wait_until


@pytest.fixture
def dev(cluster: Cluster) -> AgentProcess:
    return cluster.server("dev", "--dev")


def client_for(agent: AgentProcess) -> consul.Consul:
    host, port = agent.http_addr.split(":")
    return consul.Consul(host=host, port=int(port), connections_timeout=10)


@pytest.mark.timeout(90)
def test_recursive_delete_of_70_keys_over_http_regression(dev: AgentProcess) -> None:
    c = client_for(dev)
    for n in range(70):
        assert c.kv.put(f"many/{n:02}", "v") is True
    assert c.kv.put("manyother", "stays") is True
    assert c.kv.delete("many/", recurse=True) is True  # was: 400
    assert c.kv.get("many/", recurse=True)[1] is None
    assert c.kv.get("manyother")[1]["Value"] == b"stays"


@pytest.mark.timeout(90)
def test_deregister_a_node_with_70_services_over_http_regression(dev: AgentProcess) -> None:
    c = client_for(dev)
    for n in range(70):
        assert c.catalog.register("big", "10.0.0.9", service={"ID": f"s{n}", "Service": f"svc{n}"})
    assert len(c.catalog.node("big")[1]["Services"]) == 70
    assert c.catalog.deregister("big") is True  # was: 400
    assert c.catalog.node("big")[1] is None
    assert c.catalog.service("svc42")[1] == []


@pytest.mark.timeout(90)
def test_txn_lock_honours_lock_delay_over_http_regression(dev: AgentProcess) -> None:
    c = client_for(dev)
    node = c.agent.self()["Config"]["NodeName"]

    def serf_passing() -> bool:
        return any(
            chk["CheckID"] == "serfHealth" and chk["Status"] == "passing"
            for chk in c.health.node(node)[1]
        )

    wait_until(serf_passing, what="the dev node's serfHealth passing")
    first = c.session.create(lock_delay=15)
    assert c.kv.put("k", "a", acquire=first) is True
    c.session.destroy(first)
    other = c.session.create(lock_delay=0)
    assert c.kv.put("k", "b", acquire=other) is False  # in the lock-delay window
    ops = [{"KV": {"Verb": "lock", "Key": "k", "Value": base64.b64encode(b"b").decode(),
                   "Session": other}}]  # fmt: skip
    body = json.dumps(ops).encode()
    req = urllib.request.Request(f"http://{dev.http_addr}/v1/txn", data=body, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 409  # was: 200, the lock taken
    answer = json.loads(refused.value.read())
    assert answer["Errors"] == [{"OpIndex": 0, "What": 'failed to lock key "k" due to lock delay'}]
    assert c.kv.get("k")[1]["Value"] == b"a" and c.kv.get("k")[1].get("Session") is None


@pytest.mark.timeout(90)
def test_kv_prefix_larger_than_4_mib_through_a_client_agent_regression(
    dev: AgentProcess, cluster: Cluster
) -> None:
    """Issue 16: a 4.5 MB KV answer was over gRPC's 4 MiB receive limit at a client
    agent (its view's subscription and its forwarded read both failed)."""
    agent = cluster.client("big-reader", "--retry-join", dev.rpc_addr)
    writer, reader = client_for(dev), client_for(agent)
    value = "v" * 400_000
    for n in range(12):  # 4.8 MB
        assert writer.kv.put(f"huge/{n:02}", value) is True
    index, pairs = reader.kv.get("huge/", recurse=True)
    assert pairs is not None and len(pairs) == 12
    assert all(p["Value"] == value.encode() for p in pairs)
    assert writer.kv.put("huge/zz", "last") is True
    _, pairs = reader.kv.get("huge/", recurse=True, index=index, wait="20s")
    assert pairs is not None and len(pairs) == 13
