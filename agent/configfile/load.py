"""Loading ``-config-file`` and ``-config-dir`` sources as Consul does.

Order (Consul's ``config.Load``): the sources in the order given on the
command line; a directory's ``.json`` and ``.hcl`` files in lexical order
(other files and subdirectories are skipped). Merge (Consul's ``merge.go``):
a later value replaces an earlier one, lists are appended (``retry_join``,
``services``, ``checks``...), free-form maps (``node_meta``) are overlaid key
by key. Flags are applied on top by the caller (``AgentConfig.merged``).

Every key is checked against :data:`agent.configfile.keys.KEYS`: unknown
keys and wrong types are a :class:`~agent.configfile.parse.ConfigError`
naming the file and line; keys for machinery we lack give a warning.
Service and check definitions are decoded (and validated) here, with the
same code as ``/v1/agent/service/register``, so ``validate`` catches a bad
one before an agent starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.configfile.keys import (
    ACCEPTED,
    ANY,
    BLOCK,
    BOOL,
    CHECKS,
    DURATION,
    FLOAT,
    INT,
    KEYS,
    LIST,
    MAP,
    PLANNED,
    SERVICES,
    STR,
    SUPPORTED,
    KeySpec,
    fold,
    lookup,
)
from agent.configfile.parse import FORMATS, ConfigError, Source, plain, read_source
from agent.durations import parse_duration
from agent.errors import InvalidArgument
from agent.http.decode import check_definition, service_definition
from agent.http.params import Fields
from generated.consul.agent.v1 import agent_pb2 as apb

__all__ = ["LoadedConfig", "expand_sources", "load_sources"]

_SERVICE_KEYS = {
    fold(k)
    for k in [
        "name",
        "id",
        "tags",
        "address",
        "tagged_addresses",
        "meta",
        "port",
        "socket_path",
        "enable_tag_override",
        "check",
        "checks",
        "kind",
        "proxy",
        "connect",
        "weights",
        "token",
        "namespace",
        "partition",
        "locality",
    ]
}
_CHECK_KEYS = {
    fold(k)
    for k in [
        "id",
        "check_id",
        "name",
        "notes",
        "service_id",
        "token",
        "status",
        "args",
        "script_args",
        "http",
        "header",
        "method",
        "body",
        "disable_redirects",
        "tcp",
        "tcp_use_tls",
        "udp",
        "interval",
        "docker_container_id",
        "shell",
        "grpc",
        "grpc_use_tls",
        "h2ping",
        "h2ping_use_tls",
        "tls_server_name",
        "tls_skip_verify",
        "timeout",
        "ttl",
        "alias_node",
        "alias_service",
        "success_before_passing",
        "failures_before_warning",
        "failures_before_critical",
        "deregister_critical_service_after",
        "output_max_size",
        "os_service",
        "script",
        "type",
    ]
}


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """What the config sources say, ready for ``AgentConfig.merged``."""

    #: AgentConfig field name -> value (durations as Consul wrote them, lists as tuples).
    values: dict[str, Any] = field(default_factory=dict)
    services: tuple[apb.ServiceDefinition, ...] = ()
    checks: tuple[apb.CheckDefinition, ...] = ()
    #: One line per key accepted but not used, ``file:line: ...``.
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


def expand_sources(sources: list[tuple[str, str]]) -> list[str]:
    """The files to read, in Consul's order, from ``("file"|"dir", path)`` sources."""
    files: list[str] = []
    for kind, path in sources:
        if kind == "file":
            files.append(path)
            continue
        d = Path(path)
        if not d.is_dir():
            raise ConfigError(path, None, "config directory does not exist")
        for entry in sorted(d.iterdir(), key=lambda p: p.name):
            if entry.is_file() and entry.suffix.lower() in FORMATS:
                files.append(str(entry))
    return files


class _Walker:
    """Check one file's keys; collect its flat values, services, checks and warnings."""

    def __init__(self, source: Source) -> None:
        self.src = source
        self.flat: dict[str, Any] = {}
        self.services: list[apb.ServiceDefinition] = []
        self.checks: list[apb.CheckDefinition] = []
        self.warnings: list[str] = []

    def error(self, at: tuple[str | int, ...], message: str) -> ConfigError:
        return ConfigError(self.src.path, self.src.line_of(at), message)

    def walk(self, data: dict[str, Any], parent: str, at: tuple[str | int, ...]) -> None:
        for key, raw in data.items():
            here = (*at, key)
            found = lookup(parent, key)
            if found is None:
                dotted = f"{parent}.{key}" if parent else key
                raise self.error(here, f"invalid config key {dotted}")
            path, spec = found
            if spec.use in (ACCEPTED, PLANNED):
                why = (
                    "not supported by consul-grpc yet"
                    if spec.use is PLANNED
                    else "has no effect in consul-grpc"
                )
                line = self.src.line_of(here)
                where = f"{self.src.path}:{line}" if line else self.src.path
                self.warnings.append(f"{where}: config key {path} is accepted but {why}")
            self.value(path, spec, raw, here)

    def value(self, path: str, spec: KeySpec, raw: Any, at: tuple[str | int, ...]) -> None:
        if spec.shape == SERVICES:
            for n, item in enumerate(self._objects(raw, at)):
                self.services.append(self.service(item, (*at, n)))
            return
        if spec.shape == CHECKS:
            for n, item in enumerate(self._objects(raw, at)):
                self.checks.append(self.check(item, (*at, n)))
            return
        if spec.shape == BLOCK:
            merged: dict[str, Any] = {}
            for item in self._objects(raw, at):
                merged.update(item)
            self.walk(merged, path, at)
            return
        value = plain(raw)
        if spec.shape == MAP and not isinstance(value, dict):
            raise self.error(at, f"{path} must be an object")
        if spec.shape != ANY:
            value = self._typed(path, spec.shape, value, at)
        if path == "ports.grpc" and value < 0:
            raise self.error(
                at, "ports.grpc cannot be disabled: the agent's gRPC API is its address"
            )
        self.flat[path] = value

    def _objects(self, raw: Any, at: tuple[str | int, ...]) -> list[dict[str, Any]]:
        """A block or list of blocks/objects as a list of plain objects."""
        items = raw if isinstance(raw, list) else [raw]
        out = []
        for item in items:
            if not isinstance(item, dict):
                raise self.error(at, f"{at[-1]} must be an object or a list of objects")
            out.append(plain(item))
        return out

    def _typed(self, path: str, shape: str, value: Any, at: tuple[str | int, ...]) -> Any:
        def bad(want: str) -> ConfigError:
            return self.error(at, f"{path} must be {want}, not {value!r}"[:200])

        if shape == STR:
            if not isinstance(value, str):
                raise bad("a string")
        elif shape == BOOL:
            if not isinstance(value, bool):
                raise bad("a boolean")
        elif shape == INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad("an integer")
        elif shape == FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad("a number")
        elif shape == DURATION:
            try:
                parse_duration(value)
            except InvalidArgument:
                raise bad('a duration such as "10s"') from None
        elif shape == LIST:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise bad("a list")
            value = tuple(value)
        return value

    def _unknown(self, item: dict[str, Any], allowed: set[str], what: str, at: Any) -> None:
        for key in item:
            if fold(key) not in allowed:
                raise self.error((*at, key), f"invalid config key {what}.{key}")

    def service(self, item: dict[str, Any], at: tuple[str | int, ...]) -> apb.ServiceDefinition:
        self._unknown(item, _SERVICE_KEYS, "service", at)
        body = dict(item)
        checks: list[Any] = []
        for key in list(body):
            if fold(key) in ("check", "checks"):
                raw = body.pop(key)
                checks.extend(raw if isinstance(raw, list) else [raw])
        for n, check in enumerate(checks):
            if isinstance(check, dict):
                self._unknown(check, _CHECK_KEYS, "service.check", (*at, "check", n))
        if checks:
            body["checks"] = checks
        try:
            return service_definition(Fields(body, "service"))
        except InvalidArgument as exc:
            name = body.get("name") or body.get("Name") or "?"
            raise self.error(at, f"service {name!r}: {_clean(exc.message)}") from None

    def check(self, item: dict[str, Any], at: tuple[str | int, ...]) -> apb.CheckDefinition:
        self._unknown(item, _CHECK_KEYS, "check", at)
        try:
            c = check_definition(Fields(item, "check"))
        except InvalidArgument as exc:
            raise self.error(at, f"check: {_clean(exc.message)}") from None
        if not c.name:
            raise self.error(at, "check: missing check name")
        return c


def _clean(message: str) -> str:
    return message.removeprefix("Request decode failed: ")


def _merge(into: dict[str, Any], flat: dict[str, Any]) -> None:
    for path, value in flat.items():
        old = into.get(path)
        if isinstance(value, tuple) and isinstance(old, tuple):
            into[path] = old + value
        elif isinstance(value, dict) and isinstance(old, dict):
            into[path] = {**old, **value}
        else:
            into[path] = value


def _address(host: str | None, port: int | None, current: str) -> str:
    cur_host, _, cur_port = current.rpartition(":")
    if host is not None:
        host = host.split()[0] if host.split() else cur_host
    return f"{host if host is not None else cur_host}:{port if port is not None else cur_port}"


def _values(flat: dict[str, Any], defaults: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path, value in flat.items():
        spec = KEYS[path]
        if spec.field is None or spec.use is not SUPPORTED:
            continue
        old = values.get(spec.field)
        if isinstance(value, tuple) and isinstance(old, tuple):
            value = old + value
        values[spec.field] = value
    client = flat.get("client_addr")
    for name, field_name in (("http", "http_addr"), ("grpc", "grpc_addr")):
        host = flat.get(f"addresses.{name}", client)
        port = flat.get(f"ports.{name}")
        if field_name in values or (host is None and port is None):
            continue
        if port is not None and port < 0:
            values[field_name] = ""
            continue
        values[field_name] = _address(host, port, defaults[field_name])
    # ports.https / ports.grpc_tls: on the host of the HTTP (resp. gRPC) address.
    for name, field_name, base in (
        ("https", "https_addr", "http_addr"),
        ("grpc_tls", "grpc_tls_addr", "grpc_addr"),
    ):
        port = flat.get(f"ports.{name}")
        if port is None or field_name in values:
            continue
        host = (values.get(base) or defaults[base]).rpartition(":")[0] or "127.0.0.1"
        values[field_name] = "" if port < 0 else f"{host}:{port}"
    if "ports.server" in flat and "rpc_addr" not in values:
        values["rpc_addr"] = _address(None, flat["ports.server"], defaults["rpc_addr"])
    return values


def load_sources(
    sources: list[tuple[str, str]], defaults: dict[str, str] | None = None
) -> LoadedConfig:
    """Read, check and merge ``sources`` (``("file"|"dir", path)``, in command-line order).

    ``defaults``: the current ``http_addr``/``grpc_addr``/``rpc_addr``, which
    ``client_addr``, ``addresses`` and ``ports`` change part of.
    """
    files = expand_sources(sources)
    flat: dict[str, Any] = {}
    services: list[apb.ServiceDefinition] = []
    checks: list[apb.CheckDefinition] = []
    warnings: list[str] = []
    for path in files:
        walker = _Walker(read_source(path))
        walker.walk(walker.src.data, "", ())
        _merge(flat, walker.flat)
        services.extend(walker.services)
        checks.extend(walker.checks)
        warnings.extend(walker.warnings)
    base = {
        "http_addr": "127.0.0.1:8500",
        "grpc_addr": "127.0.0.1:8502",
        "rpc_addr": "127.0.0.1:8300",
    }
    base.update(defaults or {})
    return LoadedConfig(
        values=_values(flat, base),
        services=tuple(services),
        checks=tuple(checks),
        warnings=tuple(warnings),
        files=tuple(files),
    )
