"""Operator parity against real agents: config directories and reload, the CLI over HTTP.

Every command runs as ``python -m agent.cli ...`` against real agent processes,
with the agent's address given the way an operator gives it (``-http-addr`` or
``CONSUL_HTTP_ADDR``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

from tests.support.procs import ROOT, AgentProcess, Cluster, wait_until

CLI = [sys.executable, "-m", "agent.cli"]


def run(
    agent: AgentProcess, *args: str, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSUL_HTTP_ADDR": agent.http_addr}
    out = subprocess.run(
        [*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, **kw
    )
    assert "Traceback" not in out.stderr, out.stderr
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def http(agent: AgentProcess, path: str, method: str = "GET") -> Any:
    req = Request(f"http://{agent.http_addr}{path}", method=method)
    with urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body.strip() else None


def catalog_services(agent: AgentProcess) -> set[str]:
    return set(http(agent, "/v1/catalog/services"))


def test_config_dir_services_reload_and_sighup(cluster: Cluster, tmp_path: Path) -> None:
    conf = tmp_path / "consul.d"
    conf.mkdir()
    (conf / "10-web.hcl").write_text(
        """
ports {
  serf_lan = 8301
}
service {
  name = "web"
  port = 8080
  tags = ["v1"]
  check {
    ttl = "30s"
  }
}
service {
  name = "db"
  port = 5432
}
"""
    )
    (conf / "20-api.json").write_text(
        json.dumps({"services": [{"Name": "api", "Port": 9000, "Checks": [{"TTL": "10s"}]}]})
    )
    data = tmp_path / "data"
    dev = cluster.server("dev", "--dev", "-config-dir", str(conf), "--data-dir", str(data))
    wait_until(
        lambda: {"web", "db", "api"} <= catalog_services(dev), what="config services in catalog"
    )
    assert http(dev, "/v1/catalog/service/web")[0]["ServiceTags"] == ["v1"]
    checks = http(dev, "/v1/agent/checks")
    assert {"service:web", "service:api"} <= set(checks)
    log = dev.log_path.read_text()
    assert "10-web.hcl:3: config key ports.serf_lan is accepted" in log

    # Edit the directory: api goes, cache comes, web changes; `reload` applies it.
    (conf / "20-api.json").unlink()
    (conf / "30-cache.hcl").write_text('service {\n  name = "cache"\n  port = 6379\n}\n')
    (conf / "10-web.hcl").write_text('service {\n  name = "web"\n  port = 8081\n}\n')
    out = run(dev, "reload")
    assert out.stdout.strip() == "Configuration reload triggered"
    wait_until(
        lambda: catalog_services(dev) >= {"web", "cache"} and "api" not in catalog_services(dev),
        what="catalog after reload",
    )
    wait_until(lambda: http(dev, "/v1/catalog/service/web")[0]["ServicePort"] == 8081)

    # A broken file: reload fails with file and line, nothing changes.
    (conf / "40-bad.hcl").write_text('datacenter = "dc1"\nflavour = "vanilla"\n')
    bad = run(dev, "reload", check=False)
    assert bad.returncode == 1
    assert "40-bad.hcl:2: invalid config key flavour" in bad.stderr
    assert {"web", "cache"} <= catalog_services(dev)
    (conf / "40-bad.hcl").unlink()

    # SIGHUP reloads too.
    (conf / "30-cache.hcl").unlink()
    assert dev.proc is not None
    dev.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "cache" not in catalog_services(dev), what="catalog after SIGHUP")

    # Config-defined services are not persisted with API registrations (Consul's way).
    state = json.loads((data / "local" / "state.json").read_text())
    assert state["services"] == []


def test_validate(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.hcl").write_text('datacenter = "dc1"\nperformance {\n  raft_multiplier = 1\n}\n')
    (good / "b.json").write_text('{"service": {"name": "web", "port": 80}}')
    out = subprocess.run(
        [*CLI, "validate", str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Configuration is valid!"
    assert "performance.raft_multiplier" in out.stderr  # accepted, with a warning

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.hcl").write_text(
        'datacenter = "dc1"\n\nservice {\n  name = "web"\n  colour = "x"\n}\n'
    )
    out = subprocess.run(
        [*CLI, "validate", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "Config validation failed:" in out.stderr
    assert f"{bad / 'a.hcl'}:5: invalid config key service.colour" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_over_http_against_a_dev_agent(cluster: Cluster, tmp_path: Path) -> None:
    dev = cluster.server("dev", "--dev")
    members = run(dev, "members").stdout.splitlines()
    assert members[0].split() == [
        "Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"
    ]  # fmt: skip
    assert members[1].split()[0:4] == ["dev", dev.rpc_addr, "alive", "server"]
    # Flags as Consul writes them win over the environment.
    env_less = subprocess.run(
        [*CLI, "catalog", "datacenters", "-http-addr", dev.http_addr],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "CONSUL_HTTP_ADDR"},
    )  # fmt: skip
    assert env_less.stdout.strip() == "dc1"
    info = run(dev, "info").stdout
    assert "agent:\n" in info and "\tserver = true\n" in info

    # kv: put, get, export (Consul's base64 format), delete, import back.
    assert run(dev, "kv", "put", "app/a", "one").stdout.strip() == "Success! Data written to: app/a"
    run(dev, "kv", "put", "-flags=42", "app/b", "two")
    assert run(dev, "kv", "get", "app/a").stdout == "one\n"
    assert run(dev, "kv", "get", "app/", "-recurse").stdout == "app/a:one\napp/b:two\n"
    exported = json.loads(run(dev, "kv", "export", "app/").stdout)
    assert exported == [
        {"key": "app/a", "flags": 0, "value": base64.b64encode(b"one").decode()},
        {"key": "app/b", "flags": 42, "value": base64.b64encode(b"two").decode()},
    ]
    assert "Deleted keys with prefix: app/" in run(dev, "kv", "delete", "-recurse", "app/").stdout
    missing = run(dev, "kv", "get", "app/a", check=False)
    assert missing.returncode == 1 and "Error! No key exists at: app/a" in missing.stderr
    dump = tmp_path / "export.json"
    dump.write_text(json.dumps(exported))
    assert "Imported: app/b" in run(dev, "kv", "import", f"@{dump}").stdout
    pair = http(dev, "/v1/kv/app/b")[0]
    assert (base64.b64decode(pair["Value"]), pair["Flags"]) == (b"two", 42)

    # services register/deregister with Consul's definition files, HCL and JSON.
    (tmp_path / "web.hcl").write_text(
        'service {\n  name = "web"\n  port = 80\n  check {\n    ttl = "30s"\n  }\n}\n'
    )
    (tmp_path / "api.json").write_text('{"service": {"name": "api", "id": "api-1", "port": 81}}')
    assert run(dev, "services", "register", str(tmp_path / "web.hcl")).stdout == (
        "Registered service: web\n"
    )
    run(dev, "services", "register", str(tmp_path / "api.json"))
    wait_until(lambda: {"web", "api"} <= catalog_services(dev), what="registered services")
    assert run(dev, "catalog", "services").stdout.split() == ["api", "consul", "web"]
    out = run(dev, "services", "deregister", str(tmp_path / "api.json")).stdout
    assert out == "Deregistered service: api-1\n"
    wait_until(lambda: "api" not in catalog_services(dev), what="api deregistered")
    run(dev, "services", "register", "-name", "flagged", "-port", "9", "-tag", "t1")
    wait_until(lambda: "flagged" in catalog_services(dev), what="service from flags")
    assert http(dev, "/v1/catalog/service/flagged")[0]["ServiceTags"] == ["t1"]

    # maint, event, force-leave of an unknown node.
    assert run(dev, "maint", "-enable", "-reason", "upgrade").stdout.strip() == (
        "Node entered maintenance mode"
    )
    assert "Reason: upgrade" in run(dev, "maint").stdout
    run(dev, "maint", "-disable")
    fired = run(dev, "event", "-name", "deploy", "v2").stdout
    assert fired.startswith("Event ID: ")
    gone = run(dev, "force-leave", "nobody", check=False)
    assert gone.returncode == 1
    assert "No node found with name 'nobody'" in gone.stderr

    # watch: without a handler, print once and exit; with one, feed it JSON on stdin.
    run(dev, "kv", "put", "w/k", "v1")
    once = json.loads(run(dev, "watch", "-type", "key", "-key", "w/k").stdout)
    assert base64.b64decode(once["Value"]) == b"v1"
    sink = tmp_path / "handler-out"
    watcher = subprocess.Popen(
        [*CLI, "watch", "-type", "keyprefix", "-prefix", "w/", "-count", "2",
         "-http-addr", dev.http_addr, f"cat >> {sink}; echo >> {sink}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: sink.exists() and sink.read_text().strip(), what="first handler run")
        run(dev, "kv", "put", "w/k2", "v2")
        assert watcher.wait(30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    runs = [json.loads(chunk) for chunk in sink.read_text().split("\n\n") if chunk.strip()]
    assert [[p["Key"] for p in r] for r in runs] == [["w/k"], ["w/k", "w/k2"]]


def test_monitor_streams_logs(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev")
    bad = run(dev, "monitor", "-log-level", "loud", check=False)
    assert bad.returncode == 1 and "Unknown log level: loud" in bad.stderr
    env = {**os.environ, "CONSUL_HTTP_ADDR": dev.http_addr}
    mon = subprocess.Popen(
        [*CLI, "monitor", "-log-level", "debug"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert mon.stdout is not None
        first = mon.stdout.readline()
        assert "monitor attached" in first
        run(dev, "kv", "put", "mon/x", "1")
        for _ in range(200):  # bounded: lines until the request we made shows up
            line = mon.stdout.readline()
            if "path=/v1/kv/mon/x" in line:
                break
        else:
            raise AssertionError("kv request never showed in the monitor")
    finally:
        mon.send_signal(signal.SIGINT)
        # Drain while it stops: a debug monitor writing to a pipe nobody reads
        # blocks in print() once the pipe is full, and never sees the signal.
        mon.communicate(timeout=10)


def test_unjoined_client_is_joined_later_then_force_left(cluster: Cluster) -> None:
    server = cluster.server("srv", "--dev", "--suspect-timeout", "1s")
    client = cluster.client("cli", "--suspect-timeout", "1s", wait=False)
    client.wait_ready()
    # No servers yet: the local API answers, reads say so.
    self_ = http(client, "/v1/agent/self")
    assert self_["Config"]["NodeName"] == "cli"
    err = run(client, "catalog", "services", check=False)
    assert err.returncode == 1 and "No known Consul servers" in err.stderr

    out = run(client, "join", server.rpc_addr)
    assert out.stdout.strip() == "Successfully joined cluster by contacting 1 nodes."
    wait_until(lambda: "consul" in catalog_services(client), what="client reads via the server")
    wait_until(lambda: "cli" in run(server, "members").stdout, what="client a member on the server")
    failed = run(client, "join", "127.0.0.1:1", check=False)
    assert failed.returncode == 1 and "Failed to join any nodes." in failed.stderr

    # force-leave -prune: the killed client is gone from the member list at once.
    client.kill()
    wait_until(
        lambda: any(
            line.split()[:3] == ["cli", client.grpc_addr, "failed"]
            for line in run(server, "members").stdout.splitlines()
        ),
        what="client failed",
    )
    assert run(server, "force-leave", "-prune", "cli").stdout == ""
    wait_until(lambda: "cli" not in run(server, "members").stdout, what="client pruned")


def _lock_children(
    dev: AgentProcess, tmp_path: Path, n: int, names: list[str]
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "CONSUL_HTTP_ADDR": dev.http_addr}
    procs = []
    for name in names:
        # The child marks that it holds a slot, then holds it until the test releases it.
        child = (
            f"touch {tmp_path}/held-{name}; i=0; "
            f"while [ ! -f {tmp_path}/release ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
        )
        args = [*CLI, "lock", *(["-n", str(n)] if n > 1 else []), "jobs/nightly", child]
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True))
    return procs


def _held(tmp_path: Path) -> list[str]:
    return sorted(p.name.removeprefix("held-") for p in tmp_path.glob("held-*"))


def _sessions(dev: AgentProcess) -> int:
    return len(http(dev, "/v1/session/list"))


def test_lock_two_processes_contend(cluster: Cluster, tmp_path: Path) -> None:
    dev = cluster.server("dev", "--dev")
    procs = _lock_children(dev, tmp_path, 1, ["a", "b"])
    try:
        wait_until(lambda: len(_held(tmp_path)) == 1, what="one holder")
        wait_until(lambda: _sessions(dev) == 2, what="the other contending with its session")
        assert len(_held(tmp_path)) == 1  # the second waits while the first holds
        pair = http(dev, "/v1/kv/jobs/nightly/.lock")[0]
        assert pair["Session"] and pair["Flags"] == 0x2DDCCBC058A50C18
        (tmp_path / "release").touch()
        assert [p.wait(60) for p in procs] == [0, 0]
        assert _held(tmp_path) == ["a", "b"]
        wait_until(lambda: _sessions(dev) == 0, what="sessions destroyed")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_semaphore_admits_n_holders(cluster: Cluster, tmp_path: Path) -> None:
    dev = cluster.server("dev", "--dev")
    procs = _lock_children(dev, tmp_path, 2, ["a", "b", "c"])
    try:
        wait_until(lambda: len(_held(tmp_path)) == 2, what="two holders")
        wait_until(lambda: _sessions(dev) == 3, what="the third contending")
        wait_until(
            lambda: len(http(dev, "/v1/kv/jobs/nightly/?recurse")) == 4,
            what="three contender keys and the lock",
        )
        assert len(_held(tmp_path)) == 2
        lock = http(dev, "/v1/kv/jobs/nightly/.lock")[0]
        doc = json.loads(base64.b64decode(lock["Value"]))
        assert doc["Limit"] == 2 and len(doc["Holders"]) == 2
        (tmp_path / "release").touch()
        assert [p.wait(60) for p in procs] == [0, 0, 0]
        assert _held(tmp_path) == ["a", "b", "c"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_wan_join_and_a_client_library(cluster: Cluster) -> None:
    import consul

    dc1 = cluster.server("s1", "--dev", "--datacenter", "dc1")
    dc2 = cluster.server("s2", "--dev", "--datacenter", "dc2")
    out = run(dc1, "join", "-wan", dc2.rpc_addr)
    assert out.stdout.strip() == "Successfully joined cluster by contacting 1 nodes."
    wait_until(
        lambda: run(dc1, "catalog", "datacenters").stdout.split() == ["dc1", "dc2"],
        what="dc2 known to dc1",
    )
    assert run(dc1, "catalog", "nodes", "-datacenter", "dc2").stdout.split()[4] == "s2"

    # An unmodified client library's operator calls.
    host, _, port = dc1.http_addr.rpartition(":")
    c = consul.Consul(host=host, port=int(port))
    assert c.agent.reload() is True
    assert c.agent.join(dc1.rpc_addr) is True
    try:
        c.agent.force_leave("nobody")
    except consul.ConsulException as exc:
        assert "No node found with name 'nobody'" in str(exc)
    else:
        raise AssertionError("force-leave of an unknown node succeeded")


def test_lock_lost_kills_the_child(cluster: Cluster, tmp_path: Path) -> None:
    dev = cluster.server("dev", "--dev")
    procs = _lock_children(dev, tmp_path, 1, ["a"])
    try:
        wait_until(lambda: _held(tmp_path) == ["a"], what="holder")
        (session,) = [s["ID"] for s in http(dev, "/v1/session/list")]
        http(dev, f"/v1/session/destroy/{session}", method="PUT")
        assert procs[0].wait(60) == 1  # the child was terminated; release was never touched
        assert procs[0].stderr is not None
        assert "Lock lost, killing child" in procs[0].stderr.read()
        assert not (tmp_path / "release").exists()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_snapshot_and_config_commands(cluster: Cluster, tmp_path: Path) -> None:
    """``snapshot save|inspect|restore`` and ``config write|read|list|delete``
    as a Consul operator types them, against real dev agents."""
    a = cluster.server("snapcli-a", "--dev")
    run(a, "kv", "put", "app/one", "1")
    run(a, "kv", "put", "app/two", "2")
    hcl = tmp_path / "web.hcl"
    hcl.write_text('kind = "service-defaults"\nname = "web"\nprotocol = "http"\n'
                   'meta { owner_team = "a" }\n')  # fmt: skip
    assert run(a, "config", "write", str(hcl)).stdout.strip() == (
        "Config entry written: service-defaults/web"
    )
    read = json.loads(run(a, "config", "read", "-kind", "service-defaults", "-name", "web").stdout)
    assert read["Protocol"] == "http" and read["Meta"] == {"owner_team": "a"}
    assert run(a, "config", "list", "-kind", "service-defaults").stdout.split() == ["web"]

    snap = tmp_path / "backup.snap"
    saved = run(a, "snapshot", "save", str(snap)).stdout
    assert saved.startswith("Saved and verified snapshot to index ")
    inspected = run(a, "snapshot", "inspect", str(snap)).stdout
    assert " Index " in inspected and " kv " in inspected and " config " in inspected
    bad = tmp_path / "bad.snap"
    bad.write_bytes(snap.read_bytes()[:100])
    assert run(a, "snapshot", "inspect", str(bad), check=False).returncode == 1

    b = cluster.server("snapcli-b", "--dev")
    assert run(b, "snapshot", "restore", str(snap)).stdout.strip() == "Restored snapshot"
    assert run(b, "kv", "get", "app/two").stdout.strip() == "2"
    assert run(b, "config", "list", "-kind", "service-defaults").stdout.split() == ["web"]
    assert run(b, "snapshot", "restore", str(bad), check=False).returncode == 1
    deleted = run(b, "config", "delete", "-kind", "service-defaults", "-name", "web").stdout
    assert deleted.strip() == "Config entry deleted: service-defaults/web"
    assert run(b, "config", "list", "-kind", "service-defaults").stdout.split() == []
