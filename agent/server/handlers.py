"""gRPC handlers for endpoint objects: datacenter forwarding and error mapping.

``service_handler`` builds a generic handler for one service descriptor from
an object with one coroutine (or async generator, for server streams) per RPC.
Every unary call: a request for another datacenter goes to ``forward`` (the
WAN router) or fails with ``No path to datacenter``; a ``ConsulError`` becomes
its status code and Consul's text; anything else is logged here, once, and the
caller gets INTERNAL with no traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from agent.errors import ConsulError, NoPathToDatacenter
from agent.rpc.methods import MethodSpec, methods_of, request_datacenter

__all__ = ["Forwarder", "service_handler"]

logger = logging.getLogger(__name__)

# Calls answered by whichever server gets them, whatever datacenter they name.
_NEVER_FORWARDED = frozenset({"/consul.catalog.v1.CatalogService/ListDatacenters"})


class Forwarder(Protocol):
    """Sends a call to a server of another datacenter (the WAN router)."""

    async def __call__(self, spec: MethodSpec, request: Message, datacenter: str) -> Message: ...


Context = grpc.aio.ServicerContext[Any, Any]


def _unary(
    spec: MethodSpec,
    fn: Callable[[Any], Awaitable[Message]],
    local_dc: str,
    forward: Forwarder | None,
) -> Callable[[Message, Context], Awaitable[Message]]:
    forwardable = spec.path not in _NEVER_FORWARDED

    async def handle(request: Message, context: Context) -> Message:
        try:
            dc = request_datacenter(request) if forwardable else ""
            if dc and dc != local_dc:
                if forward is None:
                    raise NoPathToDatacenter(f"No path to datacenter {dc!r}")
                return await forward(spec, request, dc)
            return await fn(request)
        except ConsulError as err:
            await context.abort(err.grpc_code, err.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            logger.exception("rpc failed method=%s", spec.path)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        raise AssertionError("unreachable")

    return handle


def _stream(
    spec: MethodSpec, fn: Callable[[Any], AsyncIterator[Message]]
) -> Callable[[Message, Context], AsyncIterator[Message]]:
    async def handle(request: Message, context: Context) -> AsyncIterator[Message]:
        try:
            async for item in fn(request):
                yield item
        except ConsulError as err:
            await context.abort(err.grpc_code, err.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            logger.exception("stream failed method=%s", spec.path)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    return handle


def service_handler(
    service: ServiceDescriptor,
    endpoint: object,
    *,
    local_dc: str,
    forward: Forwarder | None = None,
) -> grpc.GenericRpcHandler:
    """A generic handler serving ``service`` with ``endpoint``'s methods."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for spec in methods_of(service):
        name = spec.path.rsplit("/", 1)[1]
        fn = getattr(endpoint, name)
        if spec.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _stream(spec, fn),
                request_deserializer=spec.request_type.FromString,
                response_serializer=spec.response_type.SerializeToString,
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _unary(spec, fn, local_dc, forward),
                request_deserializer=spec.request_type.FromString,
                response_serializer=spec.response_type.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
