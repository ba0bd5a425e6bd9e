"""Consul's validation of a service's kind and Connect settings (``NodeService.Validate``).

Run by the local agent on a registration (after a sidecar got its port) and by
the servers on a catalog register, so both answer Consul's text: 400
``Validation failed: <multierror>``.
"""

from __future__ import annotations

from agent.errors import InvalidArgument
from generated.consul.common.v1 import types_pb2 as pb

__all__ = [
    "CONNECT_PROXY",
    "GATEWAY_KINDS",
    "KINDS",
    "connect_targets",
    "multierror",
    "validate_service",
]

CONNECT_PROXY = "connect-proxy"
GATEWAY_KINDS = frozenset({"mesh-gateway", "terminating-gateway", "ingress-gateway", "api-gateway"})
KINDS = frozenset({"", CONNECT_PROXY, *GATEWAY_KINDS})


def connect_targets(svc: pb.Service) -> set[str]:
    """The service names ``svc`` is a Connect endpoint of (``/v1/health/connect/<name>``):
    a proxy's destination, a Connect-native service's own name."""
    if svc.kind == CONNECT_PROXY and svc.proxy.destination_service_name:
        return {svc.proxy.destination_service_name}
    if svc.connect.native:
        return {svc.name}
    return set()


def validate_service(svc: pb.Service, *, sidecar: bool = False) -> None:
    """Consul's ``NodeService.Validate``, which both the agent and the catalog run.

    A sidecar is validated after the agent has given it a port. Several
    failures are reported together, in Consul's multierror text.
    """
    errors: list[str] = []
    kind = svc.kind
    if kind not in KINDS:
        errors.append(
            f'Kind "{kind}" is not a service kind: use "", "connect-proxy", "mesh-gateway",'
            ' "terminating-gateway", "ingress-gateway" or "api-gateway"'
        )
    proxy = svc.proxy
    if kind == CONNECT_PROXY:
        if svc.port == 0:
            errors.append(f"Port or SocketPath must be set for a {kind}")
        if not proxy.destination_service_name.strip():
            errors.append(
                "Proxy.DestinationServiceName must be non-empty for Connect proxy services"
            )
        if proxy.destination_service_name == "*":
            errors.append(
                "Proxy.DestinationServiceName must not be a wildcard for Connect proxy services"
            )
        if svc.connect.native:
            errors.append("A Proxy cannot also be Connect Native, only typical services")
    if kind in GATEWAY_KINDS:
        if svc.port == 0 and kind not in ("ingress-gateway", "api-gateway"):
            errors.append(f"Port must be non-zero for a {kind}")
        if sidecar:
            errors.append(f"A {kind} cannot have a sidecar service defined")
        for field, name in (
            (proxy.destination_service_name, "DestinationServiceName"),
            (proxy.destination_service_id, "DestinationServiceID"),
            (proxy.local_service_address, "LocalServiceAddress"),
            (proxy.local_service_port, "LocalServicePort"),
            (proxy.local_service_socket_path, "LocalServiceSocketPath"),
            (len(proxy.upstreams), "Upstreams"),
        ):
            if field:
                errors.append(f"The Proxy.{name} configuration is invalid for a {kind}")
    if svc.connect.native and svc.port == 0:
        errors.append("Port or SocketPath must be set for a Connect native service.")
    if errors:
        raise InvalidArgument(f"Validation failed: {multierror(errors)}")


def multierror(errors: list[str]) -> str:
    """go-multierror's text, which Consul's answers carry verbatim."""
    head = "1 error occurred:" if len(errors) == 1 else f"{len(errors)} errors occurred:"
    return head + "".join(f"\n\t* {e}" for e in errors) + "\n\n"
