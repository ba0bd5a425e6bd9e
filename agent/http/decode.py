"""Consul's JSON request bodies to our protobuf messages.

The shapes are Consul's: an agent service definition (``Name``, ``ID``,
``Tags``, ``Check``/``Checks``...), an agent check definition (``TTL``,
``HTTP``, ``TCP``, ``GRPC`` or ``Args`` with ``Interval``...), and the
catalog's register and deregister requests. Validation here is about form
(types, a known check type, an interval where one is needed); the local agent
and the servers validate meaning.
"""

from __future__ import annotations

from agent.durations import seconds_duration
from agent.errors import InvalidArgument
from agent.http.connect_decode import apply_connect_fields, sidecar_fields
from agent.http.params import Fields
from agent.state.services import validate_service
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import types_pb2 as pb

__all__ = [
    "STATUS_BY_NAME",
    "catalog_deregister",
    "catalog_register",
    "check_definition",
    "parse_status",
    "service_definition",
]

STATUS_BY_NAME: dict[str, pb.HealthStatus.ValueType] = {
    "passing": pb.HEALTH_STATUS_PASSING,
    "warning": pb.HEALTH_STATUS_WARNING,
    "critical": pb.HEALTH_STATUS_CRITICAL,
}

# Check types Consul has and we do not run; naming one is a 400, not a silent no-op.
_UNSUPPORTED_TYPES = (
    "Script",
    "DockerContainerID",
    "Shell",
    "AliasNode",
    "H2PING",
    "UDP",
    "OSService",
)
_MAX_PORT = 65535


def parse_status(text: str, what: str = "Status") -> pb.HealthStatus.ValueType:
    """``passing``/``warning``/``critical`` as a HealthStatus; anything else is a 400."""
    status = STATUS_BY_NAME.get(text.lower())
    if status is None:
        raise InvalidArgument(
            f"Invalid {what} {text!r}: must be 'passing', 'warning' or 'critical'"
        )
    return status


def _definition(f: Fields) -> pb.CheckDefinition:
    """How a check runs, from the fields of a Consul check definition."""
    d = pb.CheckDefinition(
        http=f.text("HTTP"),
        method=f.text("Method"),
        body=f.text("Body"),
        tls_skip_verify=f.boolean("TLSSkipVerify"),
        tcp=f.text("TCP"),
        grpc=f.text("GRPC"),
        grpc_use_tls=f.boolean("GRPCUseTLS"),
        args=f.strings("Args", "ScriptArgs"),
        success_before_passing=f.integer("SuccessBeforePassing", lo=0),
        failures_before_critical=f.integer("FailuresBeforeCritical", lo=0),
        alias_service=f.text("AliasService"),
    )
    for key, values in f.header_map("Header").items():
        d.headers[key].values.extend(values)
    for name, field in (
        ("Interval", "interval"),
        ("Timeout", "timeout"),
        ("TTL", "ttl"),
        ("DeregisterCriticalServiceAfter", "deregister_critical_service_after"),
    ):
        seconds = f.duration(name)
        if seconds is not None:
            getattr(d, field).CopyFrom(seconds_duration(seconds))
    return d


def _check_type(f: Fields, d: pb.CheckDefinition) -> None:
    """Exactly one known check type, with an interval unless it is a TTL check."""
    for name in _UNSUPPORTED_TYPES:
        if f.has(name):
            if name == "Script":
                raise InvalidArgument("Invalid check: Script is not supported; use Args")
            raise InvalidArgument(f"Invalid check: {name} checks are not supported")
    kinds = [
        name
        for name, present in (
            ("TTL", d.HasField("ttl")),
            ("HTTP", bool(d.http)),
            ("TCP", bool(d.tcp)),
            ("GRPC", bool(d.grpc)),
            ("Args", bool(d.args)),
            ("AliasService", bool(d.alias_service)),
        )
        if present
    ]
    if not kinds:
        raise InvalidArgument("Invalid check: must provide TTL, or HTTP, TCP, GRPC or Args")
    if len(kinds) > 1:
        raise InvalidArgument(f"Invalid check: only one check type allowed, got {', '.join(kinds)}")
    no_interval = d.interval.seconds == 0 and d.interval.nanos == 0
    if kinds not in (["TTL"], ["AliasService"]) and no_interval:
        raise InvalidArgument(
            "Invalid check: Interval must be > 0 for Script, HTTP, TCP or GRPC checks"
        )


def check_definition(f: Fields, *, service_id: str = "") -> apb.CheckDefinition:
    """An agent check definition (``/v1/agent/check/register``, a service's ``Check``)."""
    d = _definition(f)
    _check_type(f, d)
    status = f.text("Status")
    return apb.CheckDefinition(
        check_id=f.text("CheckID", "ID"),
        name=f.text("Name"),
        notes=f.text("Notes"),
        service_id=service_id or f.text("ServiceID"),
        status=parse_status(status) if status else pb.HEALTH_STATUS_UNSPECIFIED,
        definition=d,
    )


def _weights(f: Fields) -> pb.Weights | None:
    w = f.obj("Weights")
    if w is None:
        return None
    passing = w.integer("Passing") if w.has("Passing") else 1
    if passing < 1:
        raise InvalidArgument("Invalid Weights: Passing must be greater than 0")
    warning = w.integer("Warning", lo=0) if w.has("Warning") else 1
    return pb.Weights(passing=passing, warning=warning)


def _is_empty(f: Fields) -> bool:
    return not any(f.get(k) not in ("", 0, False, [], {}) for k in f.names())


def service_definition(f: Fields, *, sidecar: bool = False) -> apb.ServiceDefinition:
    """An agent service definition (``/v1/agent/service/register``).

    A ``sidecar`` (``Connect.SidecarService``) may leave its name, port and
    proxy to the agent, which fills them (``agent.local``) and validates it then.
    """
    name = f.text("Name")
    if not name and not sidecar:
        raise InvalidArgument("Missing service name")
    if sidecar and f.text("ID"):
        raise InvalidArgument(
            "Validation failed: 1 error occurred:\n\t* A SidecarService cannot specify an ID"
            " as this is managed by the agent\n\n"
        )
    svc = pb.Service(
        id="" if sidecar else (f.text("ID") or name),
        name=name,
        tags=f.strings("Tags"),
        address=f.text("Address"),
        port=f.integer("Port", lo=0, hi=_MAX_PORT),
        meta=f.string_map("Meta"),
        enable_tag_override=f.boolean("EnableTagOverride"),
        kind=f.text("Kind"),
    )
    weights = _weights(f)
    if weights is not None:
        svc.weights.CopyFrom(weights)
    checks: list[Fields] = []
    single = f.obj("Check")
    if single is not None and not _is_empty(single):
        checks.append(single)
    checks.extend(f.objs("Checks"))
    apply_connect_fields(f, svc)
    definition = apb.ServiceDefinition(
        service=svc,
        checks=[check_definition(c, service_id=svc.id) for c in checks],
    )
    side = sidecar_fields(f)
    if side is not None:
        if sidecar:
            raise InvalidArgument(
                "Validation failed: 1 error occurred:\n\t* A SidecarService cannot have"
                " a nested SidecarService\n\n"
            )
        definition.sidecar_service.CopyFrom(service_definition(side, sidecar=True))
    if not sidecar:
        validate_service(svc, sidecar=side is not None)
    return definition


def _catalog_service(f: Fields) -> pb.Service:
    svc = pb.Service(
        id=f.text("ID"),
        name=f.text("Service", "Name"),
        tags=f.strings("Tags"),
        address=f.text("Address"),
        port=f.integer("Port", lo=0, hi=_MAX_PORT),
        meta=f.string_map("Meta"),
        enable_tag_override=f.boolean("EnableTagOverride"),
        kind=f.text("Kind"),
    )
    if not svc.id:
        svc.id = svc.name
    weights = _weights(f)
    if weights is not None:
        svc.weights.CopyFrom(weights)
    apply_connect_fields(f, svc)
    if svc.name:
        validate_service(svc)
    return svc


def _catalog_check(f: Fields, node: str) -> pb.HealthCheck:
    status = f.text("Status")
    check = pb.HealthCheck(
        node=f.text("Node") or node,
        check_id=f.text("CheckID", "ID"),
        name=f.text("Name"),
        status=parse_status(status) if status else pb.HEALTH_STATUS_UNSPECIFIED,
        notes=f.text("Notes"),
        output=f.text("Output"),
        service_id=f.text("ServiceID"),
        type=f.text("Type"),
    )
    if not check.check_id:
        check.check_id = check.name
    definition = f.obj("Definition")
    if definition is not None:
        check.definition.CopyFrom(_definition(definition))
    return check


def catalog_register(f: Fields) -> cpb.RegisterRequest:
    """The catalog's register body (``/v1/catalog/register``), without write options."""
    node_name = f.text("Node")
    node = pb.Node(
        id=f.text("ID"),
        name=node_name,
        address=f.text("Address"),
        datacenter=f.text("Datacenter"),
        tagged_addresses=f.string_map("TaggedAddresses"),
        meta=f.string_map("NodeMeta"),
    )
    req = cpb.RegisterRequest(node=node, skip_node_update=f.boolean("SkipNodeUpdate"))
    service = f.obj("Service")
    if service is not None:
        req.service.CopyFrom(_catalog_service(service))
    checks: list[Fields] = []
    single = f.obj("Check")
    if single is not None:
        checks.append(single)
    checks.extend(f.objs("Checks"))
    req.checks.extend(_catalog_check(c, node_name) for c in checks)
    return req


def catalog_deregister(f: Fields) -> cpb.DeregisterRequest:
    """The catalog's deregister body (``/v1/catalog/deregister``), without write options."""
    return cpb.DeregisterRequest(
        node=f.text("Node"),
        service_id=f.text("ServiceID"),
        check_id=f.text("CheckID"),
    )
