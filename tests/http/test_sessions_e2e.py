"""py-consul session, lock, event and txn calls against real agents (dev server, client)."""

from __future__ import annotations

import base64
import threading
import time

import consul
import pytest

from tests.support.procs import AgentProcess, Cluster, wait_until


@pytest.fixture
def agent(cluster: Cluster) -> AgentProcess:
    dev = cluster.server("dev", "--dev")
    return cluster.client("c1", "--retry-join", dev.rpc_addr)


def client_for(agent: AgentProcess) -> consul.Consul:
    host, port = agent.http_addr.split(":")
    c = consul.Consul(host=host, port=int(port), connections_timeout=10)
    wait_until(lambda: c.catalog.node("c1")[1] is not None, what="c1 in the catalog")
    return c


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.timeout(90)
def test_sessions_and_locks(agent: AgentProcess) -> None:
    c = client_for(agent)
    a = c.session.create(name="a", ttl=10, lock_delay=0)
    b = c.session.create(name="b", behavior="delete", lock_delay=0)
    _, session = c.session.info(a)
    assert session is not None
    assert (session["Node"], session["TTL"], session["NodeChecks"]) == ("c1", "10s", ["serfHealth"])
    assert c.session.info("00000000-0000-0000-0000-000000000000")[1] is None
    assert {s["ID"] for s in c.session.node("c1")[1]} == {a, b}
    assert c.session.renew(a)["ID"] == a
    with pytest.raises(consul.NotFound):
        c.session.renew("00000000-0000-0000-0000-000000000000")

    assert c.kv.put("svc/leader", "a", acquire=a) is True
    assert c.kv.put("svc/leader", "b", acquire=b) is False
    assert c.kv.get("svc/leader")[1]["Session"] == a
    assert c.kv.put("svc/leader", "a", release=a) is True
    assert c.kv.put("svc/leader", "b", acquire=b) is True

    # A blocking info wakes when the session goes; its delete behavior takes the key.
    index, _ = c.session.info(b)
    timer = threading.Timer(0.3, lambda: c.session.destroy(b))
    timer.start()
    started = time.monotonic()
    _, gone = c.session.info(b, index=index, wait="10s")
    timer.join()
    assert gone is None and time.monotonic() - started < 9
    assert c.kv.get("svc/leader")[1] is None


@pytest.mark.timeout(90)
def test_events_and_txn(agent: AgentProcess) -> None:
    c = client_for(agent)
    fired = c.event.fire("deploy", "v1")
    assert (fired["Name"], base64.b64decode(fired["Payload"])) == ("deploy", b"v1")
    c.event.fire("elsewhere", node="^not-this-node$")
    index, events = c.event.list()
    assert [e["Name"] for e in events] == ["deploy"]
    timer = threading.Timer(0.3, lambda: c.event.fire("deploy", "v2"))
    timer.start()
    _, events = c.event.list(name="deploy", index=index, wait="10s")
    timer.join()
    assert [e["Payload"] for e in events] == [b"v1", b"v2"]

    result = c.txn.put(
        [
            {"KV": {"Verb": "set", "Key": "t/a", "Value": _b64("1")}},
            {"KV": {"Verb": "set", "Key": "t/b", "Value": _b64("2"), "Flags": 9}},
        ]
    )
    assert result["Errors"] is None
    modify = result["Results"][0]["KV"]["ModifyIndex"]
    result = c.txn.put(
        [
            {"KV": {"Verb": "get-tree", "Key": "t/"}},
            {"KV": {"Verb": "check-index", "Key": "t/a", "Index": modify}},
        ]
    )
    assert [(r["KV"]["Key"], r["KV"]["Value"]) for r in result["Results"]] == [
        ("t/a", _b64("1")),
        ("t/b", _b64("2")),
    ]
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put(
            [
                {"KV": {"Verb": "set", "Key": "t/c", "Value": _b64("3")}},
                {"KV": {"Verb": "cas", "Key": "t/a", "Value": _b64("x"), "Index": modify + 99}},
            ]
        )
    assert c.kv.get("t/c")[1] is None
    with pytest.raises(consul.ConsulException, match="413"):
        c.txn.put([{"KV": {"Verb": "get", "Key": "t/a"}}] * 65)
