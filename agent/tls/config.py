"""The ``tls`` stanza of Consul 1.12+, with its inheritance rule.

::

    tls {
      defaults     { ca_file, ca_path, cert_file, key_file, verify_incoming,
                     verify_outgoing, tls_min_version, tls_cipher_suites }
      internal_rpc { ...the same..., verify_server_hostname }   # server RPC, membership
      https        { ...the same... }                           # the HTTP API on ports.https
      grpc         { ...the same, no verify_outgoing... }   # agent gRPC API, ports.grpc_tls
    }

Each of ``internal_rpc``, ``https`` and ``grpc`` starts from ``defaults`` and
overrides what it sets (Consul's ``tlsutil.Config`` built in
``agent/config/builder.go``). Keys Consul does not know in a section are
refused, as are inconsistent settings Consul refuses (``verify_incoming``
without a CA or without a certificate; a certificate without its key).
``verify_server_hostname`` implies ``verify_outgoing`` (Consul 1.12+).

This module only reads and checks the *shape*; the files are read by
:mod:`agent.tls.material` when an agent starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from agent.errors import InvalidArgument

__all__ = ["TLS_VERSIONS", "TLSConfig", "TLSSettings", "ports_addresses"]

#: Consul's ``tls_min_version`` values; TLSv1_2 is its default.
TLS_VERSIONS = ("TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3")

_COMMON = frozenset(
    {
        "ca_file",
        "ca_path",
        "cert_file",
        "key_file",
        "verify_incoming",
        "tls_min_version",
        "tls_cipher_suites",
    }
)
_SECTIONS: dict[str, frozenset[str]] = {
    "defaults": _COMMON | {"verify_outgoing"},
    "internal_rpc": _COMMON | {"verify_outgoing", "verify_server_hostname"},
    "https": _COMMON | {"verify_outgoing"},
    # Consul has no outgoing side on gRPC; use_auto_cert is Connect's business.
    "grpc": _COMMON | {"use_auto_cert"},
}


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The effective settings of one protocol (defaults merged in)."""

    ca_file: str = ""
    ca_path: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    tls_min_version: str = "TLSv1_2"
    tls_cipher_suites: tuple[str, ...] = ()

    @property
    def has_ca(self) -> bool:
        return bool(self.ca_file or self.ca_path)

    @property
    def has_cert(self) -> bool:
        return bool(self.cert_file)

    @property
    def files(self) -> tuple[str, ...]:
        """The files and directory this protocol reads (for logs and reloads)."""
        return tuple(p for p in (self.ca_file, self.ca_path, self.cert_file, self.key_file) if p)

    def checked(self, section: str) -> TLSSettings:
        """These settings, or InvalidArgument naming ``section`` with the reason."""
        where = f"tls.{section}"
        if bool(self.cert_file) != bool(self.key_file):
            missing = "key_file" if self.cert_file else "cert_file"
            raise InvalidArgument(f"{where}: cert_file and key_file go together ({missing} unset)")
        if self.verify_incoming and not self.has_ca:
            raise InvalidArgument(
                f"{where}: verify_incoming set, and no CA certificate provided (ca_file or ca_path)"
            )
        if self.verify_incoming and not self.has_cert:
            raise InvalidArgument(
                f"{where}: verify_incoming set, and no cert_file/key_file pair provided"
            )
        if self.verify_outgoing and not self.has_ca:
            raise InvalidArgument(
                f"{where}: verify_outgoing set, and no CA certificate provided (ca_file or ca_path)"
            )
        if self.tls_min_version not in TLS_VERSIONS:
            raise InvalidArgument(
                f"{where}: tls_min_version {self.tls_min_version!r} is not one of "
                + ", ".join(TLS_VERSIONS)
            )
        return self


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """``tls { defaults, internal_rpc, https, grpc }``, each protocol resolved."""

    internal_rpc: TLSSettings = field(default_factory=TLSSettings)
    https: TLSSettings = field(default_factory=TLSSettings)
    grpc: TLSSettings = field(default_factory=TLSSettings)

    @property
    def enabled(self) -> bool:
        """Whether anything at all is configured."""
        return any(s != TLSSettings() for s in (self.internal_rpc, self.https, self.grpc))

    @classmethod
    def parse(cls, raw: object) -> TLSConfig:
        """The ``tls`` object of a config file (a JSON object); InvalidArgument if malformed."""
        if isinstance(raw, TLSConfig):
            return raw
        stanza = _mapping(raw, "tls")
        unknown = sorted(set(stanza) - set(_SECTIONS))
        if unknown:
            raise InvalidArgument(
                f"Unknown configuration key 'tls.{unknown[0]}': use "
                + ", ".join(f"tls.{s}" for s in _SECTIONS)
            )
        sections = {name: _mapping(stanza.get(name, {}), f"tls.{name}") for name in _SECTIONS}
        for name, values in sections.items():
            bad = sorted(set(values) - _SECTIONS[name])
            if bad:
                raise InvalidArgument(f"Unknown configuration key 'tls.{name}.{bad[0]}'")
        defaults = _apply(TLSSettings(), sections["defaults"], "defaults")
        resolved = {}
        for name in ("internal_rpc", "https", "grpc"):
            settings = _apply(defaults, sections[name], name)
            if name != "internal_rpc":
                settings = replace(settings, verify_server_hostname=False)
            if name == "grpc":
                settings = replace(settings, verify_outgoing=False)
            if settings.verify_server_hostname:
                settings = replace(settings, verify_outgoing=True)
            resolved[name] = settings.checked(name)
        return cls(**resolved)


def _mapping(raw: object, where: str) -> Mapping[str, Any]:
    if isinstance(raw, list) and all(isinstance(x, Mapping) for x in raw):
        # HCL decoders give blocks as lists of objects: merge them in order.
        merged: dict[str, Any] = {}
        for part in raw:
            merged.update(part)
        return merged
    if not isinstance(raw, Mapping):
        raise InvalidArgument(f"{where} must be an object, got {type(raw).__name__}")
    return raw


_BOOLS = {f.name for f in fields(TLSSettings) if f.type in ("bool", bool)}


def _apply(base: TLSSettings, values: Mapping[str, Any], section: str) -> TLSSettings:
    clean: dict[str, Any] = {}
    for key, value in values.items():
        where = f"tls.{section}.{key}"
        if key == "use_auto_cert":
            if value:
                raise InvalidArgument(f"{where}: auto-encrypt certificates are not supported")
            continue
        if key in _BOOLS:
            clean[key] = _boolean(value, where)
        elif key == "tls_cipher_suites":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgument(f"{where} must be a comma-separated string")
            clean[key] = tuple(value)
        else:
            if not isinstance(value, str):
                raise InvalidArgument(f"{where} must be a string, got {type(value).__name__}")
            clean[key] = value
    return replace(base, **clean)


def _boolean(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise InvalidArgument(f"{where} must be a boolean, got {value!r}")


def ports_addresses(ports: object, *, http_addr: str, grpc_addr: str) -> dict[str, str]:
    """``ports { https, grpc_tls }`` as the addresses they mean: the port on the
    host of ``http_addr`` (resp. ``grpc_addr``), as Consul binds them on its
    client address; a negative port disables the listener (Consul's -1)."""
    values = _mapping(ports, "ports")
    out: dict[str, str] = {}
    for key, value in values.items():
        field_name, base = {
            "https": ("https_addr", http_addr),
            "grpc_tls": ("grpc_tls_addr", grpc_addr),
        }.get(key, ("", ""))
        if not field_name:
            raise InvalidArgument(f"Unknown configuration key 'ports.{key}'")
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value > 65535:
            raise InvalidArgument(f"ports.{key} must be a port number, got {value!r}")
        host = base.rpartition(":")[0] or "127.0.0.1"
        out[field_name] = "" if value < 0 else f"{host}:{value}"
    return out
