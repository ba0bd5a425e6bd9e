"""``/v1/operator`` and ``consul-grpc operator`` against real processes.

One module-wide set-up: a 3-member etcd cluster, two consul-grpc servers on
it (each given the client endpoints of members 0 and 1, so member 2 can be
removed without pulling a store from under them) and a client agent. The tests run in file
order on it: list-peers, leadership transfer, autopilot and usage, then peer
removal last. A dev agent (memory store) answers its single-server shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import consul
import pytest

from tests.support.etcd import EtcdCluster, etcd_binary
from tests.support.procs import ROOT, AgentProcess, Cluster, wait_until

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed")

CLI = [sys.executable, "-m", "agent.cli"]
T = 30.0


def call(agent: AgentProcess, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """(status, decoded JSON or text) of one HTTP call; errors are answers, not raises."""
    data = None if body is None else json.dumps(body).encode()
    req = Request(f"http://{agent.http_addr}{path}", method=method, data=data)
    try:
        with urlopen(req, timeout=T) as resp:
            status, raw = resp.status, resp.read()
    except HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw.decode()


def cli(agent: AgentProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.http_addr}
    out = subprocess.run(
        [*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )
    assert "Traceback" not in out.stderr, out.stderr
    return out


class Env:
    def __init__(self, etcd: EtcdCluster, agents: Cluster) -> None:
        self.etcd = etcd
        self.agents = agents
        self.s1, self.s2, self.client = agents.agents

    def peers(self) -> list[dict[str, Any]]:
        status, conf = call(self.s1, "/v1/operator/raft/configuration")
        assert status == 200, conf
        servers: list[dict[str, Any]] = conf["Servers"]
        return servers

    def leader(self) -> dict[str, Any] | None:
        leaders = [p for p in self.peers() if p["Leader"]]
        return leaders[0] if len(leaders) == 1 else None


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    etcd = EtcdCluster(3)
    etcd.start_sync()
    agents = Cluster(tmp_path_factory.mktemp("raft-logs"))
    failed_before = request.session.testsfailed
    try:
        dc = "dc" + uuid.uuid4().hex[:8]
        endpoints = ",".join(etcd.endpoints[:2])
        base = ["--store", "etcd", "--etcd-endpoints", endpoints, "--datacenter", dc]
        agents.server("op-s1", *base)
        s2 = agents.server("op-s2", *base)
        agents.client("op-c1", "--retry-join", s2.rpc_addr, "--datacenter", dc)
        e = Env(etcd, agents)
        wait_until(lambda: e.leader() is not None, T, what="an etcd leader in the configuration")
        yield e
    finally:
        agents.stop_all()
        if request.session.testsfailed > failed_before:
            print("\n" + agents.dump_logs() + "\n" + etcd.logs())
        etcd.stop_sync()


def test_list_peers_shows_the_etcd_members_and_one_leader(env: Env) -> None:
    status, conf = call(env.client, "/v1/operator/raft/configuration")  # forwarded
    assert status == 200
    servers = conf["Servers"]
    assert sorted(s["Node"] for s in servers) == ["etcd-0", "etcd-1", "etcd-2"]
    assert sum(s["Leader"] for s in servers) == 1
    assert all(s["Voter"] and s["ProtocolVersion"] == "3" for s in servers)
    assert {s["Address"] for s in servers} == {f"127.0.0.1:{m.peer_port}" for m in env.etcd.members}
    assert conf["Index"] >= 1
    assert all(len(s["ID"]) == 16 for s in servers)
    # The consul-grpc servers beside the peers: both alive, one our leader.
    ours = conf["ConsulServers"]
    assert sorted(s["Node"] for s in ours) == ["op-s1", "op-s2"]
    assert all(s["Status"] == "alive" for s in ours)
    wait_until(
        lambda: sum(s["Leader"] for s in call(env.s1, "/v1/operator/raft/configuration")[1][
            "ConsulServers"]) == 1,
        T,
        what="one consul-grpc leader",
    )  # fmt: skip

    out = cli(env.s1, "operator", "raft", "list-peers")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:6] == ["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
    assert len(lines) == 4
    assert sum(" leader " in line for line in lines[1:]) == 1
    assert sum(" follower " in line for line in lines[1:]) == 2


def test_transfer_leader_moves_the_etcd_leader(env: Env) -> None:
    before = env.leader()
    assert before is not None
    status, answer = call(env.s1, "/v1/operator/raft/transfer-leader", "POST")
    assert (status, answer) == (200, {"Success": True})
    wait_until(
        lambda: (now := env.leader()) is not None and now["ID"] != before["ID"],
        T,
        what="the etcd leader to move",
    )
    # To a named member, through the CLI: etcd-0, unless it leads already.
    current = env.leader()
    assert current is not None
    target = next(p for p in env.peers() if not p["Leader"])
    out = cli(env.s2, "operator", "raft", "transfer-leader", "-id", target["ID"])
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert out.stdout.strip() == "Success"
    wait_until(
        lambda: (now := env.leader()) is not None and now["ID"] == target["ID"],
        T,
        what="the named member to lead",
    )
    status, text = call(env.s1, "/v1/operator/raft/transfer-leader?id=00000000000000ff", "POST")
    assert status == 500
    assert text == (
        'cannot transfer leadership: id "00000000000000ff" was not found in the Raft configuration'
    )


def test_autopilot_configuration_cas_round_trip(env: Env) -> None:
    path = "/v1/operator/autopilot/configuration"
    status, conf = call(env.s1, path)
    assert status == 200
    assert conf["CleanupDeadServers"] is True
    assert conf["LastContactThreshold"] == "200ms"
    assert conf["MaxTrailingLogs"] == 250
    assert conf["ServerStabilizationTime"] == "10s"
    assert conf["ModifyIndex"] == 0
    assert call(env.s1, f"{path}?cas=0", "PUT", {**conf, "MaxTrailingLogs": 300}) == (200, True)
    status, written = call(env.s2, path)
    assert written["MaxTrailingLogs"] == 300
    index = written["ModifyIndex"]
    assert index > 0
    # A stale cas changes nothing and answers false.
    assert call(env.s2, f"{path}?cas={index - 1}", "PUT", {**written, "MinQuorum": 5}) == (
        200,
        False,
    )
    assert call(env.s1, path)[1]["MinQuorum"] == 0
    # The CLI reads, changes and writes back with the current index.
    out = cli(env.s2, "operator", "autopilot", "set-config", "-cleanup-dead-servers=false",
              "-last-contact-threshold", "1s")  # fmt: skip
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert out.stdout.strip() == "Configuration updated!"
    out = cli(env.s1, "operator", "autopilot", "get-config")
    assert "CleanupDeadServers = false" in out.stdout
    assert "LastContactThreshold = 1s" in out.stdout
    assert "MaxTrailingLogs = 300" in out.stdout
    assert 'RedundancyZoneTag = ""' in out.stdout
    status, text = call(env.s1, path, "PUT", {"MaxTrailingLogs": "many"})
    assert status == 400 and "Error parsing autopilot config" in text


def test_autopilot_health_state_usage_keyring(env: Env) -> None:
    status, health = call(env.s1, "/v1/operator/autopilot/health")
    assert status == 200, health
    assert health["Healthy"] is True
    assert health["FailureTolerance"] == 1
    assert len(health["Servers"]) == 3
    assert all(s["Healthy"] and s["SerfStatus"] == "alive" for s in health["Servers"])
    status, state = call(env.s2, "/v1/operator/autopilot/state")
    assert status == 200
    assert state["Leader"] in state["Servers"]
    assert sorted(state["Voters"]) == sorted(state["Servers"])
    out = cli(env.s1, "operator", "autopilot", "state")
    assert out.returncode == 0 and "Failure Tolerance:            1" in out.stdout

    reg = {"Node": "usage-node", "Address": "10.1.1.1", "Service": {"Service": "web", "Port": 80}}
    assert call(env.s1, "/v1/catalog/register", "PUT", reg)[0] == 200
    gw = {"Node": "usage-node", "Address": "10.1.1.1",
          "Service": {"Service": "gw", "Kind": "mesh-gateway", "Port": 443}}  # fmt: skip
    assert call(env.s1, "/v1/catalog/register", "PUT", gw)[0] == 200

    def counted() -> dict[str, Any] | None:
        status, usage = call(env.s2, "/v1/operator/usage")
        assert status == 200, usage
        (dc_usage,) = usage["Usage"].values()
        return dc_usage if dc_usage["Nodes"] == 4 else None  # the client's node synced

    dc_usage = wait_until(counted, T, what="the usage count of four nodes")
    # web and gw on usage-node, the consul service on each server.
    assert dc_usage["ServiceInstances"] == 4
    assert dc_usage["Services"] == 3
    assert dc_usage["BillableServiceInstances"] == 1
    assert dc_usage["ConnectServiceInstances"]["mesh-gateway"] == 1
    assert dc_usage["Nodes"] == 4  # usage-node, two servers, the client agent
    out = cli(env.s1, "operator", "usage", "instances")
    assert out.returncode == 0 and "Billable Service Instances Total: 1" in out.stdout

    status, text = call(env.s1, "/v1/operator/keyring")
    assert status == 500
    assert "Keyring is empty (encryption not enabled)" in text
    assert "(LAN) error: 3/3 nodes reported failure" in text  # two servers, one client
    status, text = call(env.s1, "/v1/operator/keyring", "POST", {"Key": "abc"})
    assert status == 500 and "No keyring to modify (encryption not enabled)" in text
    assert call(env.s1, "/v1/operator/segment")[0] == 501


def test_remove_peer(env: Env) -> None:
    status, text = call(env.s1, "/v1/operator/raft/peer?id=nope", "DELETE")
    assert (status, text) == (500, 'id "nope" was not found in the Raft configuration')
    status, text = call(env.s1, "/v1/operator/raft/peer?address=127.0.0.1:1", "DELETE")
    assert (status, text) == (500, 'address "127.0.0.1:1" was not found in the Raft configuration')
    status, text = call(env.s1, "/v1/operator/raft/peer", "DELETE")
    assert status == 400 and text.startswith("Must specify either ?id")
    # etcd-2 (which neither server talks to) dies; first move the lead off it.
    victim = next(p for p in env.peers() if p["Node"] == "etcd-2")
    if victim["Leader"]:
        keep = next(p for p in env.peers() if p["Node"] == "etcd-0")
        assert call(env.s1, f"/v1/operator/raft/transfer-leader?id={keep['ID']}", "POST")[0] == 200
        wait_until(
            lambda: not next(p for p in env.peers() if p["Node"] == "etcd-2")["Leader"],
            T,
            what="etcd-2 to follow",
        )
    # A dead member: the datacenter is unhealthy (429, as Consul), and with two
    # of three members left it tolerates no further failure.
    env.etcd.members[2].kill()

    def unhealthy() -> dict[str, Any] | None:
        status, health = call(env.s1, "/v1/operator/autopilot/health")
        return health if status == 429 else None

    health = wait_until(unhealthy, T, what="a 429 from autopilot health")
    assert health["Healthy"] is False and health["FailureTolerance"] == 0
    dead = next(s for s in health["Servers"] if s["Name"] == "etcd-2")
    assert dead["SerfStatus"] == "failed" and not dead["Healthy"]
    # Consul's use of remove-peer: take the dead peer out of the configuration.
    out = cli(env.s2, "operator", "raft", "remove-peer", "-id", victim["ID"])
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert out.stdout.strip() == f'Removed peer with id "{victim["ID"]}"'
    wait_until(lambda: len(env.peers()) == 2, T, what="two peers left")
    assert "etcd-2" not in {p["Node"] for p in env.peers()}
    status, health = call(env.s2, "/v1/operator/autopilot/health")
    assert status == 200 and health["FailureTolerance"] == 0


def test_dev_agent_is_its_own_single_peer(cluster: Cluster, tmp_path: Path) -> None:
    dev = cluster.server("dev", "--dev")
    status, conf = call(dev, "/v1/operator/raft/configuration")
    assert status == 200
    (me,) = conf["Servers"]
    assert me["Node"] == "dev" and me["Leader"] and me["Voter"]
    assert conf["Index"] == 0  # as a Consul dev agent (py-consul's own suite checks it)
    assert me["Address"] == dev.rpc_addr
    status, text = call(dev, "/v1/operator/raft/transfer-leader", "POST")
    assert (status, text) == (500, "cannot transfer leadership: cannot find peer")
    status, text = call(dev, f"/v1/operator/raft/peer?id={me['ID']}", "DELETE")
    assert status == 500 and text.startswith("need at least one voter in configuration")
    status, text = call(dev, "/v1/operator/raft/peer?id=other", "DELETE")
    assert (status, text) == (500, 'id "other" was not found in the Raft configuration')
    status, health = call(dev, "/v1/operator/autopilot/health")
    assert status == 200 and health["Healthy"] and health["FailureTolerance"] == 0
    out = cli(dev, "operator", "raft", "list-peers")
    assert out.returncode == 0 and " leader " in out.stdout

    # py-consul, unmodified, over the same endpoints.
    host, port = dev.http_addr.rsplit(":", 1)
    c = consul.Consul(host=host, port=int(port), connections_timeout=10)
    assert [s["Node"] for s in c.operator.raft_config()["Servers"]] == ["dev"]
    assert c.operator.update_autopilot_configuration(max_trailing_logs=7, cas=0) is True
    assert c.operator.autopilot_configuration()["MaxTrailingLogs"] == 7
    assert c.operator.autopilot_health()["Healthy"] is True
    usage = c.operator.usage(global_=True)
    assert usage["Usage"]["dc1"]["ServiceInstances"] == 1  # the consul service
    assert usage["Index"] >= 1
    with pytest.raises(consul.ConsulException, match="cannot find peer"):
        c.operator.raft_transfer_leader()
