"""gRPC handlers for endpoint objects: datacenter forwarding and error mapping.

``service_handler`` builds a generic handler for one service descriptor from
an object with one coroutine (or async generator, for server streams) per RPC.
Every call: a ``ConsulError`` becomes its status code and Consul's text;
anything else is logged here, once, and the caller gets INTERNAL with no
traceback. ``Dispatcher`` sends a request for another datacenter to
``forward`` (the WAN router), or fails it with ``No path to datacenter``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from agent.errors import ConsulError, NoPathToDatacenter, abort
from agent.rpc.methods import MethodSpec, methods_of, request_datacenter
from agent.rpc.token import TOKEN_METADATA, request_token

__all__ = ["Dispatcher", "Forwarder", "RpcStats", "service_handler"]

logger = logging.getLogger(__name__)

# Calls answered by whichever server gets them, whatever datacenter they name.
_MEMBERSHIP = "/consul.membership.v1."
_NEVER_FORWARDED = frozenset({"/consul.catalog.v1.CatalogService/ListDatacenters"})


class Forwarder(Protocol):
    """Sends a call to a server of another datacenter (the WAN router)."""

    async def __call__(self, spec: MethodSpec, request: Message, datacenter: str) -> Message: ...


Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class RpcStats:
    """Calls served by one agent's gRPC listeners, by method and status code.

    Each agent owns one and hands it to every ``service_handler`` it serves
    (two agents in one process, as in the tests, keep their own counts).
    """

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, path: str, code: grpc.StatusCode) -> None:
        self.calls[(path, code.name)] += 1


class Dispatcher:
    """Calls endpoints in-process by method path, forwarding other datacenters.

    A server agent's own callers (its HTTP API, its anti-entropy) use ``rpc``
    as their invoker, the same way a client agent uses ``Client.rpc``.
    """

    def __init__(self, local_dc: str, forward: Forwarder | None = None) -> None:
        self.local_dc = local_dc
        self.forward = forward
        self._endpoints: dict[str, object] = {}

    def register(self, service: ServiceDescriptor, endpoint: object) -> None:
        self._endpoints[service.full_name] = endpoint

    async def rpc(self, spec: MethodSpec, request: Message) -> Any:
        if spec.path not in _NEVER_FORWARDED and not spec.path.startswith(_MEMBERSHIP):
            dc = request_datacenter(request)
            if dc and dc != self.local_dc:
                if self.forward is None:
                    raise NoPathToDatacenter(f"No path to datacenter {dc!r}")
                return await self.forward(spec, request, dc)
        service, name = spec.path[1:].rsplit("/", 1)
        return await getattr(self._endpoints[service], name)(request)


def _take_token(context: Context) -> None:
    for key, value in context.invocation_metadata() or ():
        if key == TOKEN_METADATA and isinstance(value, str):
            request_token.set(value)
            return


def _unary(
    spec: MethodSpec,
    call: Callable[[MethodSpec, Message], Awaitable[Message]],
    stats: RpcStats,
) -> Callable[[Message, Context], Awaitable[Message]]:
    async def handle(request: Message, context: Context) -> Message:
        _take_token(context)
        try:
            response = await call(spec, request)
            stats.record(spec.path, grpc.StatusCode.OK)
            return response
        except ConsulError as err:
            stats.record(spec.path, err.grpc_code)
            await abort(context, err)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            logger.exception("rpc failed method=%s", spec.path)
            stats.record(spec.path, grpc.StatusCode.INTERNAL)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
        raise AssertionError("unreachable")

    return handle


def _stream(
    spec: MethodSpec, fn: Callable[[Any], AsyncIterator[Message]]
) -> Callable[[Message, Context], AsyncIterator[Message]]:
    async def handle(request: Message, context: Context) -> AsyncIterator[Message]:
        _take_token(context)
        try:
            async for item in fn(request):
                yield item
        except ConsulError as err:
            await abort(context, err)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            logger.exception("stream failed method=%s", spec.path)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    return handle


# -- undecodable requests (issue 15) -----------------------------------------
# Bytes that are no valid request message once answered UNKNOWN with the Python
# exception's class and logged a traceback each. The request deserializer now
# never raises: it hands on an _Undecodable, which the handler answers with
# INVALID_ARGUMENT and a short text, logged once per kind per minute.

_DECODE_LOG_WINDOW = 60.0
_decode_logged: dict[str, float] = {}
# Error texts that quote input (a 70,000-character ID) once overflowed gRPC's
# 16 KiB metadata limit, so the caller got RESOURCE_EXHAUSTED instead of the
# error. Texts are cut to this many characters (x3 percent-encoded, x4 UTF-8).
_MAX_DETAILS = 1024


@dataclass(frozen=True, slots=True)
class _Undecodable:
    kind: str


def _decoder(spec: MethodSpec) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return spec.request_type.FromString(data)
        except Exception as exc:  # DecodeError, RecursionError, bad UTF-8 ...
            return _Undecodable(type(exc).__name__)

    return decode


async def _refuse_undecodable(
    spec: MethodSpec, bad: _Undecodable, context: Context, stats: RpcStats
) -> None:
    now = time.monotonic()
    if now - _decode_logged.get(bad.kind, -_DECODE_LOG_WINDOW) >= _DECODE_LOG_WINDOW:
        _decode_logged[bad.kind] = now
        logger.info(
            "rpc request undecodable method=%s kind=%s (once a minute)", spec.path, bad.kind
        )
    stats.record(spec.path, grpc.StatusCode.INVALID_ARGUMENT)
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Request decode failed: not a valid {spec.request_type.DESCRIPTOR.name}",
    )


class _BoundedDetails:
    """The servicer context, with abort texts cut to ``_MAX_DETAILS`` characters."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> None:
        if len(details) > _MAX_DETAILS:
            details = details[:_MAX_DETAILS] + "... (truncated)"
        await self._context.abort(code, details, *args)


def _checked_unary(
    spec: MethodSpec, handle: Callable[[Message, Context], Awaitable[Message]], stats: RpcStats
) -> Callable[[Any, Context], Awaitable[Message]]:
    async def checked(request: Any, context: Context) -> Message:
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(spec, request, context, stats)
        return await handle(request, cast(Context, _BoundedDetails(context)))

    return checked


def _checked_stream(
    spec: MethodSpec, handle: Callable[[Message, Context], AsyncIterator[Message]], stats: RpcStats
) -> Callable[[Any, Context], AsyncIterator[Message]]:
    async def checked(request: Any, context: Context) -> AsyncIterator[Message]:
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(spec, request, context, stats)
        async for item in handle(request, cast(Context, _BoundedDetails(context))):
            yield item

    return checked


def service_handler(
    service: ServiceDescriptor,
    endpoint: object,
    call: Callable[[MethodSpec, Message], Awaitable[Message]] | None = None,
    serialize: Callable[[Message], bytes] | None = None,
    *,
    stats: RpcStats,
) -> grpc.GenericRpcHandler:
    """A generic handler serving ``service`` with ``endpoint``'s methods.

    Unary calls go through ``call`` (a ``Dispatcher.rpc`` or a client agent's
    forwarding ``Client.rpc``) when given, else straight to the endpoint; each
    is counted in ``stats``. ``serialize`` writes unary responses (an agent's
    views keep the bytes of their cached answers); default: the message's own.
    """

    async def direct(spec: MethodSpec, request: Message) -> Message:
        result: Message = await getattr(endpoint, spec.path.rsplit("/", 1)[1])(request)
        return result

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for spec in methods_of(service):
        name = spec.path.rsplit("/", 1)[1]
        if spec.server_streaming:
            handlers[name] = grpc.unary_stream_rpc_method_handler(
                _checked_stream(spec, _stream(spec, getattr(endpoint, name)), stats),
                request_deserializer=_decoder(spec),
                response_serializer=spec.response_type.SerializeToString,
            )
        else:
            handlers[name] = grpc.unary_unary_rpc_method_handler(
                _checked_unary(spec, _unary(spec, call or direct, stats), stats),
                request_deserializer=_decoder(spec),
                response_serializer=serialize or spec.response_type.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
