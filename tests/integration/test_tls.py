"""TLS with real agent processes: mTLS on server RPC and membership, server names,
HTTPS for py-consul, gRPC over TLS for Node, reload on SIGHUP, bad files at start.

Certificates come from ``agent.tls.certs`` (what ``consul-grpc tls ca|cert create``
writes): CA ``ca1`` signs the cluster's certificates; ``ca2`` is another CA, for
a client whose certificate the servers must refuse.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import consul
import grpc
import pytest
from cryptography import x509

from agent.demo.procs import free_port
from agent.tls.certs import CertFiles, create_ca, create_cert
from generated.consul.kv.v1 import kv_pb2, kv_pb2_grpc
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.membership.v1 import membership_pb2_grpc
from tests.polyglot.conftest import require_tool, run
from tests.support.procs import ROOT, AgentProcess, Cluster, known_servers, wait_until

T = 10


@dataclass
class PKI:
    root: Path
    ca: CertFiles
    server: CertFiles
    client: CertFiles
    server_dc2: CertFiles
    other_ca: CertFiles
    other_client: CertFiles


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    one, two = tmp_path / "ca1", tmp_path / "ca2"
    ca = create_ca(one)
    server = create_cert(one, "server", datacenter="dc1")
    client = create_cert(one, "client", datacenter="dc1")
    server_dc2 = create_cert(one, "server", datacenter="dc2")
    other_ca = create_ca(two)
    other_client = create_cert(two, "client", datacenter="dc1")
    return PKI(tmp_path, ca, server, client, server_dc2, other_ca, other_client)


def config_file(path: Path, tls: dict[str, object]) -> str:
    path.write_text(json.dumps({"tls": tls}))
    return str(path)


def defaults(ca: Path | None, cert: CertFiles | None, **flags: object) -> dict[str, object]:
    d: dict[str, object] = dict(flags)
    if ca is not None:
        d["ca_file"] = str(ca)
    if cert is not None:
        d["cert_file"], d["key_file"] = str(cert.cert), str(cert.key)
    return d


def members(server: AgentProcess) -> set[str]:
    with grpc.insecure_channel(server.grpc_addr) as ch:
        resp = membership_pb2_grpc.MembershipServiceStub(ch).ListMembers(
            mpb.ListMembersRequest(), timeout=T
        )
    return {m.name for m in resp.members}


def log_has(agent: AgentProcess, text: str) -> bool:
    return agent.log_path.exists() and text in agent.log_path.read_text()


def strict_server(cluster: Cluster, pki: PKI, cert: CertFiles, *extra: str) -> AgentProcess:
    """A dev server whose RPC port verifies incoming certificates against ca1."""
    tls = {
        "defaults": defaults(pki.ca.cert, cert, verify_incoming=True, verify_outgoing=True),
        "internal_rpc": {"verify_server_hostname": True},
    }
    path = config_file(pki.root / f"server-{cert.cert.stem}.json", tls)
    return cluster.server("s1", "--dev", "--config-file", path, *extra)


def refused_client(cluster: Cluster, name: str, path: str, server: AgentProcess) -> AgentProcess:
    """A client agent that serves but must not get into the cluster."""
    agent = cluster.client(name, "--config-file", path, "--retry-join", server.rpc_addr, wait=False)
    agent.wait_ready()
    wait_until(
        lambda: log_has(agent, "membership stream broke"),
        timeout=30,
        what=f"{name} to fail its TLS connection",
    )
    assert known_servers(agent) == []
    assert name not in members(server)
    return agent


@pytest.mark.timeout(120)
def test_client_without_a_valid_certificate_cannot_join_servers_that_verify_incoming(
    cluster: Cluster, pki: PKI
) -> None:
    server = strict_server(cluster, pki, pki.server)
    good = config_file(
        pki.root / "good.json",
        {
            "defaults": defaults(pki.ca.cert, pki.client, verify_outgoing=True),
            "internal_rpc": {"verify_server_hostname": True},
        },
    )
    cluster.client("good", "--config-file", good, "--retry-join", server.rpc_addr)
    wait_until(lambda: "good" in members(server), what="the good client to be a member")

    # No certificate at all: the server's handshake wants one.
    no_cert = config_file(
        pki.root / "nocert.json", {"defaults": defaults(pki.ca.cert, None, verify_outgoing=True)}
    )
    refused_client(cluster, "nocert", no_cert, server)

    # A certificate from another CA (this client trusts both CAs, so it starts).
    both = pki.root / "both-cas"
    both.mkdir()
    shutil.copy(pki.ca.cert, both / "ca1.pem")
    shutil.copy(pki.other_ca.cert, both / "ca2.pem")
    rogue_tls = defaults(None, pki.other_client, verify_outgoing=True)
    rogue_tls["ca_path"] = str(both)
    rogue = config_file(pki.root / "rogue.json", {"defaults": rogue_tls})
    refused_client(cluster, "rogue", rogue, server)

    # A plaintext client cannot talk to a TLS RPC port either.
    plain = cluster.client("plain", "--retry-join", server.rpc_addr, wait=False)
    plain.wait_ready()
    wait_until(lambda: log_has(plain, "membership stream broke"), timeout=30, what="plain fails")
    assert "plain" not in members(server)
    assert members(server) == {"s1", "good"}


@pytest.mark.timeout(120)
def test_verify_server_hostname_refuses_a_server_whose_certificate_is_for_another_dc(
    cluster: Cluster, pki: PKI
) -> None:
    server = strict_server(cluster, pki, pki.server_dc2)  # a dc1 server with a dc2 certificate
    strict = config_file(
        pki.root / "strict.json",
        {
            "defaults": defaults(pki.ca.cert, pki.client, verify_outgoing=True),
            "internal_rpc": {"verify_server_hostname": True},
        },
    )
    refused_client(cluster, "strict", strict, server)
    # Without verify_server_hostname the same certificate is good enough (CA and 127.0.0.1).
    lax = config_file(
        pki.root / "lax.json",
        {"defaults": defaults(pki.ca.cert, pki.client, verify_outgoing=True)},
    )
    cluster.client("lax", "--config-file", lax, "--retry-join", server.rpc_addr)
    wait_until(lambda: "lax" in members(server), what="the lax client to be a member")
    assert "strict" not in members(server)


def tls_listeners(pki: PKI, cert: CertFiles, name: str) -> tuple[str, int, int]:
    """A config serving HTTPS and gRPC-TLS with ``cert``; (path, https port, grpc_tls port)."""
    https, grpc_tls = free_port(), free_port()
    path = pki.root / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "tls": {"defaults": defaults(pki.ca.cert, cert)},
                "ports": {"https": https, "grpc_tls": grpc_tls},
            }
        )
    )
    return str(path), https, grpc_tls


@pytest.mark.timeout(120)
def test_py_consul_over_https_and_node_over_grpc_tls(cluster: Cluster, pki: PKI) -> None:
    path, https, grpc_tls = tls_listeners(pki, pki.server, "listeners")
    cluster.server("s1", "--dev", "--config-file", path)
    c = consul.Consul(host="127.0.0.1", port=https, scheme="https", verify=str(pki.ca.cert))
    assert c.kv.put("tls/py", "secret") is True
    _, item = c.kv.get("tls/py")
    assert item is not None and item["Value"] == b"secret"
    assert c.agent.self()["Config"]["Datacenter"] == "dc1"
    # Without the CA, the client refuses the agent's certificate.
    untrusting = consul.Consul(host="127.0.0.1", port=https, scheme="https", verify=True)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.kv.get("tls/py")

    node = require_tool("node")
    script = ROOT / "tests" / "polyglot" / "tls_kv.js"
    out = run(
        [node, str(script), "--addr", f"127.0.0.1:{grpc_tls}", "--ca", str(pki.ca.cert)],
        timeout=60,
    ).stdout
    assert "tls kv ok over-tls" in out, out
    _, item = c.kv.get("node/tls")
    assert item is not None and item["Value"] == b"over-tls"


@pytest.mark.timeout(120)
def test_node_over_grpc_tls_with_an_acl_token(cluster: Cluster, pki: PKI) -> None:
    """Issue 12's polyglot case: a Node gRPC client over TLS, to an agent with
    ACLs on (default deny): refused without a token, served with one."""
    mgmt = "11111111-2222-3333-4444-555555555555"
    https, grpc_tls = free_port(), free_port()
    path = pki.root / "tls-acl.json"
    path.write_text(
        json.dumps(
            {
                "tls": {"defaults": defaults(pki.ca.cert, pki.server)},
                "ports": {"https": https, "grpc_tls": grpc_tls},
                "acl": {
                    "enabled": True,
                    "default_policy": "deny",
                    "tokens": {"initial_management": mgmt},
                },
            }
        )
    )
    cluster.server("s1", "--dev", "--config-file", str(path))
    node = require_tool("node")
    script = ROOT / "tests" / "polyglot" / "tls_kv.js"
    base = [node, str(script), "--addr", f"127.0.0.1:{grpc_tls}", "--ca", str(pki.ca.cert)]
    denied = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
    assert denied.returncode == 1 and "Permission denied" in denied.stderr, denied.stderr

    def with_token() -> bool:
        done = subprocess.run(
            [*base, "--token", mgmt], capture_output=True, text=True, timeout=60, check=False
        )
        return "tls kv ok over-tls" in done.stdout

    wait_until(with_token, what="the Node client with a token (management token written)")


def peer_serial(port: int, ca: Path) -> int:
    """The serial of the certificate a new TLS connection to ``port`` is shown."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.timeout(120)
def test_sighup_reloads_certificates_and_keeps_open_connections(cluster: Cluster, pki: PKI) -> None:
    live = CertFiles(pki.root / "live.pem", pki.root / "live-key.pem")
    shutil.copy(pki.server.cert, live.cert)
    shutil.copy(pki.server.key, live.key)
    path, https, grpc_tls = tls_listeners(pki, live, "reload")
    server = cluster.server("s1", "--dev", "--config-file", path)
    old = x509.load_pem_x509_certificate(pki.server.cert.read_bytes()).serial_number
    assert peer_serial(grpc_tls, pki.ca.cert) == old
    assert peer_serial(https, pki.ca.cert) == old

    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{grpc_tls}", creds) as channel:
        stub = kv_pb2_grpc.KVServiceStub(channel)
        stub.Put(kv_pb2.PutRequest(key="reload/k", value=b"1"), timeout=T)
        index = stub.Get(kv_pb2.GetRequest(key="reload/k"), timeout=T).meta.index
        # A blocking query open on this connection across the reload.
        result: dict[str, object] = {}

        def block() -> None:
            req = kv_pb2.GetRequest(key="reload/k")
            req.options.min_index = index
            req.options.max_wait.FromSeconds(60)
            try:
                result["value"] = stub.Get(req, timeout=90).pair.value
            except grpc.RpcError as exc:
                result["error"] = exc

        waiter = threading.Thread(target=block)
        waiter.start()

        new = create_cert(pki.root / "ca1", "server", datacenter="dc1")
        shutil.copy(new.cert, live.cert)
        shutil.copy(new.key, live.key)
        new_serial = x509.load_pem_x509_certificate(new.cert.read_bytes()).serial_number
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: peer_serial(grpc_tls, pki.ca.cert) == new_serial,
            what="new gRPC connections to get the new certificate",
        )
        wait_until(
            lambda: peer_serial(https, pki.ca.cert) == new_serial,
            what="new HTTPS connections to get the new certificate",
        )
        # The old connection still works: the open query wakes on a write.
        stub.Put(kv_pb2.PutRequest(key="reload/k", value=b"2"), timeout=T)
        waiter.join(30)
        assert not waiter.is_alive()
        assert result == {"value": b"2"}
    assert server.alive


def start_refused(pki: PKI, name: str, tls: dict[str, object]) -> str:
    """Run an agent that must refuse to start; its stderr."""
    path = config_file(pki.root / f"{name}.json", tls)
    cmd = [sys.executable, "-m", "agent.cli", "agent", "--dev", "--node", name]
    cmd += ["--config-file", path, "--rpc-addr", f"127.0.0.1:{free_port()}"]
    cmd += ["--grpc-addr", f"127.0.0.1:{free_port()}", "--http-addr", f"127.0.0.1:{free_port()}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.timeout(120)
def test_bad_certificate_files_refuse_to_start_with_the_reason(pki: PKI) -> None:
    missing = start_refused(
        pki,
        "missing",
        {"defaults": defaults(pki.ca.cert, CertFiles(pki.root / "no.pem", pki.server.key))},
    )
    assert "file not found" in missing and "no.pem" in missing
    mismatch = start_refused(
        pki,
        "mismatch",
        {"defaults": defaults(pki.ca.cert, CertFiles(pki.server.cert, pki.client.key))},
    )
    assert "does not match the certificate" in mismatch
    wrong_ca = start_refused(pki, "wrongca", {"defaults": defaults(pki.other_ca.cert, pki.server)})
    assert "was not issued by the CA" in wrong_ca
    no_ca = start_refused(
        pki, "noca", {"defaults": defaults(None, pki.server, verify_incoming=True)}
    )
    assert "verify_incoming set, and no CA certificate" in no_ca
    not_pem = start_refused(pki, "notpem", {"defaults": defaults(pki.server.key, pki.server)})
    assert "holds no" in not_pem


def kv_get(agent: AgentProcess, key: str, dc: str) -> bytes | None:
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        req = kv_pb2.GetRequest(key=key)
        req.options.datacenter = dc
        resp = kv_pb2_grpc.KVServiceStub(ch).Get(req, timeout=T)
    return resp.pair.value if resp.HasField("pair") else None


def wan_server(cluster: Cluster, pki: PKI, name: str, dc: str, cert: CertFiles, *extra: str):  # type: ignore[no-untyped-def]
    tls = {
        "defaults": defaults(pki.ca.cert, cert, verify_incoming=True, verify_outgoing=True),
        "internal_rpc": {"verify_server_hostname": True},
    }
    path = config_file(pki.root / f"{name}.json", tls)
    return cluster.server(
        name, "--dev", "--datacenter", dc, "--config-file", path, "--suspect-timeout", "2s", *extra
    )


@pytest.mark.timeout(120)
def test_wan_forwarding_over_mtls_checks_the_remote_datacenters_name(
    cluster: Cluster, pki: PKI
) -> None:
    a1 = wan_server(cluster, pki, "a1", "dc1", pki.server)
    b1 = wan_server(cluster, pki, "b1", "dc2", pki.server_dc2, "--retry-join-wan", a1.rpc_addr)
    with grpc.insecure_channel(b1.grpc_addr) as ch:
        kv_pb2_grpc.KVServiceStub(ch).Put(kv_pb2.PutRequest(key="wan/k", value=b"b"), timeout=T)
    # dc1 -> dc2 and back, each dial checking server.<that dc>.consul.
    assert wait_until(lambda: kv_get(a1, "wan/k", "dc2"), timeout=30, what="a1 reads dc2") == b"b"
    assert kv_get(b1, "wan/k", "dc1") is None

    # A "dc3" server holding a dc1 certificate: it reaches dc1 (its seed dial is
    # checked against the address), but dc1's dials back check server.dc3.consul,
    # so dc1 never links to dc3 nor forwards to it.
    c1 = wan_server(cluster, pki, "c1", "dc3", pki.server, "--retry-join-wan", a1.rpc_addr)
    with grpc.insecure_channel(c1.grpc_addr) as ch:
        kv_pb2_grpc.KVServiceStub(ch).Put(kv_pb2.PutRequest(key="wan/k", value=b"c"), timeout=T)

    def refused() -> bool:
        try:
            kv_get(a1, "wan/k", "dc3")
        except grpc.RpcError as exc:
            # The link to dc3 never gets through its handshake: no route to dc3.
            return exc.code() == grpc.StatusCode.UNAVAILABLE and (exc.details() or "") in (
                "No path to datacenter",
                "Remote DC has no server currently reachable",
            )
        return False

    wait_until(refused, timeout=30, what="dc1 to refuse dc3's server")
