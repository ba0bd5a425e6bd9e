"""Certificate material: read, check, and turn into what the listeners need.

``Material.load(settings, section)`` reads one protocol's CA bundle (``ca_file``
and every ``*.pem``/``*.crt`` under ``ca_path``), certificate chain and key,
and refuses, with the file and the reason, what would otherwise fail later and
obscurely: a missing or unreadable file, a file that holds no PEM certificate,
a key that does not belong to the certificate, a certificate that none of the
configured CAs issued. The errors are ``InvalidArgument``: an agent refuses
to start with that message.

From a ``Material``:

- ``server_certificate_configuration()`` for ``grpc.dynamic_ssl_server_credentials``;
- ``channel_credentials()`` for outgoing gRPC (our certificate presented as a
  client certificate, the CA to verify the server);
- ``https_context`` builds the ``ssl.SSLContext`` of the HTTPS listener
  (``tls_min_version``, ``tls_cipher_suites`` in Consul's Go names).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from agent.errors import InvalidArgument
from agent.tls.config import TLSSettings

__all__ = ["Material", "https_context", "openssl_ciphers"]

_SSL_VERSIONS = {
    "TLSv1_0": ssl.TLSVersion.TLSv1,
    "TLSv1_1": ssl.TLSVersion.TLSv1_1,
    "TLSv1_2": ssl.TLSVersion.TLSv1_2,
    "TLSv1_3": ssl.TLSVersion.TLSv1_3,
}

#: Consul's tls_cipher_suites (Go's names) and OpenSSL's names for them. TLS 1.3
#: suites are not configurable, in Go as here.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}


def openssl_ciphers(suites: tuple[str, ...], where: str) -> str:
    """OpenSSL's cipher string for Consul's suite names; InvalidArgument for unknown ones."""
    names = []
    for suite in suites:
        name = _CIPHERS.get(suite)
        if name is None:
            raise InvalidArgument(f"{where}.tls_cipher_suites: unsupported cipher suite {suite!r}")
        names.append(name)
    return ":".join(names)


@dataclass(frozen=True, slots=True)
class Material:
    """One protocol's CA bundle, certificate chain and key, as PEM bytes, checked."""

    ca_pem: bytes | None
    cert_pem: bytes | None
    key_pem: bytes | None
    #: The leaf certificate (first of the chain), for logs and tests.
    leaf: x509.Certificate | None

    @classmethod
    def load(cls, settings: TLSSettings, section: str) -> Material:
        where = f"tls.{section}"
        cas = _read_cas(settings, where)
        ca_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in cas) or None
        if not settings.has_cert:
            return cls(ca_pem, None, None, None)
        cert_pem = _read(settings.cert_file, f"{where}.cert_file")
        key_pem = _read(settings.key_file, f"{where}.key_file")
        chain = _certificates(cert_pem, settings.cert_file, f"{where}.cert_file")
        key = _private_key(key_pem, settings.key_file, f"{where}.key_file")
        leaf = chain[0]
        if _public(key.public_key()) != _public(leaf.public_key()):
            raise InvalidArgument(
                f"{where}: the key in {settings.key_file} does not match the certificate"
                f" in {settings.cert_file}"
            )
        if cas and not _issued_by(leaf, chain[1:], cas):
            raise InvalidArgument(
                f"{where}: the certificate in {settings.cert_file} was not issued by the CA in"
                f" {settings.ca_file or settings.ca_path} (issuer: {leaf.issuer.rfc4514_string()})"
            )
        return cls(ca_pem, cert_pem, key_pem, leaf)

    def server_certificate_configuration(self) -> grpc.ServerCertificateConfiguration:
        assert self.key_pem is not None and self.cert_pem is not None
        return grpc.ssl_server_certificate_configuration(
            [(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )


def https_context(
    settings: TLSSettings, material: Material, section: str = "https"
) -> ssl.SSLContext:
    """A server-side SSLContext for ``settings``; ``load_chain`` again to reload it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _SSL_VERSIONS[settings.tls_min_version]
    if settings.tls_cipher_suites:
        try:
            ctx.set_ciphers(openssl_ciphers(settings.tls_cipher_suites, f"tls.{section}"))
        except ssl.SSLError as exc:
            raise InvalidArgument(f"tls.{section}.tls_cipher_suites: {exc}") from exc
    load_chain(ctx, settings, material)
    # Without verify_incoming no client certificate is asked for (nor checked).
    ctx.verify_mode = ssl.CERT_REQUIRED if settings.verify_incoming else ssl.CERT_NONE
    return ctx


def load_chain(ctx: ssl.SSLContext, settings: TLSSettings, material: Material) -> None:
    """(Re)load the certificate and CAs into ``ctx``: later handshakes use them."""
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load {settings.cert_file}: {exc}") from exc
    if material.ca_pem is not None:
        ctx.load_verify_locations(cadata=material.ca_pem.decode("ascii"))


# ----- reading and checking ---------------------------------------------------


def _read(path: str, where: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise InvalidArgument(f"{where}: file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise InvalidArgument(f"{where}: {path} is a directory, not a file") from exc
    except OSError as exc:
        raise InvalidArgument(f"{where}: cannot read {path}: {exc.strerror}") from exc


def _certificates(pem: bytes, path: str, where: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: {path} holds no valid PEM certificate") from exc
    if not certs:
        raise InvalidArgument(f"{where}: {path} holds no PEM certificate")
    return certs


def _private_key(pem: bytes, path: str, where: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"{where}: {path} holds no valid unencrypted PEM private key"
        ) from exc
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd keys
        raise InvalidArgument(f"{where}: {path}: {exc}") from exc


def _read_cas(settings: TLSSettings, where: str) -> list[x509.Certificate]:
    cas: list[x509.Certificate] = []
    if settings.ca_file:
        cas += _certificates(
            _read(settings.ca_file, f"{where}.ca_file"), settings.ca_file, f"{where}.ca_file"
        )
    if settings.ca_path:
        directory = Path(settings.ca_path)
        if not directory.is_dir():
            raise InvalidArgument(f"{where}.ca_path: not a directory: {settings.ca_path}")
        found = sorted(
            p for p in directory.iterdir() if p.suffix in (".pem", ".crt") and p.is_file()
        )
        for path in found:
            cas += _certificates(
                _read(str(path), f"{where}.ca_path"), str(path), f"{where}.ca_path"
            )
        if not found:
            raise InvalidArgument(f"{where}.ca_path: no .pem or .crt file in {settings.ca_path}")
    return cas


def _public(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], cas: list[x509.Certificate]
) -> bool:
    """Whether ``leaf`` chains to one of ``cas``, directly or through ``intermediates``."""
    issuers = [*cas, *intermediates]
    current, seen = leaf, 0
    while seen <= len(intermediates):
        parent = next((c for c in issuers if _signed(current, c)), None)
        if parent is None:
            return False
        if parent in cas:
            return True
        current, seen = parent, seen + 1
    return False


def _signed(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
