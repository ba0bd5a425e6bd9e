"""An unmodified Consul client (py-consul) against a real client agent's HTTP API."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import consul
import pytest

from tests.support.procs import AgentProcess, Cluster, wait_until


@pytest.fixture
def agent(cluster: Cluster) -> AgentProcess:
    dev = cluster.server("dev", "--dev")
    return cluster.client("c1", "--retry-join", dev.rpc_addr)


def client_for(agent: AgentProcess) -> consul.Consul:
    host, port = agent.http_addr.split(":")
    return consul.Consul(host=host, port=int(port))


def http(agent: AgentProcess, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ttl_check_lifecycle_with_py_consul(agent: AgentProcess) -> None:
    c = client_for(agent)
    c.agent.service.register(
        "api", service_id="api-1", port=8080, tags=["v1"], check=consul.Check.ttl("2s")
    )

    def statuses() -> list[str]:
        _, entries = c.health.service("api")
        return [
            chk["Status"]
            for e in entries
            for chk in e["Checks"]
            if chk["CheckID"] == "service:api-1"
        ]

    wait_until(lambda: statuses() == ["critical"], what="starts critical")
    c.agent.check.ttl_pass("service:api-1", "all good")
    wait_until(lambda: len(c.health.service("api", passing=True)[1]) == 1, what="passing")
    _, entries = c.health.service("api", passing=True)
    assert entries[0]["Service"]["ID"] == "api-1" and entries[0]["Service"]["Tags"] == ["v1"]
    wait_until(lambda: statuses() == ["critical"], timeout=15, what="TTL expired")
    assert c.health.service("api", passing=True)[1] == []
    assert "api-1" in c.agent.services()
    c.agent.service.deregister("api-1")
    wait_until(lambda: c.catalog.service("api")[1] == [], what="deregistered")


def test_kv_with_py_consul_including_blocking_get(agent: AgentProcess) -> None:
    c = client_for(agent)
    assert c.kv.put("app/a", "1") is True
    assert c.kv.put("app/b", "2", flags=42) is True
    index, item = c.kv.get("app/a")
    assert item["Value"] == b"1" and int(index) > 0
    assert c.kv.put("app/a", "x", cas=item["ModifyIndex"] + 1000) is False  # CAS lost: 200 false
    assert c.kv.put("app/a", "3", cas=item["ModifyIndex"]) is True
    _, items = c.kv.get("app/", recurse=True)
    assert [(i["Key"], i["Value"]) for i in items] == [("app/a", b"3"), ("app/b", b"2")]
    assert items[1]["Flags"] == 42
    _, keys = c.kv.get("app/", keys=True)
    assert keys == ["app/a", "app/b"]

    index, _ = c.kv.get("app/a")
    index = int(index)
    woke: dict[str, object] = {}

    def block() -> None:
        t0 = time.monotonic()
        new_index, value = c.kv.get("app/a", index=index, wait="20s")
        woke.update(index=int(new_index), value=value["Value"], elapsed=time.monotonic() - t0)

    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.3)
    c.kv.put("app/a", "4")
    t.join(30)
    assert woke["value"] == b"4" and woke["index"] > index and woke["elapsed"] < 10  # type: ignore[operator]
    assert c.kv.delete("app/", recurse=True) is True
    assert c.kv.get("app/a")[1] is None


def test_bad_input_is_400_and_agent_keeps_serving(agent: AgentProcess) -> None:
    cases = [
        ("PUT", "/v1/agent/service/register", b"{not json"),
        ("PUT", "/v1/agent/service/register", json.dumps({"Name": "x", "Port": "abc"}).encode()),
        (
            "PUT",
            "/v1/agent/service/register",
            json.dumps(
                {"Name": "x", "Check": {"DockerContainerID": "c", "Interval": "1s"}}
            ).encode(),
        ),
        (
            "PUT",
            "/v1/agent/service/register",
            json.dumps({"Name": "x", "Check": {"Args": ["true"], "Interval": "1s"}}).encode(),
        ),
        ("PUT", "/v1/agent/check/register", json.dumps({"Name": "c"}).encode()),
        ("PUT", "/v1/kv/big", b"x" * (512 * 1024 + 1)),
        ("GET", "/v1/health/state/sideways", None),
        ("GET", "/v1/catalog/services?filter=" + urllib.request.quote("ServiceName =="), None),
    ]
    for method, path, body in cases:
        status, text = http(agent, method, path, body)
        assert status in (400, 413), (path, status, text)
        assert text and "Traceback" not in text, (path, text)
    status, text = http(agent, "PUT", "/v1/agent/service/register", b"x" * (2 * 1024 * 1024))
    assert status == 413
    assert http(agent, "GET", "/v1/agent/self")[0] == 200


def test_metrics_and_self(agent: AgentProcess) -> None:
    c = client_for(agent)
    me = c.agent.self()
    assert me["Config"]["NodeName"] == "c1" and me["Config"]["Datacenter"] == "dc1"
    assert me["Config"]["Version"].count(".") == 2
    c.kv.put("m", "1")
    status, text = http(agent, "GET", "/v1/agent/metrics?format=prometheus")
    assert status == 200
    assert (
        "consul_client_rpc_total" in text and 'consul_router_servers{datacenter="dc1"} 1.0' in text
    )
    assert "consul_client_rpc_exceeded_total" in text and "consul_members" in text
    status, text = http(agent, "GET", "/v1/agent/metrics")
    assert status == 200 and "Counters" in json.loads(text)


def test_sessions_and_locks_over_http(agent: AgentProcess) -> None:
    c = client_for(agent)
    wait_until(
        lambda: any(chk["CheckID"] == "serfHealth" for chk in c.health.node("c1")[1]),
        what="serfHealth",
    )
    sid = c.session.create(name="lock", ttl=30)
    assert c.kv.put("locks/leader", "me", acquire=sid) is True
    assert c.kv.get("locks/leader")[1]["Session"] == sid
    assert c.session.destroy(sid) is True
    assert "Session" not in c.kv.get("locks/leader")[1]


def test_node_and_service_maintenance_with_py_consul(agent: AgentProcess) -> None:
    c = client_for(agent)
    c.agent.service.register("maint", service_id="maint-1", port=1, check=consul.Check.ttl("60s"))
    c.agent.check.ttl_pass("service:maint-1")
    wait_until(lambda: len(c.health.service("maint", passing=True)[1]) == 1, what="passing")
    c.agent.service.maintenance("maint-1", True, "deploying")
    wait_until(lambda: c.health.service("maint", passing=True)[1] == [], what="service maintenance")
    _, checks = c.health.checks("maint")
    maint = [chk for chk in checks if chk["CheckID"] == "_service_maintenance:maint-1"]
    assert maint and maint[0]["Status"] == "critical" and maint[0]["Notes"] == "deploying"
    c.agent.service.maintenance("maint-1", False)
    wait_until(lambda: len(c.health.service("maint", passing=True)[1]) == 1, what="back")
    c.agent.maintenance(True, "host work")
    wait_until(lambda: c.health.service("maint", passing=True)[1] == [], what="node maintenance")
    c.agent.maintenance(False)
    wait_until(lambda: len(c.health.service("maint", passing=True)[1]) == 1, what="node back")


def test_json_logs(cluster: Cluster) -> None:
    dev = cluster.server("jsonlog", "--dev", "--log-json", "--log-level", "INFO")
    wait_until(lambda: "server agent started" in dev.log_path.read_text(), what="started line")
    records = [
        json.loads(line) for line in dev.log_path.read_text().splitlines() if line.startswith("{")
    ]
    started = [r for r in records if "server agent started" in r["@message"]]
    assert started and started[0]["@level"] == "info" and started[0]["@module"]
