"""DNS on real agents, driven with dig (bind9-dnsutils) and raw sockets; prepared queries."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.support.procs import AgentProcess, Cluster, wait_until


def dig(agent: AgentProcess, *args: str) -> str:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(agent.dns_port), "+time=2", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return out.stdout


def short(agent: AgentProcess, *args: str) -> list[str]:
    return sorted(line for line in dig(agent, "+short", *args).splitlines() if line)


def status(agent: AgentProcess, *args: str) -> str:
    for line in dig(agent, *args).splitlines():
        if "status:" in line:
            return line.split("status:")[1].split(",")[0].strip()
    return ""


def http(agent: AgentProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def register(
    agent: AgentProcess, node: str, address: str, port: int, status_: str, service: str = "web"
) -> None:
    code, _ = http(
        agent,
        "PUT",
        "/v1/catalog/register",
        {
            "Node": node,
            "Address": address,
            "NodeMeta": {"rack": "r1"},
            "Service": {"Service": service, "ID": f"{service}-{node}", "Port": port},
            "Check": {
                "CheckID": f"chk-{node}",
                "Name": "alive",
                "Status": status_,
                "ServiceID": f"{service}-{node}",
            },
        },
    )
    assert code == 200


@pytest.fixture
def pair(cluster: Cluster) -> tuple[AgentProcess, AgentProcess]:
    dev = cluster.server("dev", "--dev")
    client = cluster.client("c1", "--retry-join", dev.rpc_addr)
    return dev, client


def test_dig_service_node_and_health_changes(pair: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = pair
    register(client, "n1", "10.1.0.1", 8001, "passing")
    register(client, "n2", "10.1.0.2", 8002, "passing")
    register(client, "n3", "10.1.0.3", 8003, "critical")
    wait_until(
        lambda: short(client, "web.service.consul") == ["10.1.0.1", "10.1.0.2"],
        what="A records of the healthy instances",
    )
    srv = short(client, "web.service.consul", "SRV")
    assert srv == ["1 1 8001 n1.node.dc1.consul.", "1 1 8002 n2.node.dc1.consul."]
    full = dig(client, "_web._tcp.service.dc1.consul", "SRV")
    assert "n1.node.dc1.consul.\t0\tIN\tA\t10.1.0.1" in full and "flags: qr aa" in full
    assert short(client, "n3.node.consul") == ["10.1.0.3"]
    assert short(client, "n1.node.dc1.consul", "TXT") == ['"rack=r1"']
    assert status(client, "nope.service.consul") == "NXDOMAIN"
    assert "hostmaster.consul." in dig(client, "nope.service.consul")
    assert status(client, "web.service.dc-unknown.consul") == "NXDOMAIN"
    assert status(client, "web.service.consul", "AAAA") == "NOERROR"
    assert status(client, "example.com") == "REFUSED"
    assert short(client, "0a010001.addr.consul") == ["10.1.0.1"]
    assert short(client, "+tcp", "web.service.consul") == ["10.1.0.1", "10.1.0.2"]
    # A health change and a deregistration show in the answers.
    register(client, "n2", "10.1.0.2", 8002, "critical")
    register(client, "n3", "10.1.0.3", 8003, "passing")
    wait_until(
        lambda: short(client, "web.service.consul") == ["10.1.0.1", "10.1.0.3"],
        what="n2 out, n3 in",
    )
    code, _ = http(client, "PUT", "/v1/catalog/deregister", {"Node": "n1"})
    assert code == 200
    wait_until(lambda: short(client, "web.service.consul") == ["10.1.0.3"], what="n1 gone")


def test_ns_soa_and_ptr_on_a_server(pair: tuple[AgentProcess, AgentProcess]) -> None:
    dev, _ = pair
    wait_until(lambda: short(dev, "consul", "NS") == ["dev.node.dc1.consul."], what="NS")
    soa = short(dev, "consul", "SOA")
    assert len(soa) == 1 and soa[0].startswith("ns.consul. hostmaster.consul.")
    register(dev, "n9", "10.9.9.9", 80, "passing")
    assert short(dev, "-x", "10.9.9.9") == ["n9.node.dc1.consul."]
    assert status(dev, "-x", "10.9.9.8") == "NXDOMAIN"


def raw_udp(agent: AgentProcess, payload: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(payload, ("127.0.0.1", agent.dns_port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def rcode_of(reply: bytes | None) -> int:
    assert reply is not None and len(reply) >= 12
    return struct.unpack("!H", reply[2:4])[0] & 0xF


def test_bad_packets_on_a_real_agent(pair: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = pair
    register(client, "n1", "10.1.0.1", 8001, "passing")
    head = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    assert raw_udp(client, b"\x01\x02\x03") is None  # shorter than a header: dropped
    assert rcode_of(raw_udp(client, struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0))) == 1
    assert rcode_of(raw_udp(client, head + b"\xc0\x0c\x00\x01\x00\x01")) == 1  # pointer loop
    assert rcode_of(raw_udp(client, head + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01")) == 1
    assert (
        rcode_of(raw_udp(client, head + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01")) == 1
    )
    update = struct.pack("!HHHHHH", 2, 0x2800, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01"
    assert rcode_of(raw_udp(client, update)) == 4  # NOTIMP
    chaos = head + b"\x07version\x04bind\x00\x00\x10\x00\x03"
    assert rcode_of(raw_udp(client, chaos)) == 5  # REFUSED
    # TCP: a garbage frame, then a good query on the same connection.
    with socket.create_connection(("127.0.0.1", client.dns_port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", 4) + b"\xff\xff\xff\xff")
        good = dns.message.make_query("web.service.consul.", "A").to_wire()
        sock.sendall(struct.pack("!H", len(good)) + good)
        size = struct.unpack("!H", sock.recv(2))[0]
        body = b""
        while len(body) < size:
            body += sock.recv(size - len(body))
        assert dns.message.from_wire(body).answer
    # And the agent still answers.
    wait_until(lambda: short(client, "web.service.consul") == ["10.1.0.1"], what="still serving")


def test_servfail_when_no_server_is_known(cluster: Cluster) -> None:
    lonely = cluster.client("lonely", "--retry-join", "127.0.0.1:1", wait=False)
    lonely.wait_ready()
    msg = dns.query.udp(
        dns.message.make_query("web.service.consul.", "A"),
        "127.0.0.1",
        port=lonely.dns_port,
        timeout=10,
    )
    assert msg.rcode() == dns.rcode.SERVFAIL


def test_dns_disabled_with_port_minus_one(cluster: Cluster) -> None:
    dev = cluster.server("dev", "--dev", "--dns-addr", "127.0.0.1:-1")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", dev.dns_port)) != 0


def test_prepared_queries_over_http_and_dns(pair: tuple[AgentProcess, AgentProcess]) -> None:
    _, client = pair
    register(client, "n1", "10.1.0.1", 8001, "passing", service="db")
    register(client, "n2", "10.1.0.2", 8002, "passing", service="db-replica")
    code, created = http(
        client,
        "POST",
        "/v1/query",
        {
            "Name": "primary-db",
            "Service": {"Service": "db", "OnlyPassing": True},
            "DNS": {"TTL": "12s"},
        },
    )
    assert code == 200, created
    qid = created["ID"]
    code, listed = http(client, "GET", "/v1/query")
    assert code == 200 and [q["ID"] for q in listed] == [qid]
    code, one = http(client, "GET", f"/v1/query/{qid}")
    assert code == 200 and one[0]["Service"]["Service"] == "db" and one[0]["DNS"]["TTL"] == "12s"
    code, result = http(client, "GET", "/v1/query/primary-db/execute")
    assert code == 200 and result["Service"] == "db" and result["Datacenter"] == "dc1"
    assert [n["Node"]["Node"] for n in result["Nodes"]] == ["n1"]
    assert "12\tIN\tA\t10.1.0.1" in dig(client, "primary-db.query.consul")
    assert short(client, "_primary-db._tcp.query.consul", "SRV") == ["1 1 8001 n1.node.dc1.consul."]
    # A template with a regexp capture: "db-replica-lookup" runs service "db-replica".
    code, tmpl = http(
        client,
        "POST",
        "/v1/query",
        {
            "Name": "geo-",
            "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.+?)-lookup$"},
            "Service": {"Service": "${match(1)}"},
        },
    )
    assert code == 200, tmpl
    code, explained = http(client, "GET", "/v1/query/geo-db-replica-lookup/explain")
    assert code == 200 and explained["Query"]["Service"]["Service"] == "db-replica"
    assert short(client, "geo-db-replica-lookup.query.consul") == ["10.1.0.2"]
    # Update, then delete.
    code, _ = http(
        client,
        "PUT",
        f"/v1/query/{qid}",
        {"Name": "primary-db", "Service": {"Service": "db-replica"}},
    )
    assert code == 200
    assert short(client, "primary-db.query.consul") == ["10.1.0.2"]
    code, _ = http(client, "DELETE", f"/v1/query/{qid}")
    assert code == 200
    assert http(client, "GET", "/v1/query/primary-db/execute")[0] == 404
    assert status(client, "primary-db.query.consul") == "NXDOMAIN"
    # Bad input is a 400 with Consul's text.
    code, text = http(client, "POST", "/v1/query", {"Name": "x", "Service": {}})
    assert code == 400 and "Must provide a Service name" in text
    code, text = http(
        client,
        "POST",
        "/v1/query",
        {
            "Name": "t",
            "Template": {"Type": "name_prefix_match", "Regexp": "("},
            "Service": {"Service": "a"},
        },
    )
    assert code == 400 and "Bad Regexp" in text
    code, text = http(
        client, "POST", "/v1/query", {"Service": {"Service": "a", "Failover": {"NearestN": -1}}}
    )
    assert code == 400 and "NearestN" in text
    assert http(client, "POST", "/v1/query", "not an object")[0] == 400


def test_prepared_queries_over_grpc(pair: tuple[AgentProcess, AgentProcess]) -> None:
    import grpc

    from generated.consul.query.v1 import query_pb2 as qypb
    from generated.consul.query.v1 import query_pb2_grpc

    _, client = pair
    register(client, "n1", "10.1.0.1", 8001, "passing", service="cache")
    with grpc.insecure_channel(client.grpc_addr) as ch:
        stub = query_pb2_grpc.PreparedQueryServiceStub(ch)
        created = stub.Create(
            qypb.CreateRequest(
                query=qypb.PreparedQuery(name="c", service=qypb.ServiceQuery(service="cache"))
            ),
            timeout=10,
        )
        result = stub.Execute(qypb.ExecuteRequest(query_id_or_name=created.id), timeout=10)
        assert [n.node.name for n in result.nodes] == ["n1"] and result.datacenter == "dc1"
        with pytest.raises(grpc.RpcError) as err:
            stub.Execute(qypb.ExecuteRequest(query_id_or_name="missing"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as bad:
            stub.Create(qypb.CreateRequest(query=qypb.PreparedQuery(name="x")), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
