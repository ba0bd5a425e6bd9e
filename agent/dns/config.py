"""DNS settings: Consul's ``domain``, ``alt_domain``, ``recursors`` and ``dns_config`` keys.

Defaults are Consul's: ``allow_stale`` true with ``max_stale`` 87600h,
``node_ttl`` and service TTLs 0, ``udp_answer_limit`` 3 (at most 8),
``a_record_limit`` 0 (no limit), ``enable_truncate`` false, ``only_passing``
false, ``recursor_strategy`` sequential, ``recursor_timeout`` 2s,
``enable_additional_node_meta_txt`` true, SOA refresh 3600, retry 600,
expire 86400, min_ttl 0. ``service_ttl`` keys are exact names, prefixes
ending in ``*``, or ``"*"`` for every service; an exact name wins, then the
longest prefix.

``use_cache`` keeps rendered answers for ``cache_max_age`` (default 1s
here): repeated questions are answered without a read, and refreshed in the
background; a health change shows after at most twice that age.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.durations import parse_duration
from agent.errors import InvalidArgument

__all__ = ["DNSConfig", "dns_config", "parse_addr"]

MAX_UDP_ANSWER_LIMIT = 8


@dataclass(frozen=True, slots=True)
class DNSConfig:
    domain: str = "consul."
    alt_domain: str = ""
    recursors: tuple[str, ...] = ()
    allow_stale: bool = True
    max_stale: float = 87600 * 3600.0
    node_ttl: float = 0.0
    service_ttl: dict[str, float] = field(default_factory=dict)
    udp_answer_limit: int = 3
    a_record_limit: int = 0
    enable_truncate: bool = False
    only_passing: bool = False
    recursor_strategy: str = "sequential"
    recursor_timeout: float = 2.0
    node_meta_txt: bool = True
    disable_compression: bool = False
    soa_refresh: int = 3600
    soa_retry: int = 600
    soa_expire: int = 86400
    soa_min_ttl: int = 0
    use_cache: bool = False
    cache_max_age: float = 1.0

    def ttl_for_service(self, service: str) -> float:
        """Consul's GetTTLForService: exact name, else the longest ``prefix*``; 0."""
        if service in self.service_ttl:
            return self.service_ttl[service]
        best = -1
        ttl = 0.0
        for key, value in self.service_ttl.items():
            if key.endswith("*") and service.startswith(key[:-1]) and len(key) > best:
                best, ttl = len(key), value
        return ttl


def _fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def parse_addr(text: str, default_port: int = 53) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` as (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise InvalidArgument(f"Invalid address {text!r}: bad port") from None
    if not host or not -1 <= number <= 65535:
        raise InvalidArgument(f"Invalid address {text!r}")
    return host, number


def _seconds(raw: dict[str, Any], key: str, default: float) -> float:
    if key not in raw or raw[key] is None:
        return default
    seconds = parse_duration(raw[key])
    if seconds < 0:
        raise InvalidArgument(f"dns_config.{key} must not be negative")
    return seconds


def _int(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"dns_config.{key} must be a non-negative integer")
    return value


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise InvalidArgument(f"dns_config.{key} must be a boolean")
    return value


_KNOWN = {
    "allow_stale",
    "max_stale",
    "node_ttl",
    "service_ttl",
    "udp_answer_limit",
    "a_record_limit",
    "enable_truncate",
    "only_passing",
    "recursor_strategy",
    "recursor_timeout",
    "enable_additional_node_meta_txt",
    "disable_compression",
    "soa",
    "use_cache",
    "cache_max_age",
}


def dns_config(
    raw: dict[str, Any] | None,
    *,
    domain: str = "consul",
    alt_domain: str = "",
    recursors: tuple[str, ...] = (),
) -> DNSConfig:
    """The DNS settings from a ``dns_config`` object and the top-level keys."""
    raw = dict(raw or {})
    unknown = set(raw) - _KNOWN
    if unknown:
        raise InvalidArgument(f"Unknown dns_config key {sorted(unknown)[0]!r}")
    strategy = raw.get("recursor_strategy", "sequential")
    if strategy not in ("sequential", "random"):
        raise InvalidArgument("dns_config.recursor_strategy must be 'sequential' or 'random'")
    service_ttl_raw = raw.get("service_ttl") or {}
    if not isinstance(service_ttl_raw, dict):
        raise InvalidArgument("dns_config.service_ttl must be an object")
    service_ttl = {str(k): parse_duration(v) for k, v in service_ttl_raw.items()}
    soa = raw.get("soa") or {}
    if not isinstance(soa, dict):
        raise InvalidArgument("dns_config.soa must be an object")
    for r in recursors:
        try:
            parse_addr(r)
        except InvalidArgument as exc:
            raise InvalidArgument(f"Invalid recursor address: {exc.message}") from None
    limit = _int(raw, "udp_answer_limit", 3)
    if limit < 1:
        raise InvalidArgument("dns_config.udp_answer_limit must be at least 1")
    return DNSConfig(
        domain=_fqdn(domain or "consul"),
        alt_domain=_fqdn(alt_domain) if alt_domain else "",
        recursors=tuple(recursors),
        allow_stale=_bool(raw, "allow_stale", True),
        max_stale=_seconds(raw, "max_stale", 87600 * 3600.0),
        node_ttl=_seconds(raw, "node_ttl", 0.0),
        service_ttl=service_ttl,
        udp_answer_limit=min(limit, MAX_UDP_ANSWER_LIMIT),
        a_record_limit=_int(raw, "a_record_limit", 0),
        enable_truncate=_bool(raw, "enable_truncate", False),
        only_passing=_bool(raw, "only_passing", False),
        recursor_strategy=strategy,
        recursor_timeout=_seconds(raw, "recursor_timeout", 2.0) or 2.0,
        node_meta_txt=_bool(raw, "enable_additional_node_meta_txt", True),
        disable_compression=_bool(raw, "disable_compression", False),
        soa_refresh=_int(soa, "refresh", 3600),
        soa_retry=_int(soa, "retry", 600),
        soa_expire=_int(soa, "expire", 86400),
        soa_min_ttl=_int(soa, "min_ttl", 0),
        use_cache=_bool(raw, "use_cache", False),
        cache_max_age=_seconds(raw, "cache_max_age", 1.0) or 1.0,
    )
