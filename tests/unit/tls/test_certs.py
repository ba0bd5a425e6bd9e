"""tls ca|cert create: Consul's file names, SANs and key usages; the CLI command."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.errors import InvalidArgument
from agent.tls.certs import create_ca, create_cert

ROOT = Path(__file__).resolve().parents[3]


def sans(path: Path) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    ]


def usages(path: Path) -> set[x509.ObjectIdentifier]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_and_certificates_named_and_signed_as_consul_does(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    assert (ca.cert.name, ca.key.name) == ("consul-agent-ca.pem", "consul-agent-ca-key.pem")
    assert ca.key.stat().st_mode & 0o777 == 0o600
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cn = ca_cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == f"Consul Agent CA {ca_cert.serial_number}"

    server = create_cert(tmp_path, "server", datacenter="dc1", node="s1")
    assert server.cert.name == "dc1-server-consul-0.pem"
    assert server.key.name == "dc1-server-consul-0-key.pem"
    dns, ips = sans(server.cert)
    assert dns == ["s1.server.dc1.consul", "server.dc1.consul", "localhost"]
    assert ips == ["127.0.0.1"]
    assert usages(server.cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    x509.load_pem_x509_certificate(server.cert.read_bytes()).verify_directly_issued_by(ca_cert)

    again = create_cert(tmp_path, "server", datacenter="dc1")
    assert again.cert.name == "dc1-server-consul-1.pem"

    client = create_cert(
        tmp_path,
        "client",
        datacenter="dc2",
        additional_dnsnames=["app.example"],
        additional_ipaddresses=["10.0.0.7"],
    )
    assert client.cert.name == "dc2-client-consul-0.pem"
    assert sans(client.cert) == (
        ["app.example", "client.dc2.consul", "localhost"],
        ["10.0.0.7", "127.0.0.1"],
    )
    cli = create_cert(tmp_path, "cli", datacenter="dc1", additional_dnsnames=["ignored"])
    assert cli.cert.name == "dc1-cli-consul-0.pem"
    assert sans(cli.cert) == (["cli.dc1.consul", "localhost"], [])
    assert usages(cli.cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_other_domain_and_refusals(tmp_path: Path) -> None:
    ca = create_ca(tmp_path, domain="example", name_constraint=True)
    assert ca.cert.name == "example-agent-ca.pem"
    with pytest.raises(InvalidArgument, match="already exists"):
        create_ca(tmp_path, domain="example")
    server = create_cert(tmp_path, "server", domain="example")
    assert server.cert.name == "dc1-server-example-0.pem"
    assert "server.dc1.example" in sans(server.cert)[0]
    with pytest.raises(InvalidArgument, match="Error reading CA"):
        create_cert(tmp_path, "server")  # no consul-agent-ca.pem here
    with pytest.raises(InvalidArgument, match="-node requires -server"):
        create_cert(tmp_path, "client", domain="example", node="n1")
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        create_cert(tmp_path, "client", domain="example", additional_ipaddresses=["10.0.0"])
    assert ipaddress.ip_address("127.0.0.1")


def test_cli_commands_write_consuls_files(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent.cli", "tls", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PYTHONPATH": str(ROOT)},
        )

    assert cli("ca", "create").returncode == 0
    out = cli("cert", "create", "-server", "-dc", "dc1")
    assert out.returncode == 0, out.stderr
    assert "==> Saved dc1-server-consul-0.pem" in out.stdout
    assert cli("cert", "create", "-client").returncode == 0
    assert cli("cert", "create", "-cli").returncode == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "consul-agent-ca-key.pem",
        "consul-agent-ca.pem",
        "dc1-cli-consul-0-key.pem",
        "dc1-cli-consul-0.pem",
        "dc1-client-consul-0-key.pem",
        "dc1-client-consul-0.pem",
        "dc1-server-consul-0-key.pem",
        "dc1-server-consul-0.pem",
    ]
    bad = cli("cert", "create", "-server", "-client")
    assert bad.returncode == 2
    assert "Please provide either -server, -client, or -cli" in bad.stderr
    assert "Traceback" not in bad.stderr
