"""What a check is (``CheckSpec``) and the rules a registration must pass.

``validate_spec`` is the one place a spec is checked and normalised: the kind
is inferred when not given, timeouts get their defaults, and the interval and
``deregister_critical_service_after`` are raised to their minimums with a
warning, as Consul's agent does (``agent.addCheckLocked``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from typing import Final, Literal

import yarl

from agent.checks.status import CRITICAL, STATUSES
from agent.durations import format_duration
from agent.errors import InvalidArgument

__all__ = [
    "DEFAULT_SCRIPT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "KINDS",
    "MIN_DEREGISTER",
    "MIN_INTERVAL",
    "SCRIPTS_DISABLED",
    "CheckKind",
    "CheckSpec",
    "split_grpc_target",
    "split_host_port",
    "validate_spec",
]

logger = logging.getLogger(__name__)

CheckKind = Literal["ttl", "http", "tcp", "grpc", "script"]
KINDS: Final[tuple[CheckKind, ...]] = ("ttl", "http", "tcp", "grpc", "script")

#: Shortest interval between two runs; below it we would risk fork-bombing the
#: host with script checks (Consul's ``checks.MinInterval``).
MIN_INTERVAL: Final = 1.0
#: Shortest ``deregister_critical_service_after`` (Consul's ``minDeregister``).
MIN_DEREGISTER: Final = 60.0
#: Timeout of one HTTP, TCP or gRPC probe when none is given (Consul's default).
DEFAULT_TIMEOUT: Final = 10.0
#: Timeout of one script run when none is given (Consul's ``CheckMonitor``).
DEFAULT_SCRIPT_TIMEOUT: Final = 30.0

SCRIPTS_DISABLED: Final = (
    "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' to true"
)

_INTERVAL_KINDS: Final = frozenset({"http", "tcp", "grpc", "script"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_KIND_LABEL: Final = {"http": "HTTP", "tcp": "TCP", "grpc": "GRPC", "script": "Args", "ttl": "TTL"}


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """A check as registered on the agent: how to run it, not its state.

    Durations are seconds; 0 means "not set" (Consul's zero duration). ``kind``
    may be left empty and is then inferred from the one target field that is set
    (``ttl``, ``http``, ``tcp``, ``grpc`` or ``args``). ``status`` is the initial
    status; empty means critical. Treat ``headers`` and ``args`` as read-only.
    """

    check_id: str
    name: str = ""
    kind: CheckKind | Literal[""] = ""
    interval: float = 0.0
    timeout: float = 0.0
    ttl: float = 0.0
    http: str = ""
    method: str = "GET"
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    tls_skip_verify: bool = False
    tcp: str = ""
    grpc: str = ""
    grpc_use_tls: bool = False
    args: list[str] = field(default_factory=list)
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    deregister_critical_service_after: float | None = None
    service_id: str = ""
    status: str = ""


def split_host_port(addr: str, what: str = "TCP") -> tuple[str, int]:
    """``host`` and ``port`` of ``host:port`` or ``[v6]:port``; InvalidArgument if malformed."""
    bad = InvalidArgument(f"invalid {what} address {addr!r}: want host:port")
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise bad
        port_text = rest[1:]
    else:
        host, sep, port_text = addr.rpartition(":")
        if not sep or ":" in host:
            raise bad
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad
    return host, int(port_text)


def split_grpc_target(target: str) -> tuple[str, str]:
    """``host:port`` and service name of a gRPC check's ``host:port[/service]``."""
    addr, _, service = target.partition("/")
    split_host_port(addr, "gRPC")
    return addr, service


def _present_kinds(spec: CheckSpec) -> list[CheckKind]:
    present: list[CheckKind] = []
    if spec.http:
        present.append("http")
    if spec.tcp:
        present.append("tcp")
    if spec.grpc:
        present.append("grpc")
    if spec.args:
        present.append("script")
    if spec.ttl > 0:
        present.append("ttl")
    return present


def _check_numbers(spec: CheckSpec) -> None:
    for name in ("interval", "timeout", "ttl"):
        if getattr(spec, name) < 0:
            raise InvalidArgument(f"{name.capitalize()} must not be negative")
    for name in ("success_before_passing", "failures_before_warning", "failures_before_critical"):
        if getattr(spec, name) < 0:
            raise InvalidArgument(f"{name} must not be negative")
    dereg = spec.deregister_critical_service_after
    if dereg is not None and dereg < 0:
        raise InvalidArgument("deregister_critical_service_after must not be negative")


def _check_target(spec: CheckSpec, kind: CheckKind) -> None:
    if kind == "http":
        try:
            url = yarl.URL(spec.http)
        except ValueError as exc:
            raise InvalidArgument(f"invalid HTTP check URL {spec.http!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidArgument(
                f"invalid HTTP check URL {spec.http!r}: want http:// or https:// and a host"
            )
        if not _TOKEN.match(spec.method or "GET"):
            raise InvalidArgument(f"invalid HTTP method {spec.method!r}")
        for key, values in spec.headers.items():
            if not _TOKEN.match(key):
                raise InvalidArgument(f"invalid HTTP header name {key!r}")
            if any("\r" in v or "\n" in v for v in values):
                raise InvalidArgument(f"invalid value of HTTP header {key!r}: line break")
    elif kind == "tcp":
        split_host_port(spec.tcp)
    elif kind == "grpc":
        split_grpc_target(spec.grpc)
    elif kind == "script" and not all(isinstance(a, str) for a in spec.args):
        raise InvalidArgument("Args must be strings")


def validate_spec(
    spec: CheckSpec,
    *,
    enable_script_checks: bool,
    min_interval: float = MIN_INTERVAL,
) -> CheckSpec:
    """``spec`` checked and normalised, or InvalidArgument with Consul's wording.

    The returned spec has its ``kind``, ``check_id``, ``name``, ``method``,
    ``timeout`` and ``status`` filled in, its interval raised to ``min_interval``
    and its ``deregister_critical_service_after`` raised to 1 min (each with a
    warning in the log, as Consul does). ``min_interval`` is lowered only by
    tests; the agent keeps Consul's 1 s.
    """
    check_id = spec.check_id or spec.name
    if not check_id:
        raise InvalidArgument("Missing check name")
    name = spec.name or check_id
    _check_numbers(spec)

    present = _present_kinds(spec)
    if spec.kind and spec.kind not in KINDS:
        raise InvalidArgument(f"invalid check kind {spec.kind!r}: want one of {', '.join(KINDS)}")
    if len(present) > 1:
        if "ttl" in present and spec.interval > 0:
            raise InvalidArgument("Interval and TTL cannot both be specified")
        labels = " and ".join(_KIND_LABEL[k] for k in present)
        raise InvalidArgument(f"Only one of HTTP, TCP, GRPC, Args or TTL may be set; got {labels}")
    kind: CheckKind
    if spec.kind:
        kind = spec.kind
        if present and present[0] != kind:
            raise InvalidArgument(
                f"a {kind} check cannot have {_KIND_LABEL[present[0]]} set"
            )
    elif present:
        kind = present[0]
    elif spec.interval > 0:
        raise InvalidArgument("Interval is set but none of HTTP, TCP, GRPC or Args is")
    else:
        raise InvalidArgument("TTL must be > 0 for TTL checks")

    if kind == "ttl":
        if spec.ttl <= 0:
            raise InvalidArgument("TTL must be > 0 for TTL checks")
        if spec.interval > 0:
            raise InvalidArgument("Interval and TTL cannot both be specified")
    else:
        if not present:
            raise InvalidArgument(f"a {kind} check needs {_KIND_LABEL[kind]} set")
        if spec.interval <= 0:
            raise InvalidArgument("Interval must be > 0 for Script, HTTP, TCP or GRPC checks")
    if kind == "script" and not enable_script_checks:
        raise InvalidArgument(SCRIPTS_DISABLED)
    _check_target(spec, kind)

    status = spec.status or CRITICAL
    if status not in STATUSES:
        raise InvalidArgument(f"Bad check status {spec.status!r}")

    interval = spec.interval
    if kind in _INTERVAL_KINDS and interval < min_interval:
        logger.warning(
            "check has interval below minimum check=%s minimum_interval=%s",
            check_id, format_duration(min_interval),
        )
        interval = min_interval
    timeout = spec.timeout
    if kind in _INTERVAL_KINDS and timeout <= 0:
        timeout = DEFAULT_SCRIPT_TIMEOUT if kind == "script" else DEFAULT_TIMEOUT
    dereg = spec.deregister_critical_service_after or None  # 0 means "never"
    if dereg is not None and dereg < MIN_DEREGISTER:
        logger.warning(
            "check has deregister interval below minimum check=%s minimum_interval=%s",
            check_id, format_duration(MIN_DEREGISTER),
        )
        dereg = MIN_DEREGISTER
    if kind == "grpc" and spec.grpc_use_tls and spec.tls_skip_verify:
        logger.warning(
            "tls_skip_verify is not supported for gRPC checks; the server certificate "
            "is verified check=%s", check_id,
        )
    return dataclasses.replace(
        spec,
        check_id=check_id,
        name=name,
        kind=kind,
        interval=interval,
        timeout=timeout,
        method=spec.method or "GET",
        headers={k: list(v) for k, v in spec.headers.items()},
        args=list(spec.args),
        deregister_critical_service_after=dereg,
        status=status,
    )
