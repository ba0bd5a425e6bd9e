"""The table of every RPC a client agent may forward, read from the generated descriptors.

A :class:`MethodSpec` is what the pool needs to make a call (path, message
classes) and what the client needs to decide whether a retry is safe (``read``:
the proto marks the method ``idempotency_level = NO_SIDE_EFFECTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from generated.consul.acl.v1 import acl_pb2
from generated.consul.catalog.v1 import catalog_pb2
from generated.consul.config.v1 import config_pb2
from generated.consul.coordinate.v1 import coordinate_pb2
from generated.consul.event.v1 import event_pb2
from generated.consul.health.v1 import health_pb2
from generated.consul.kv.v1 import kv_pb2
from generated.consul.membership.v1 import membership_pb2
from generated.consul.operator.v1 import operator_pb2
from generated.consul.query.v1 import query_pb2
from generated.consul.session.v1 import session_pb2
from generated.consul.snapshot.v1 import snapshot_pb2
from generated.consul.status.v1 import status_pb2
from generated.consul.subscribe.v1 import subscribe_pb2
from generated.consul.txn.v1 import txn_pb2

__all__ = [
    "CLIENT_FORWARDED_SERVICES",
    "SERVER_SERVICES",
    "MethodSpec",
    "all_methods",
    "method_spec",
    "methods_of",
    "request_datacenter",
    "request_wait",
    "with_datacenter",
]

_FORWARDED_MODULES: tuple[ModuleType, ...] = (
    catalog_pb2,
    health_pb2,
    kv_pb2,
    status_pb2,
    membership_pb2,
    session_pb2,
    event_pb2,
    txn_pb2,
    snapshot_pb2,
    config_pb2,
    acl_pb2,
    query_pb2,
    operator_pb2,
    subscribe_pb2,
    coordinate_pb2,
)


#: Every service a server serves on its RPC address.
SERVER_SERVICES: tuple[ServiceDescriptor, ...] = tuple(
    service
    for module in _FORWARDED_MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
)
#: Services client agents use themselves and do not serve to applications.
_AGENTS_ONLY = frozenset(
    {"consul.membership.v1.MembershipService", "consul.subscribe.v1.SubscribeService"}
)
#: What a client agent serves by forwarding each call to a server (membership
#: and subscriptions are the agents' own business, not an application's).
CLIENT_FORWARDED_SERVICES: tuple[ServiceDescriptor, ...] = tuple(
    s for s in SERVER_SERVICES if s.full_name not in _AGENTS_ONLY
)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC: its wire path, its message classes, and whether it only reads."""

    path: str
    request_type: type[Message]
    response_type: type[Message]
    read: bool
    server_streaming: bool

    @property
    def service(self) -> str:
        """Full name of the service, e.g. ``consul.catalog.v1.CatalogService``."""
        return self.path.split("/")[1]

    @property
    def name(self) -> str:
        """Method name, e.g. ``ListNodes``."""
        return self.path.rsplit("/", 1)[1]


def _spec(service: ServiceDescriptor, method: MethodDescriptor) -> MethodSpec:
    options = method.GetOptions()
    return MethodSpec(
        path=f"/{service.full_name}/{method.name}",
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
        read=options.idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        server_streaming=bool(method.server_streaming),
    )


def methods_of(service: ServiceDescriptor) -> list[MethodSpec]:
    """Every method of ``service``, in declaration order."""
    return [_spec(service, method) for method in service.methods]


def _build_table() -> dict[str, MethodSpec]:
    table: dict[str, MethodSpec] = {}
    for module in _FORWARDED_MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for spec in methods_of(service):
                table[spec.path] = spec
    return table


_TABLE: dict[str, MethodSpec] = _build_table()


def method_spec(path: str) -> MethodSpec:
    """The spec of ``path`` (``/consul.catalog.v1.CatalogService/ListNodes``).

    Raises KeyError, with the path in the message, for an unknown method.
    """
    try:
        return _TABLE[path]
    except KeyError:
        raise KeyError(f"unknown RPC method: {path!r}") from None


def all_methods() -> list[MethodSpec]:
    """Every forwarded method, by path."""
    return [_TABLE[path] for path in sorted(_TABLE)]


def _has_field(msg: Message, name: str) -> bool:
    return name in msg.DESCRIPTOR.fields_by_name


def request_datacenter(msg: Message) -> str:
    """The datacenter a request names in its QueryOptions or WriteOptions; "" for none."""
    for name in ("options", "write"):
        if _has_field(msg, name) and msg.HasField(name):
            datacenter: str = getattr(msg, name).datacenter
            return datacenter
    if _has_field(msg, "datacenter"):
        plain: str = getattr(msg, "datacenter")  # noqa: B009 - not every message has it
        return plain
    return ""


def with_datacenter(msg: Message, datacenter: str) -> Message:
    """``msg`` naming ``datacenter`` if it names none; a copy when it changes.

    The datacenter goes into the QueryOptions (``options``) or WriteOptions
    (``write``) of the request, or a plain ``datacenter`` field. A request that
    already names one, or has no such field, is returned as is.
    """
    if not datacenter or request_datacenter(msg):
        return msg
    for name in ("options", "write"):
        if _has_field(msg, name):
            copy = type(msg)()
            copy.CopyFrom(msg)
            getattr(copy, name).datacenter = datacenter
            return copy
    if _has_field(msg, "datacenter"):
        copy = type(msg)()
        copy.CopyFrom(msg)
        setattr(copy, "datacenter", datacenter)  # noqa: B010 - not every message has it
        return copy
    return msg


def request_wait(msg: Message) -> float:
    """Seconds a blocking read may wait on the server; 0 when it does not block.

    A read blocks when its QueryOptions carry a ``min_index`` > 0. Without a
    ``max_wait`` the server's default (5 min) applies; the server caps it at 10 min.
    """
    if not (_has_field(msg, "options") and msg.HasField("options")):
        return 0.0
    options = getattr(msg, "options")  # noqa: B009
    if options.min_index == 0:
        return 0.0
    if options.HasField("max_wait"):
        wait = options.max_wait.seconds + options.max_wait.nanos / 1e9
        if wait > 0:
            return float(min(wait, MAX_BLOCKING_WAIT))
    return DEFAULT_BLOCKING_WAIT


# Consul's blocking-query defaults: 5 minutes unless asked, never above 10.
DEFAULT_BLOCKING_WAIT = 300.0
MAX_BLOCKING_WAIT = 600.0
