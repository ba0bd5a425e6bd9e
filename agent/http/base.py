"""What every handler shares: the context it calls through, JSON answers, read headers, errors.

Errors meet the wire in one place, :func:`error_middleware`: a ``ConsulError``
is answered with its ``http_status`` and its message as plain text (Consul's
way); anything else is logged with its traceback and answered 500 with a short
text, so a client never sees Python internals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from google.protobuf.message import Message

from agent.errors import ConsulError
from agent.http.protocols import Invoker, LocalAgent
from agent.rpc.methods import MethodSpec, method_spec
from generated.consul.common.v1 import query_pb2 as qpb

__all__ = [
    "CONTEXT",
    "Context",
    "Handler",
    "context",
    "error_middleware",
    "front_cached",
    "json_response",
    "meta_headers",
    "read_json",
    "text_response",
]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Context:
    """The agent as the HTTP handlers see it."""

    invoker: Invoker
    agent: LocalAgent
    datacenter: str
    node_name: str
    on_leave: Callable[[], Awaitable[None]] | None = None
    #: Rendered default reads by raw request (see ``front_cached``).
    front: OrderedDict[tuple[str, str, str], tuple[Any, int, bytes, dict[str, str]]] = field(
        default_factory=OrderedDict
    )

    async def call(self, path: str, request: Message, response_type: type[M]) -> M:
        """Send ``request`` to the servers as the RPC at ``path``; its typed answer."""
        spec: MethodSpec = method_spec(path)
        response = await self.invoker.rpc(spec, request)
        if not isinstance(response, response_type):
            raise ConsulError(
                f"RPC {path} answered {type(response).__name__}, not {response_type.__name__}"
            )
        return response


CONTEXT = web.AppKey("consul_http_context", Context)


def context(request: web.Request) -> Context:
    return request.app[CONTEXT]


def meta_headers(meta: qpb.QueryMeta) -> dict[str, str]:
    """Consul's read headers: the index (never 0), whether a leader is known, last contact in ms."""
    last_contact_ms = meta.last_contact.seconds * 1000 + meta.last_contact.nanos // 1_000_000
    headers = {
        "X-Consul-Index": str(max(1, meta.index)),
        "X-Consul-KnownLeader": "true" if meta.known_leader else "false",
        "X-Consul-LastContact": str(last_contact_ms),
    }
    if meta.results_filtered_by_acls:
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    return headers


def json_response(
    request: web.Request,
    data: Any,
    *,
    status: int = 200,
    meta: qpb.QueryMeta | None = None,
) -> web.Response:
    """``data`` as JSON (indented with ``?pretty``), with the read headers of ``meta``."""
    indent = 4 if "pretty" in request.query else None
    headers = meta_headers(meta) if meta is not None else {}
    return web.Response(
        text=json.dumps(data, indent=indent),
        status=status,
        content_type="application/json",
        headers=headers,
    )


async def read_json(
    request: web.Request,
    path: str,
    rpc_request: Message,
    response_type: type[M],
    to_json: Callable[[M], Any],
) -> web.Response:
    """A read answered as JSON with its read headers: the one rendered-answer hook.

    When the invoker keeps rendered answers (``agent.views.ViewInvoker.rendered``)
    the JSON bytes come from its cache, built once per view version and
    variant; else the response is rendered here. ``?cached`` (Consul's agent
    cache) adds ``X-Cache: HIT|MISS`` and ``Age``.
    """
    ctx = context(request)
    query = request.query
    indent = 4 if "pretty" in query else None

    def render(response: Message) -> bytes:
        assert isinstance(response, response_type)
        return json.dumps(to_json(response), indent=indent).encode()

    rendered = getattr(ctx.invoker, "rendered", None)
    spec = method_spec(path)
    hit, age = False, 0.0
    if rendered is not None:
        answer = await rendered(spec, rpc_request, "json4" if indent else "json", render)
        response, body, hit, age = answer.response, answer.body, answer.hit, answer.age
    else:
        answer = None
        response = await ctx.call(path, rpc_request, response_type)
        body = render(response)
    headers = meta_headers(response.meta)
    if "cached" in query:
        headers["X-Cache"] = "HIT" if hit else "MISS"
        headers["Age"] = str(int(age))
    elif answer is not None and answer.view is not None and _plain(query):
        ctx.front[_front_key(request)] = (answer.view, answer.version, body, headers)
        while len(ctx.front) > FRONT_SIZE:
            ctx.front.popitem(last=False)
    return web.Response(body=body, content_type="application/json", headers=headers)


#: Rendered reads kept by raw request: a few per watched service and variant.
FRONT_SIZE = 1024


def _plain(query: Any) -> bool:
    """A default, non-blocking read (what the front cache may answer).

    ``?peer`` and ``?merge-central-config`` change the answer but not the RPC
    the answer is rendered from: never cached under the plain one's bytes."""
    return all(k not in query for k in ("index", "consistent", "peer", "merge-central-config"))


def _front_key(request: web.Request) -> tuple[str, str, str]:
    headers = request.headers
    return (
        request.path_qs,
        headers.get("X-Consul-Token", ""),
        headers.get("Authorization", ""),
    )


def front_cached(handler: Handler) -> Handler:
    """``handler`` (a ``read_json`` route) behind the front cache.

    A default read repeated with the same URL and token, while the view its
    answer came from is still at the same version (and connected, and past
    this agent's own writes: ``ViewInvoker.current``), is answered with the
    same bytes and headers without parsing the query or building a request.
    """

    async def cached(request: web.Request) -> web.StreamResponse:
        ctx = context(request)
        entry = ctx.front.get(_front_key(request)) if ctx.front else None
        if entry is not None:
            view, version, body, headers = entry
            current = getattr(ctx.invoker, "current", None)
            if current is not None and current(view, version):
                return web.Response(body=body, content_type="application/json", headers=headers)
        return await handler(request)

    return cached


def text_response(status: int, text: str) -> web.Response:
    # A message may quote input holding lone surrogates: never fail to encode it.
    body = text.encode("utf-8", "backslashreplace")
    return web.Response(status=status, body=body, content_type="text/plain", charset="utf-8")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    try:
        response = await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except ConsulError as err:
        if err.http_status >= 500:
            logger.warning(
                "request failed method=%s path=%s status=%d error=%s",
                request.method,
                request.path,
                err.http_status,
                err.message,
            )
        return text_response(err.http_status, err.message)
    except UnicodeError:
        # Input no UTF-8 encoder takes (a lone surrogate from a header or a
        # path) met an encoder on its way down: bad input, not a crash.
        logger.debug("request refused method=%s reason=invalid_utf8", request.method)
        return text_response(400, "Request decode failed: invalid UTF-8 in the request")
    except Exception:
        logger.exception("request crashed method=%s path=%s", request.method, request.path)
        return text_response(500, "Internal error")
    logger.debug(
        "request finished method=%s path=%s status=%d latency_ms=%.1f",
        request.method,
        request.path,
        response.status,
        (time.monotonic() - started) * 1000,
    )
    return response
