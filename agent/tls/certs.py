"""A CA and agent certificates, as ``consul tls ca|cert create`` makes them.

Consul's layout (``command/tls/ca/create`` and ``command/tls/cert/create``):

- ``<domain>-agent-ca.pem`` and ``<domain>-agent-ca-key.pem``: the CA,
  ECDSA P-256, valid 1825 days, common name ``Consul Agent CA <serial>``;
- ``<dc>-server-<domain>-<n>.pem`` / ``-key.pem``: a server certificate
  naming ``server.<dc>.<domain>``, ``localhost`` and 127.0.0.1 (plus
  ``<node>.server.<dc>.<domain>`` with ``-node``), for server and client auth;
- ``<dc>-client-<domain>-<n>.pem``: ``client.<dc>.<domain>``, ``localhost``,
  127.0.0.1, for client and server auth;
- ``<dc>-cli-<domain>-<n>.pem``: ``cli.<dc>.<domain>`` and ``localhost``,
  for client auth;

``<n>`` is the first number whose two files do not exist yet. Keys are written
0600, certificates 0644.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import InvalidArgument

__all__ = ["CertFiles", "create_ca", "create_cert"]

KINDS = ("server", "client", "cli")


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _serial() -> int:
    return x509.random_serial_number()


def create_ca(
    directory: Path,
    *,
    domain: str = "consul",
    days: int = 1825,
    common_name: str = "",
    name_constraint: bool = False,
    additional_name_constraints: Sequence[str] = (),
) -> CertFiles:
    """Write ``<domain>-agent-ca.pem`` and its key in ``directory``; refuse to overwrite."""
    if days < 1:
        raise InvalidArgument("-days must be at least 1")
    files = CertFiles(
        directory / f"{domain}-agent-ca.pem", directory / f"{domain}-agent-ca-key.pem"
    )
    for path in (files.cert, files.key):
        if path.exists():
            raise InvalidArgument(f"{path} already exists")
    key = ec.generate_private_key(ec.SECP256R1())
    serial = _serial()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
            x509.NameAttribute(NameOID.STREET_ADDRESS, "101 Second Street"),
            x509.NameAttribute(NameOID.POSTAL_CODE, "94105"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HashiCorp Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"Consul Agent CA {serial}"),
        ]
    )
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if name_constraint:
        permitted = [domain, "localhost", *additional_name_constraints]
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(d) for d in permitted], excluded_subtrees=None
            ),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.key, _key_pem(key), 0o600)
    return files


def _free_names(directory: Path, prefix: str) -> CertFiles:
    for n in range(10_001):
        files = CertFiles(directory / f"{prefix}-{n}.pem", directory / f"{prefix}-{n}-key.pem")
        if not files.cert.exists() and not files.key.exists():
            return files
    raise InvalidArgument("Could not find a filename that doesn't already exist")


def create_cert(
    directory: Path,
    kind: str,
    *,
    datacenter: str = "dc1",
    domain: str = "consul",
    days: int = 365,
    node: str = "",
    ca_file: Path | None = None,
    ca_key_file: Path | None = None,
    additional_dnsnames: Sequence[str] = (),
    additional_ipaddresses: Sequence[str] = (),
) -> CertFiles:
    """Write the next ``<dc>-<kind>-<domain>-<n>.pem`` and key, signed by the CA."""
    if kind not in KINDS:
        raise InvalidArgument("Please provide either -server, -client, or -cli")
    if node and kind != "server":
        raise InvalidArgument("-node requires -server")
    if days < 1:
        raise InvalidArgument("-days must be at least 1")
    ca_path = ca_file or directory / f"{domain}-agent-ca.pem"
    key_path = ca_key_file or directory / f"{domain}-agent-ca-key.pem"
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except OSError as exc:
        raise InvalidArgument(f"Error reading CA: {ca_path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidArgument(f"Error reading CA: {ca_path} holds no PEM certificate") from exc
    try:
        ca_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise InvalidArgument(f"Error reading CA key: {key_path}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"Error reading CA key: {key_path} holds no PEM private key") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidArgument(f"Error reading CA key: {key_path}: unsupported key type")
    ips: list[x509.GeneralName] = []
    for raw in additional_ipaddresses:
        if raw.strip():
            try:
                ips.append(x509.IPAddress(ipaddress.ip_address(raw.strip())))
            except ValueError as exc:
                raise InvalidArgument(f"-additional-ipaddress: invalid IP address {raw!r}") from exc
    dns = [d.strip() for d in additional_dnsnames if d.strip()]
    name = f"{kind}.{datacenter}.{domain}"
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    if kind == "server":
        if node:
            dns.append(f"{node}.server.{datacenter}.{domain}")
        dns += [name, "localhost"]
        ips.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    elif kind == "client":
        dns += [name, "localhost"]
        ips.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    else:  # cli: as Consul, only its own names
        dns, ips = [name, "localhost"], []
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    files = _free_names(directory, f"{datacenter}-{kind}-{domain}")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName([*map(x509.DNSName, dns), *ips]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.key, _key_pem(key), 0o600)
    return files
