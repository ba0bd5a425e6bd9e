"""A real HAProxy whose backends come from SRV records of a client agent's DNS.

Three HTTP backends run in this process; the catalog says which are healthy.
HAProxy (``server-template`` with ``resolvers``) must route only to healthy
instances, then follow a health change and a deregistration, all through DNS.
"""

from __future__ import annotations

import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import server as httpserver
from pathlib import Path

import pytest

from tests.integration.test_dns import http, register
from tests.support.etcd import free_port
from tests.support.procs import AgentProcess, Cluster, wait_until

CONFIG = """
global
    maxconn 256

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

resolvers consul
    nameserver agent 127.0.0.1:{dns_port}
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 200ms
    timeout retry 200ms
    hold valid 1s
    hold obsolete 1s
    hold nx 1s
    hold other 1s

frontend web
    bind 127.0.0.1:{front_port}
    default_backend web

backend web
    balance roundrobin
    server-template web 5 _web._tcp.service.consul resolvers consul \
        resolve-prefer ipv4 init-addr none
"""


class _Named(httpserver.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    servers = []
    ports = {}
    for name in ("web1", "web2", "web3"):
        srv = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        srv.name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        ports[name] = srv.server_address[1]
    yield ports
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def haproxy(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[AgentProcess, int]]:
    dev = cluster.server("dev", "--dev")
    client = cluster.client("c1", "--retry-join", dev.rpc_addr)
    front = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG.format(dns_port=client.dns_port, front_port=front))
    log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield client, front
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        if proc.returncode not in (0, -15, 143):
            print((tmp_path / "haproxy.log").read_text())


def routed(front: int, tries: int = 12) -> set[str]:
    seen = set()
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{front}/", timeout=3) as resp:
                seen.add(resp.read().decode())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            seen.add("error")
    return seen


def test_haproxy_follows_health_through_srv(
    haproxy: tuple[AgentProcess, int], backends: dict[str, int]
) -> None:
    client, front = haproxy
    register(client, "n1", "127.0.0.1", backends["web1"], "passing")
    register(client, "n2", "127.0.0.1", backends["web2"], "passing")
    register(client, "n3", "127.0.0.1", backends["web3"], "critical")
    wait_until(lambda: routed(front) == {"web1", "web2"}, timeout=30, what="healthy two only")
    register(client, "n2", "127.0.0.1", backends["web2"], "critical")
    register(client, "n3", "127.0.0.1", backends["web3"], "passing")
    wait_until(lambda: routed(front) == {"web1", "web3"}, timeout=30, what="health change")
    code, _ = http(client, "PUT", "/v1/catalog/deregister", {"Node": "n1"})
    assert code == 200
    wait_until(lambda: routed(front) == {"web3"}, timeout=30, what="deregistration")
