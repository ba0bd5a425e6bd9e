"""Agent check definitions (protobuf) to check-runner specs, and back."""

from __future__ import annotations

from agent.checks import CheckSpec
from agent.durations import duration_seconds, seconds_duration
from agent.errors import InvalidArgument
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb

__all__ = ["STATUS_OF", "STATUS_PB", "check_type", "spec_from_definition"]

STATUS_PB = {
    "passing": pb.HEALTH_STATUS_PASSING,
    "warning": pb.HEALTH_STATUS_WARNING,
    "critical": pb.HEALTH_STATUS_CRITICAL,
    "maintenance": pb.HEALTH_STATUS_MAINTENANCE,
}
STATUS_OF = {v: k for k, v in STATUS_PB.items()}


def check_type(d: pb.CheckDefinition) -> str:
    for kind, present in (
        ("ttl", d.HasField("ttl")),
        ("http", bool(d.http)),
        ("tcp", bool(d.tcp)),
        ("grpc", bool(d.grpc)),
        ("script", bool(d.args)),
    ):
        if present:
            return kind
    return ""


def spec_from_definition(check: apb.CheckDefinition) -> CheckSpec:
    d = check.definition
    if check.status not in (pb.HEALTH_STATUS_UNSPECIFIED, *STATUS_PB.values()):
        raise InvalidArgument(f"Unknown check status {check.status}")
    dereg = (
        duration_seconds(d.deregister_critical_service_after, "DeregisterCriticalServiceAfter")
        if d.HasField("deregister_critical_service_after")
        else None
    )
    return CheckSpec(
        check_id=check.check_id,
        name=check.name,
        interval=duration_seconds(d.interval, "Interval"),
        timeout=duration_seconds(d.timeout, "Timeout"),
        ttl=duration_seconds(d.ttl, "TTL"),
        http=d.http,
        method=d.method or "GET",
        headers={k: list(v.values) for k, v in d.headers.items()},
        body=d.body,
        tls_skip_verify=d.tls_skip_verify,
        tcp=d.tcp,
        grpc=d.grpc,
        grpc_use_tls=d.grpc_use_tls,
        args=list(d.args),
        success_before_passing=d.success_before_passing,
        failures_before_critical=d.failures_before_critical,
        deregister_critical_service_after=dereg or None,
        service_id=check.service_id,
        status=STATUS_OF.get(check.status, ""),
    )


def definition_from_spec(spec: CheckSpec, notes: str = "") -> apb.CheckDefinition:
    """The normalised spec as a definition (what the agent lists and persists)."""
    d = pb.CheckDefinition(
        http=spec.http,
        method=spec.method if spec.http else "",
        body=spec.body,
        tls_skip_verify=spec.tls_skip_verify,
        tcp=spec.tcp,
        grpc=spec.grpc,
        grpc_use_tls=spec.grpc_use_tls,
        args=spec.args,
        success_before_passing=spec.success_before_passing,
        failures_before_critical=spec.failures_before_critical,
    )
    for key, values in spec.headers.items():
        d.headers[key].values.extend(values)
    if spec.interval:
        d.interval.CopyFrom(seconds_duration(spec.interval))
    if spec.timeout:
        d.timeout.CopyFrom(seconds_duration(spec.timeout))
    if spec.ttl:
        d.ttl.CopyFrom(seconds_duration(spec.ttl))
    if spec.deregister_critical_service_after:
        d.deregister_critical_service_after.CopyFrom(
            seconds_duration(spec.deregister_critical_service_after)
        )
    return apb.CheckDefinition(
        check_id=spec.check_id,
        name=spec.name,
        notes=notes,
        service_id=spec.service_id,
        status=STATUS_PB.get(spec.status, pb.HEALTH_STATUS_UNSPECIFIED),
        definition=d,
    )
