"""``PUT /v1/txn``: Consul's KV transactions, every operation applied or none.

The body is Consul's: a JSON array of operations, each ``{"KV": {"Verb",
"Key", "Value" (base64), "Flags", "Index", "Session"}}``. Consul's other
operation kinds (``Node``, ``Service``, ``Check``) are a 400 here: only KV
transactions are supported. The answers are Consul's: 200 with
``{"Results": [{"KV": pair}, ...], "Errors": null}`` (written pairs without
their value, read pairs with it), or 409 with ``{"Results": null, "Errors":
[{"OpIndex": n, "What": "..."}]}`` when an operation failed and nothing was
applied. More than :data:`MAX_TXN_OPS` operations, or a body or value over
its limit, is a 413 as in Consul.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aiohttp import web

from agent.errors import InvalidArgument
from agent.http.base import context, json_response
from agent.http.kv_routes import MAX_VALUE_SIZE
from agent.http.params import BodyTooLarge, Fields, decode_json, read_body, write_options
from agent.shapes import kv_json
from generated.consul.txn.v1 import txn_pb2 as tpb

__all__ = ["KV_VERBS", "MAX_TXN_LEN", "MAX_TXN_OPS", "add_txn_routes", "kv_ops"]

_TXN = "/consul.txn.v1.TxnService/"

# The servers' limit (agent.state.txn.MAX_OPS); Consul's maxTxnOps.
MAX_TXN_OPS = 64
# Consul's txn_max_req_len default (the suggested Raft entry size, 512 KiB),
# for the body and for the values of all its operations together.
MAX_TXN_LEN = 512 * 1024
KV_VERBS = frozenset(
    {
        "set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session",
        "check-not-exists", "delete", "delete-tree", "delete-cas",
    }
)  # fmt: skip
_OTHER_KINDS = ("Node", "Service", "Check")
_UINT64_MAX = (1 << 64) - 1


def _go_quote(text: str) -> str:
    """``text`` quoted as Go's ``%q`` quotes it (near enough: JSON's escapes)."""
    return json.dumps(text, ensure_ascii=False)


def _kv_op(n: int, item: Any) -> tpb.KVOp:
    op = Fields(item, f"txn[{n}]")
    for kind in _OTHER_KINDS:
        if op.has(kind):
            raise InvalidArgument(
                f"Transaction operation {n}: {kind} operations are not supported, only KV"
            )
    kv = op.obj("KV")
    if kv is None:
        raise InvalidArgument(f"Transaction operation {n} has no KV operation")
    key = kv.text("Key")
    try:
        value = base64.b64decode(kv.text("Value"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"Failed to parse body: txn[{n}].KV.Value is not valid base64"
        ) from None
    if len(value) > MAX_VALUE_SIZE:
        raise BodyTooLarge(
            f"Value for key {_go_quote(key)} is too large ({len(value)} > {MAX_VALUE_SIZE} bytes)"
        )
    return tpb.KVOp(
        verb=kv.text("Verb"),
        key=key,
        value=value,
        flags=kv.integer("Flags", lo=0, hi=_UINT64_MAX),
        index=kv.integer("Index", lo=0, hi=_UINT64_MAX),
        session=kv.text("Session"),
    )


def kv_ops(doc: Any) -> list[tpb.KVOp]:
    """Consul's ``/v1/txn`` body (decoded JSON) as KV operations; 400/413 when malformed."""
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise InvalidArgument(
            "Failed to parse body: a transaction must be a JSON array of operations"
        )
    if len(doc) > MAX_TXN_OPS:
        raise BodyTooLarge(f"Transaction contains too many operations ({len(doc)} > {MAX_TXN_OPS})")
    ops = [_kv_op(n, item) for n, item in enumerate(doc)]
    total = sum(len(op.value) for op in ops)
    if total > MAX_TXN_LEN:
        raise BodyTooLarge(
            f"Cumulative size of key/value operations is too large ({total} > {MAX_TXN_LEN} bytes)"
        )
    return ops


def _conflict(request: web.Request, errors: list[tpb.TxnError]) -> web.Response:
    body = {
        "Results": None,
        "Errors": [{"OpIndex": e.op_index, "What": e.what} for e in errors],
    }
    return json_response(request, body, status=409)


async def txn(request: web.Request) -> web.Response:
    body = await read_body(
        request,
        MAX_TXN_LEN,
        f"Request body too large, max size: {MAX_TXN_LEN} bytes",
    )
    ops = kv_ops(decode_json(body))
    # Consul reports an unknown verb as the failed operation of a 409.
    unknown = [
        tpb.TxnError(op_index=n, what=f"unknown KV verb {_go_quote(op.verb)}")
        for n, op in enumerate(ops)
        if op.verb not in KV_VERBS
    ]
    if unknown:
        return _conflict(request, unknown)
    if not ops:
        return json_response(request, {"Results": [], "Errors": None})
    req = tpb.TxnRequest(write=write_options(request), ops=ops)
    resp = await context(request).call(_TXN + "Txn", req, tpb.TxnResponse)
    if resp.errors:
        return _conflict(request, list(resp.errors))
    results = [{"KV": kv_json(pair)} for pair in resp.results]
    return json_response(request, {"Results": results, "Errors": None})


def add_txn_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/txn", txn)
